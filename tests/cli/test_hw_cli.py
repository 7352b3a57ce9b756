import json
import subprocess
import sys

from click.testing import CliRunner

from attn_dse.cli.main import cli



def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_hw_list_json_has_dense_figures():
    result = run("hw", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert len(rows) >= 10
    assert rows["h100"]["bf16_tflop_per_s"] == 989.4 and rows["h100"]["hbm_tb_per_s"] == 3.35
    assert rows["h20"]["bf16_tflop_per_s"] == 148 and rows["h20"]["hbm_tb_per_s"] == 4.0
    assert abs(rows["h20"]["ridge_flop_per_byte"] - 37.0) < 0.01


def test_hw_show_has_sources():
    result = run("hw", "show", "h20", "--json")
    assert result.exit_code == 0
    fields = {f["field"]: f for f in json.loads(result.output)["fields"]}
    assert fields["memory.hbm.bandwidth"]["si"] == 4.0e12
    assert "H20" in fields["compute.matmul.bf16"]["source"]


def test_bad_preset_is_one_line_exit_2():
    result = subprocess.run([sys.executable, "-m", "attn_dse.cli", "hw", "show", "h1000"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: unknown hardware preset 'h1000'")


def test_cli_import_is_light():
    code = ("import sys, attn_dse, attn_dse.cli.main; "
            "print(' '.join(m for m in ('torch','triton','matplotlib','scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_validate_json_reports_per_family_error(tmp_path):
    result = run("validate", "h100", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rows"] >= 80 and set(data["all"]) >= {"prefill", "decode", "mla_decode", "block_sparse", "all"}
    assert (tmp_path / "predicted-vs-measured-h100.png").read_bytes()[:4] == b"\x89PNG"


def test_validate_accepts_foreign_measurements(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("family,batch,seq,context,n_heads,n_kv_heads,head_dim,median_s\n"
                    "decode,16,1,32768,64,8,128,0.0007\nprefill,1,8192,8192,32,8,128,0.0012\n")
    result = run("validate", "h100", "--measurements", str(path), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "decode" in result.output and "prefill" in result.output


def test_validate_takes_the_rows_of_several_files(tmp_path):
    """Two files' rows are compared together: the decode row of one and the prefill row of the
    other, each predicted as it would be alone."""
    header = "family,batch,seq,context,n_heads,n_kv_heads,head_dim,median_s\n"
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.write_text(header + "decode,16,1,32768,64,8,128,0.0007\n")
    two.write_text(header + "prefill,1,8192,8192,32,8,128,0.0012\n")
    apart = [json.loads(run("validate", "h100", "--measurements", str(f), "--out", str(tmp_path), "--json").output)
             for f in (one, two)]
    result = run("validate", "h100", "--measurements", str(one), "--measurements", str(two),
                 "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    both = json.loads(result.output)
    assert both["rows"] == 2 and both["measurements"] == f"{one} + {two}"
    assert both["all"]["decode"] == apart[0]["all"]["decode"] and both["all"]["prefill"] == apart[1]["all"]["prefill"]


def test_validate_bad_csv_is_clear(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("family,batch\ndecode,1\n")
    result = run("validate", "h100", "--measurements", str(path), "--out", str(tmp_path))
    assert result.exit_code == 2 and "missing column" in result.output


def test_hw_show_names_the_families_fitted_on_measurements():
    """The H200's knobs were fitted on its runs of our warp-specialized prefills (so the model
    times their shapes with them); the H20 has no measurements of its own."""
    fields = {f["field"]: f for f in json.loads(run("hw", "show", "h200", "--json").output)["fields"]}
    measured = fields["knobs[triton].measured"]["value"].split(", ")
    assert {"prefill_gluon", "prefill_ws"} <= set(measured) and "block_sparse" not in measured
    fields = {f["field"]: f for f in json.loads(run("hw", "show", "h20", "--json").output)["fields"]}
    assert fields["knobs[triton].measured"]["value"] == "none"
