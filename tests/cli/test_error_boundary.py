"""The CLI's one error boundary: bad input is one `error:` line and exit 2, an unexpected
failure one line naming it and ATTN_DSE_DEBUG=1 (exit 1), Ctrl-C `interrupted` (exit 130)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import attn_dse.cost.predict as cost_predict
from attn_dse.cli.main import cli

PREDICT = ["predict", "h100", "--variant", "gqa", "--param", "n_heads=32", "--param", "n_kv_heads=8",
           "--context", "4096"]


def _boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_an_unexpected_failure_is_one_line_with_the_debug_hint(monkeypatch):
    monkeypatch.delenv("ATTN_DSE_DEBUG", raising=False)
    monkeypatch.setattr(cost_predict, "predict", _boom)
    result = CliRunner().invoke(cli, PREDICT)
    assert result.exit_code == 1
    assert result.stderr == ("error: unexpected RuntimeError: boom second line "
                             "(set ATTN_DSE_DEBUG=1 to see the traceback)\n")


def test_attn_dse_debug_shows_the_real_exception(monkeypatch):
    monkeypatch.setenv("ATTN_DSE_DEBUG", "1")
    monkeypatch.setattr(cost_predict, "predict", _boom)
    result = CliRunner().invoke(cli, PREDICT)
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom\nsecond line"


def test_ctrl_c_outside_a_sweep_exits_130(monkeypatch):
    monkeypatch.setattr(cost_predict, "predict", _interrupt)
    result = CliRunner().invoke(cli, PREDICT)
    assert result.exit_code == 130 and result.stderr == "interrupted\n"


def test_click_usage_errors_stay_exit_2_in_one_line():
    result = CliRunner().invoke(cli, ["predict", "h100", "--batch", "0"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'--batch': 0 is not in the range x>=1" in result.stderr


def test_help_and_version_still_exit_0():
    assert CliRunner().invoke(cli, ["predict", "--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0


@pytest.mark.parametrize("debug,code", [(None, 1), ("1", 1)])
def test_the_real_entry_point(debug, code):
    """Through `main()` in a process of its own: the same line, or the traceback with debug on."""
    env = {k: v for k, v in os.environ.items() if k != "ATTN_DSE_DEBUG"}
    if debug:
        env["ATTN_DSE_DEBUG"] = debug
    script = ("import sys, attn_dse.cost.predict as p; p.predict = lambda *a, **k: 1 / 0; "
              "from attn_dse.cli.main import main; sys.argv[0] = 'attn-dse'; main()")
    proc = subprocess.run([sys.executable, "-c", script, *PREDICT], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == code
    if debug:
        assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
    else:
        assert proc.stderr == ("error: unexpected ZeroDivisionError: division by zero "
                               "(set ATTN_DSE_DEBUG=1 to see the traceback)\n")


def test_a_reader_that_closes_the_pipe_gets_no_error(tmp_path):
    """`attn-dse ... | head`: when the reader has gone, the tool stops quietly (it once printed
    'unexpected BrokenPipeError'). The read end is closed before anything is written."""
    import subprocess
    import sys
    from pathlib import Path
    for args in (["sweep", "hw/h20.yaml", "--out", str(tmp_path / "o")], ["variants"]):
        p = subprocess.Popen([sys.executable, "-m", "attn_dse.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        p.stdout.close()
        err = p.stderr.read()
        p.wait(timeout=120)
        assert "error" not in err.lower() and "Traceback" not in err, (args, err)
        assert p.returncode in (1, 141), (args, p.returncode)  # rich exits 1 on a closed pipe, we 141
