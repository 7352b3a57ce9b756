"""Every command in docs/STEP.md runs, and its memory-plan table is what `predict` reports."""
import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from attn_dse.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "STEP.md").read_text()


def _commands():
    blocks = re.findall(r"```bash\n(.*?)```", DOC, flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("attn-dse")]


@pytest.mark.parametrize("cmd", _commands())
def test_step_doc_command_runs(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = shlex.split(cmd)[1:]
    if args[0] == "sweep":
        args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (cmd, result.output, result.exception)


@pytest.mark.parametrize("args, row", [
    (["h100", "--model", "llama-3-70b", "--param", "tp=8"], "| Llama-3-70B, TP 8 | H100 | 8.8 GB | 376 | 94 |"),
    (["h200", "--model", "llama-3-70b"], "| Llama-3-70B, one GPU | H200 | 70.6 GB | 41 | 10 |"),
    (["h200", "--model", "deepseek-v3"], "| DeepSeek-V3, EP 8, attention data-parallel | H200 | 98.9 GB | 97 | 24 |"),
])
def test_memory_table_matches_predict(args, row):
    assert row in DOC
    got = []
    for ctx in ("8192", "32768"):
        r = CliRunner().invoke(cli, ["predict", *args, "--dtype", "fp8", "--phase", "decode", "--context", ctx,
                                     "--scope", "model", "--json"])
        got.append(json.loads(r.stdout))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == f"{got[0]['memory_weight_bytes'] / 1e9:.1f} GB"
    assert [int(cells[3]), int(cells[4])] == [int(g["max_batch"]) for g in got]


def _step_figure():
    import importlib.util
    spec = importlib.util.spec_from_file_location("step_figure", ROOT / "benchmarks" / "step_figure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_serving_table_is_what_the_figure_script_prints():
    fig = _step_figure()
    assert fig.table(fig.curves()) in DOC


def test_readme_shows_the_h100_and_h20_serving_figures_of_step_doc():
    readme = (ROOT / "README.md").read_text()
    assert "![tokens/s per GPU vs TPOT, H100 and H20](docs/step-tps-vs-tpot.png)" in readme
    step = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): [c.strip() for c in line.strip("|").split("|")]
            for line in DOC.splitlines() if line.startswith("| h")}
    for label, name in (("gqa-8", "GQA-8"), ("mla", "MLA"), ("moba-4x256", "MoBA-4x256")):
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} "))
        cells = [c.strip().replace(" tokens/s per GPU", "") for c in row.strip("|").split("|")]
        assert cells[1:] == [step[(hw, "8k", label)][4] for hw in ("h100", "h20")]  # the TPOT <= 50 ms column
