"""Every command and snippet in the README runs (STYLE: examples that run)."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attn_dse.cli.main import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands():
    cmds = [line.strip() for block in _blocks("bash") for line in block.splitlines()
            if line.strip().startswith("attn-dse")]
    # inline commands, except synopses with placeholders (HW, [SPACE.yaml], FILE)
    cmds += [c for c in re.findall(r"`(attn-dse [^`]+)`", README) if not re.search(r"\b(HW|FILE)\b|\[|\.\.\.", c)]
    # --write rewrites a preset and --measure needs a GPU: those are documented, not run here
    return sorted({" ".join(c.split()) for c in cmds if "--write" not in c and "--measure" not in c})


@pytest.mark.parametrize("cmd", _commands())
def test_readme_command_runs(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    args = shlex.split(cmd.split("#")[0])[1:]
    args = [str(tmp_path / Path(a).name) if a.endswith((".png", ".svg", ".pdf")) else a for a in args]
    if args[0] in ("sweep", "validate"):
        args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (cmd, result.output, result.exception)


def test_readme_python_snippet_runs():
    for block in _blocks("python"):
        subprocess.run([sys.executable, "-c", block], check=True, capture_output=True)


def test_readme_yaml_snippet_loads(tmp_path):
    from attn_dse import load_hardware
    for block in _blocks("yaml"):
        path = tmp_path / "chip.yaml"
        path.write_text(block)
        hw = load_hardware(path)
        assert hw.hbm.bytes_per_s == 6.7e12


def test_first_lines_are_the_two_commands():
    first = _blocks("bash")[0].strip().splitlines()
    assert first == ['pip install . && attn-dse sweep hw/h20.yaml',
                     'pip install "torch==2.13.0" -e ".[test]" && python3 -m pytest -q']
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert 'pip install -q "torch==2.13.0" -e ".[test]"' in ci and "pytest -q" in ci
