"""predict --tp/--cp/--nodes/--cp-scheme: results and one-line errors."""
import json

import pytest
from click.testing import CliRunner

from attn_dse.cli.main import cli

GQA = ["--variant", "gqa", "--param", "n_heads=64", "--param", "n_kv_heads=8"]


def run(*args):
    return CliRunner().invoke(cli, ["predict", "h200", *GQA, *args])


def test_tp_and_cp_json():
    r = run("--phase", "prefill", "--seq", "16384", "--cp", "4", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["cp"], d["devices"]) == (4, 4)
    assert d["flops"] == pytest.approx(2 * 2 * 64 * 16384 * 16385 / 2 * 128)
    one = json.loads(run("--phase", "decode", "--context", "8192", "--json").output)
    two = json.loads(run("--phase", "decode", "--context", "8192", "--tp", "2", "--json").output)
    assert two["latency_s"] < one["latency_s"]


@pytest.mark.parametrize("args,needle", [
    (("--phase", "decode", "--context", "4096", "--tp", "16"), "per node"),
    (("--phase", "decode", "--context", "4096", "--tp", "3"), "not divisible by tp=3"),
    (("--phase", "prefill", "--seq", "1000", "--cp", "8"), "equal chunks"),
    (("--phase", "train", "--seq", "1024", "--cp", "2"), "not modelled"),
    (("--phase", "decode", "--context", "4096", "--tp", "0"), "--tp"),
    (("--phase", "prefill", "--seq", "4096", "--cp", "2", "--cp-scheme", "zigzag"), "--cp-scheme"),
])
def test_bad_parallel_options_are_one_line(args, needle):
    r = run(*args)
    assert r.exit_code == 2
    lines = [line for line in r.output.strip().splitlines() if line]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.output


def test_nodes_without_scale_out():
    r = CliRunner().invoke(cli, ["predict", "h20", *GQA, "--context", "4096", "--tp", "8", "--cp", "2", "--nodes", "2"])
    assert r.exit_code == 2 and "no link between nodes" in r.output
