"""Every bad input gets one clear line on stderr (issue 16): the exit code, exactly one line,
no traceback, and the words that say where (the file, key or option) and how to fix it.

Each case runs in-process through click's CliRunner; a representative subset also runs as
`python -m attn_dse.cli` in a subprocess (the real entry point, its streams and exit code).
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from attn_dse.cli.main import cli
from attn_dse.validation.compare import data_dir

DROP = object()
BASE_SPACE = {
    "name": "tiny",
    "variants": [{"variant": "gqa", "params": {"n_heads": 8, "n_kv_heads": [1, 2], "head_dim": 64, "n_layers": 2}}],
    "workload": {"phase": "decode", "batch": [1, 4], "context": [1024]},
    "constraints": [{"memory": True}],
    "objectives": [{"minimize": "time_per_token_s"}],
}
HEADER = "family,batch,seq,context,n_heads,n_kv_heads,head_dim,median_s"
GOOD_ROW = "decode,16,1,32768,64,8,128,0.0007"


def space(**changes) -> dict:
    """The tiny space with dotted keys replaced (`workload__batch` = workload.batch; DROP deletes)."""
    raw = copy.deepcopy(BASE_SPACE)
    for dotted, value in changes.items():
        node, keys = raw, dotted.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        last = int(keys[-1]) if isinstance(node, list) else keys[-1]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return raw


def sweep_case(raw, *extra) -> tuple:
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False)
    return ["sweep", "h100", "{dir}/s.yaml", "--out", "{dir}/out", *extra], {"s.yaml": text}


def hw_case(text: str) -> tuple:
    return ["hw", "show", "{dir}/chip.yaml"], {"chip.yaml": text}


def csv_case(*rows: str, header: str = HEADER, extra=()) -> tuple:
    return (["validate", "h100", "--measurements", "{dir}/m.csv", "--out", "{dir}/vout", *extra],
            {"m.csv": "\n".join((header,) + rows) + "\n"})


def args(*a) -> tuple:
    return list(a), {}


GQA = ("--variant", "gqa", "--param", "n_heads=32", "--param", "n_kv_heads=8", "--param", "head_dim=128")
PREDICT = ("predict", "h100", *GQA, "--context", "4096")
ROOF = ("roofline", "h100", "--variants", "gqa", "-o", "{dir}/r.png")
CHIP = "name: chip\ndescription: a what-if\nextends: h100\n"

# (id, (argv, files), exit code, words the one line must hold)
CASES = [
    # --- predict: workload options ---
    ("param-empty-value", args("predict", "h100", "--variant", "gqa", "--param", "n_heads=", "--context", "8"), 2,
     ("--param", "n_heads", "no value", "n_heads=32")),
    ("param-empty-key", args(*PREDICT, "--param", "=8"), 2, ("--param", "'=8'", "KEY=VALUE")),
    ("param-no-equals", args(*PREDICT, "--param", "n_heads"), 2, ("--param", "KEY=VALUE")),
    ("param-text", args(*PREDICT, "--param", "n_heads=lots"), 2, ("n_heads", "'lots'", "not a number")),
    ("param-zero", args(*PREDICT, "--param", "n_heads=0"), 2, ("n_heads", ">= 1")),
    ("param-negative", args(*PREDICT, "--param", "n_kv_heads=-8"), 2, ("n_kv_heads", ">= 1")),
    ("param-fraction", args(*PREDICT, "--param", "head_dim=1.5"), 2, ("head_dim", "whole number")),
    ("param-nan", args(*PREDICT, "--param", "head_dim=.nan"), 2, ("head_dim", "finite")),
    ("param-inf", args(*PREDICT, "--param", "head_dim=.inf"), 2, ("head_dim", "finite")),
    ("param-huge", args(*PREDICT, "--param", "head_dim=1e308"), 2, ("head_dim", "1e+308", "finite")),
    ("param-list", args(*PREDICT, "--param", "n_kv_heads=[1,8]"), 2, ("--param", "n_kv_heads", "one value")),
    ("param-mapping", args(*PREDICT, "--param", "n_kv_heads={a: 1}"), 2, ("--param", "n_kv_heads", "one value")),
    ("param-unknown", args(*PREDICT, "--param", "n_head=4"), 2, ("unknown parameter 'n_head'", "n_heads")),
    ("param-not-divisor", args("predict", "h100", "--variant", "gqa", "--param", "n_heads=32", "--param",
                               "n_kv_heads=5", "--context", "8"), 2, ("n_kv_heads",)),
    ("variant-unknown", args("predict", "h100", "--variant", "gqx", "--context", "8"), 2,
     ("unknown variant 'gqx'", "gqa")),
    ("model-unknown", args("predict", "h100", "--model", "llama-9", "--context", "8"), 2,
     ("unknown model preset 'llama-9'",)),
    ("model-and-variant", args("predict", "h100", "--model", "llama-3-8b", "--variant", "gqa", "--context", "8"), 2,
     ("--variant or --model",)),
    ("no-workload", args("predict", "h100", "--context", "8"), 2, ("no workload", "--variant")),
    ("model-scope-no-layers", args(*PREDICT, "--scope", "model"), 2, ("n_layers", "--param n_layers=")),
    ("decode-no-context", args("predict", "h100", *GQA), 2, ("--context",)),
    # --- predict: numeric options ---
    ("batch-zero", args(*PREDICT, "--batch", "0"), 2, ("--batch", "0", "x>=1")),
    ("batch-negative", args(*PREDICT, "--batch", "-4"), 2, ("--batch", "-4", "x>=1")),
    ("batch-text", args(*PREDICT, "--batch", "many"), 2, ("--batch", "'many'")),
    ("seq-zero", args(*PREDICT, "--seq", "0"), 2, ("--seq", "x>=1")),
    ("context-zero", args("predict", "h100", *GQA, "--context", "0"), 2, ("--context", "x>=1")),
    ("context-negative", args("predict", "h100", *GQA, "--context", "-1"), 2, ("--context", "x>=1")),
    ("split-zero", args(*PREDICT, "--split", "0"), 2, ("--split", "x>=1")),
    ("split-negative", args(*PREDICT, "--split", "-3"), 2, ("--split", "x>=1")),
    ("phase-typo", args(*PREDICT, "--phase", "decod"), 2, ("--phase", "'decod'", "decode")),
    ("dtype-unknown", args(*PREDICT, "--dtype", "int4"), 2, ("--dtype", "'int4'")),
    ("scope-unknown", args(*PREDICT, "--scope", "all"), 2, ("--scope", "'all'")),
    ("option-unknown", args(*PREDICT, "--batchsize", "4"), 2, ("--batchsize",)),
    ("command-unknown", args("predicts", "h100"), 2, ("predicts",)),
    ("hw-missing", args("predict", *GQA, "--context", "8"), 2, ("HW",)),
    # --- hardware names and files ---
    ("hw-unknown-preset", args("hw", "show", "h1000"), 2, ("unknown hardware preset 'h1000'", "h100")),
    ("hw-missing-file", args("hw", "show", "{dir}/nope.yaml"), 2, ("no such hardware file", "nope.yaml")),
    ("hw-predict-unknown", args("predict", "hx100", *GQA, "--context", "8"), 2, ("'hx100'", "h100")),
    ("hw-level-typo-extends", hw_case(CHIP + "memory:\n  - {name: hmb, bandwidth: 4 TB/s}\n"), 2,
     ("chip.yaml", "memory[hmb]", "unknown level", "hbm")),
    ("hw-level-typo-extends-l2", hw_case(CHIP + "memory:\n  - {name: l3, capacity: 1 MB}\n"), 2,
     ("chip.yaml", "memory[l3]", "unknown level", "l2")),
    ("hw-level-no-name", hw_case(CHIP + "memory:\n  - {capacity: 96 GB}\n"), 2, ("chip.yaml", "memory[0].name")),
    ("hw-level-not-mapping", hw_case(CHIP + "memory:\n  - hbm\n"), 2, ("chip.yaml", "memory[0]", "mapping")),
    ("hw-memory-mapping", hw_case(CHIP + "memory: {hbm: {capacity: 96 GB}}\n"), 2,
     ("chip.yaml", "memory", "expected a list")),
    ("hw-capacity-bandwidth-unit", hw_case(CHIP + "memory:\n  - {name: hbm, capacity: 96 GB/s}\n"), 2,
     ("chip.yaml", "memory[hbm].capacity", "80 GB")),
    ("hw-bandwidth-no-unit", hw_case(CHIP + "memory:\n  - {name: hbm, bandwidth: 4}\n"), 2,
     ("chip.yaml", "memory[hbm].bandwidth", "no unit")),
    ("hw-bandwidth-inf", hw_case(CHIP + "memory:\n  - {name: hbm, bandwidth: 1e999 TB/s}\n"), 2,
     ("chip.yaml", "memory[hbm].bandwidth", "finite")),
    ("hw-cores-text", hw_case(CHIP + "compute: {cores: many}\n"), 2, ("chip.yaml", "compute.cores", "'many'")),
    ("hw-cores-zero", hw_case(CHIP + "compute: {cores: 0}\n"), 2, ("chip.yaml", "compute.cores", "positive")),
    ("hw-cores-float", hw_case(CHIP + "compute: {cores: 1e308}\n"), 2, ("chip.yaml", "compute.cores", "whole")),
    ("hw-clock-no-unit", hw_case(CHIP + "compute: {clock: 1.98}\n"), 2, ("chip.yaml", "compute.clock", "GHz")),
    ("hw-matmul-rate-unit", hw_case(CHIP + "compute: {matmul: {bf16: 900 TB/s}}\n"), 2,
     ("chip.yaml", "compute.matmul.bf16", "TFLOP/s")),
    ("hw-matmul-dtype", hw_case(CHIP + "compute: {matmul: {bf32: 900 TFLOP/s}}\n"), 2,
     ("chip.yaml", "compute.matmul.bf32", "unknown field", "tf32")),
    ("hw-compute-scalar", hw_case(CHIP + "compute: 3\n"), 2, ("chip.yaml", "compute", "mapping")),
    ("hw-unknown-field", hw_case(CHIP + "memroy: []\n"), 2, ("chip.yaml", "memroy", "memory")),
    ("hw-kind", hw_case(CHIP + "kind: cpu\n"), 2, ("chip.yaml", "kind", "gpu")),
    ("hw-launch-negative", hw_case(CHIP + "launch_overhead: -4 us\n"), 2, ("chip.yaml", "launch_overhead", "positive")),
    ("hw-devices-text", hw_case(CHIP + "interconnect: {devices_per_node: node}\n"), 2,
     ("chip.yaml", "interconnect.devices_per_node")),
    ("hw-per-core-text", hw_case(CHIP + "memory:\n  - {name: smem, per_core: maybe}\n"), 2,
     ("chip.yaml", "per_core", "true or false")),
    ("hw-extends-unknown", hw_case("name: chip\nextends: h1000\n"), 2, ("chip.yaml", "extends", "h100")),
    ("hw-extends-self", hw_case("name: chip\nextends: chip.yaml\n"), 2, ("chip.yaml", "extends", "cycle")),
    ("hw-not-mapping", hw_case("- h100\n"), 2, ("chip.yaml", "mapping")),
    ("hw-malformed", hw_case("name: [chip\n"), 2, ("chip.yaml", "malformed YAML", "line")),
    ("hw-duplicate-key", hw_case(CHIP + "kind: gpu\nkind: tpu\n"), 2, ("chip.yaml", "duplicate key 'kind'")),
    ("hw-sources-list", hw_case(CHIP + "sources: [datasheet]\n"), 2, ("chip.yaml", "sources", "mapping")),
    ("hw-standalone-no-hbm", hw_case(
        "name: c\ndescription: d\nkind: gpu\ncompute: {cores: 1, clock: 1 GHz, matmul: {bf16: 1 TFLOP/s},"
        " vector: 1 TFLOP/s, exp: 1 Top/s}\nmemory:\n  - {name: smem, per_core: true, capacity: 1 KiB,"
        " bandwidth: 1 TB/s}\n  - {name: hmb, capacity: 1 GB, bandwidth: 1 TB/s}\n"
        "interconnect: {link_bandwidth: 1 GB/s, devices_per_node: 1}\nlaunch_overhead: 1 us\n"), 2,
     ("chip.yaml", "no level named 'hbm'", "hmb")),
    # --- sweep: options ---
    ("samples-zero", sweep_case(space(), "--samples", "0"), 2, ("--samples", "x>=1")),
    ("samples-negative", sweep_case(space(), "--samples", "-5"), 2, ("--samples", "x>=1")),
    ("strategy-unknown", sweep_case(space(), "--strategy", "greedy"), 2, ("--strategy", "'greedy'")),
    ("out-cannot-create", (["sweep", "h100", "{dir}/s.yaml", "--out", "/proc/nope"],
                           {"s.yaml": yaml.safe_dump(space())}), 2, ("--out", "/proc/nope", "cannot create")),
    ("out-under-a-file", (["sweep", "h100", "{dir}/s.yaml", "--out", "{dir}/s.yaml/out"],
                          {"s.yaml": yaml.safe_dump(space())}), 2, ("--out", "s.yaml/out", "cannot create")),
    ("space-missing", args("sweep", "h100", "{dir}/none.yaml", "--out", "{dir}/out"), 2, ("no such space file",)),
    ("space-not-mapping", sweep_case("- gqa\n"), 2, ("s.yaml", "mapping")),
    ("space-malformed", sweep_case("variants: [gqa\n"), 2, ("s.yaml", "malformed YAML", "line")),
    ("space-duplicate-key", sweep_case("name: a\nname: b\nvariants: [gqa]\n"), 2, ("s.yaml", "duplicate key 'name'")),
    ("space-unknown-top", sweep_case(space(objective=[])), 2, ("s.yaml", "objective", "objectives")),
    ("space-hw-unknown", sweep_case(space(hardware=["h1000"])), 2, ("h1000",)),
    # --- space: ranges ---
    ("range-from-text", sweep_case(space(workload__batch={"from": "one", "to": 8, "times": 2})), 2,
     ("s.yaml", "workload.batch.from", "'one'", "number")),
    ("range-to-text", sweep_case(space(workload__batch={"from": 1, "to": "lots", "times": 2})), 2,
     ("s.yaml", "workload.batch.to", "'lots'")),
    ("range-times-one", sweep_case(space(workload__batch={"from": 1, "to": 64, "times": 1})), 2,
     ("s.yaml", "workload.batch.times", "> 1")),
    ("range-times-half", sweep_case(space(workload__batch={"from": 1, "to": 64, "times": 0.5})), 2,
     ("s.yaml", "workload.batch.times", "> 1")),
    ("range-times-text", sweep_case(space(workload__batch={"from": 1, "to": 64, "times": "two"})), 2,
     ("s.yaml", "workload.batch.times", "'two'")),
    ("range-from-zero", sweep_case(space(workload__batch={"from": 0, "to": 64, "times": 2})), 2,
     ("s.yaml", "workload.batch.from", "> 0")),
    ("range-from-negative", sweep_case(space(workload__context={"from": -8, "to": 64, "step": 8})), 2,
     ("s.yaml", "workload.context.from", "> 0")),
    ("range-step-zero", sweep_case(space(workload__batch={"from": 1, "to": 64, "step": 0})), 2,
     ("s.yaml", "workload.batch.step", "> 0")),
    ("range-step-negative", sweep_case(space(workload__batch={"from": 1, "to": 64, "step": -1})), 2,
     ("s.yaml", "workload.batch.step", "> 0")),
    ("range-to-nan", sweep_case(space(workload__batch={"from": 1, "to": float("nan"), "times": 2})), 2,
     ("s.yaml", "workload.batch.to", "finite")),
    ("range-to-inf", sweep_case(space(workload__batch={"from": 1, "to": float("inf"), "times": 2})), 2,
     ("s.yaml", "workload.batch.to", "finite")),
    ("range-to-1e308", sweep_case(space(workload__context={"from": 1, "to": 1e308, "times": 2})), 2,
     ("s.yaml", "workload.context.to", "1e+308", "too large")),
    ("range-reversed", sweep_case(space(workload__batch={"from": 64, "to": 1, "times": 2})), 2,
     ("s.yaml", "workload.batch", "empty range")),
    ("range-no-to", sweep_case(space(workload__batch={"from": 1, "times": 2})), 2,
     ("s.yaml", "workload.batch.to", "missing")),
    ("range-times-and-step", sweep_case(space(workload__batch={"from": 1, "to": 8, "times": 2, "step": 1})), 2,
     ("s.yaml", "workload.batch", "times or step")),
    ("range-unknown-key", sweep_case(space(workload__batch={"from": 1, "to": 8, "by": 2})), 2,
     ("s.yaml", "workload.batch.by", "unknown field")),
    ("range-too-long", sweep_case(space(workload__context={"from": 1, "to": 1e12, "step": 1})), 2,
     ("s.yaml", "workload.context", "values", "step")),
    # --- space: lists ---
    ("list-text-element", sweep_case(space(workload__batch=[1, "two", 8])), 2,
     ("s.yaml", "workload.batch[1]", "'two'", "positive number")),
    ("list-nan-element", sweep_case(space(workload__batch=[1, float("nan")])), 2,
     ("s.yaml", "workload.batch[1]", "finite")),
    ("list-inf-element", sweep_case(space(workload__context=[1024, float("inf")])), 2,
     ("s.yaml", "workload.context[1]", "finite")),
    ("list-1e308-element", sweep_case(space(workload__context=[1024, 1e308])), 2,
     ("s.yaml", "workload.context[1]", "too large")),
    ("list-negative-element", sweep_case(space(workload__batch=[1, -2])), 2,
     ("s.yaml", "workload.batch[1]", "positive")),
    ("list-nested-element", sweep_case(space(workload__batch=[1, [2]])), 2, ("s.yaml", "workload.batch[1]")),
    ("list-empty", sweep_case(space(workload__batch=[])), 2, ("s.yaml", "workload.batch", "empty")),
    ("list-bool-element", sweep_case(space(workload__seq=[True])), 2, ("s.yaml", "workload.seq[0]")),
    ("context-text", sweep_case(space(workload__context="long")), 2, ("s.yaml", "workload.context", "'long'")),
    ("space-seq-zero", sweep_case(space(workload__seq=0)), 2, ("s.yaml", "workload.seq", "positive")),
    ("space-phase-typo", sweep_case(space(workload__phase="decod")), 2, ("s.yaml", "workload.phase", "decode")),
    ("phase-element-mapping", sweep_case(space(workload__phase=["decode", {"a": 1}])), 2,
     ("s.yaml", "workload.phase[1]")),
    ("phase-number", sweep_case(space(workload__phase=3)), 2, ("s.yaml", "workload.phase", "decode")),
    ("space-dtype-unknown", sweep_case(space(workload__dtype="int3")), 2, ("s.yaml", "workload.dtype", "bf16")),
    ("dtype-element-number", sweep_case(space(workload__dtype=["bf16", 3])), 2, ("s.yaml", "workload.dtype[1]")),
    ("space-scope-unknown", sweep_case(space(workload__scope="all")), 2, ("s.yaml", "workload.scope", "model")),
    ("scope-list", sweep_case(space(workload__scope=["model"])), 2, ("s.yaml", "workload.scope", "model")),
    ("causal-text", sweep_case(space(workload__causal="maybe")), 2, ("s.yaml", "workload.causal", "true or false")),
    ("fused-number", sweep_case(space(workload__fused=3)), 2, ("s.yaml", "workload.fused", "true or false")),
    ("mapping-list", sweep_case(space(workload__mapping=[1])), 2, ("s.yaml", "workload.mapping", "mapping")),
    ("mapping-text", sweep_case(space(workload__mapping={"n_split": "many"})), 2,
     ("s.yaml", "workload.mapping.n_split", "'many'")),
    ("mapping-zero", sweep_case(space(workload__mapping={"n_split": 0})), 2,
     ("s.yaml", "workload.mapping.n_split", "positive")),
    ("mapping-unknown", sweep_case(space(workload__mapping={"block_q": 64})), 2,
     ("s.yaml", "workload.mapping.block_q", "block_n")),
    ("workload-list", sweep_case(space(workload=["decode"])), 2, ("s.yaml", "workload", "mapping")),
    ("workload-text", sweep_case(space(workload="decode")), 2, ("s.yaml", "workload", "mapping")),
    ("workload-unknown-key", sweep_case(space(workload__contexts=[1])), 2,
     ("s.yaml", "workload.contexts", "context")),
    # --- space: top-level values ---
    ("samples-text", sweep_case(space(samples="lots", strategy="random")), 2, ("s.yaml", "samples", "'lots'")),
    ("samples-zero-yaml", sweep_case(space(samples=0, strategy="random")), 2, ("s.yaml", "samples", "positive")),
    ("samples-fraction", sweep_case(space(samples=1.5, strategy="random")), 2, ("s.yaml", "samples", "whole")),
    ("samples-bool", sweep_case(space(samples=True, strategy="random")), 2, ("s.yaml", "samples")),
    ("strategy-typo", sweep_case(space(strategy="randm")), 2, ("s.yaml", "strategy", "random")),
    ("strategy-list", sweep_case(space(strategy=["grid"])), 2, ("s.yaml", "strategy", "grid")),
    ("name-list", sweep_case(space(name=["a"])), 2, ("s.yaml", "name", "text")),
    # --- space: deployment ---
    ("usable-memory-text", sweep_case(space(deployment={"usable_memory": "most"})), 2,
     ("s.yaml", "deployment.usable_memory", "'most'", "(0, 1]")),
    ("usable-memory-zero", sweep_case(space(deployment={"usable_memory": 0})), 2,
     ("s.yaml", "deployment.usable_memory", "(0, 1]")),
    ("usable-memory-above-one", sweep_case(space(deployment={"usable_memory": 1.5})), 2,
     ("s.yaml", "deployment.usable_memory", "(0, 1]")),
    ("usable-memory-nan", sweep_case(space(deployment={"usable_memory": float("nan")})), 2,
     ("s.yaml", "deployment.usable_memory", "not finite", "0.9")),
    ("devices-text", sweep_case(space(deployment={"devices": "cluster"})), 2,
     ("s.yaml", "deployment.devices", "'cluster'", "node")),
    ("devices-zero", sweep_case(space(deployment={"devices": 0})), 2, ("s.yaml", "deployment.devices", "node")),
    ("devices-fraction", sweep_case(space(deployment={"devices": 2.5})), 2, ("s.yaml", "deployment.devices")),
    ("weight-dtype-number", sweep_case(space(deployment={"weight_dtype": 1e308})), 2,
     ("s.yaml", "deployment.weight_dtype", "fp8")),
    ("weight-dtype-unknown", sweep_case(space(deployment={"weight_dtype": "int3"})), 2,
     ("s.yaml", "deployment.weight_dtype", "fp8")),
    ("weights-text", sweep_case(space(deployment={"weights": "lots"})), 2, ("s.yaml", "deployment.weights", "GB")),
    ("deployment-list", sweep_case(space(deployment=["devices"])), 2, ("s.yaml", "deployment", "mapping")),
    ("deployment-number", sweep_case(space(deployment=8)), 2, ("s.yaml", "deployment", "mapping")),
    ("deployment-unknown", sweep_case(space(deployment={"device": 8})), 2, ("s.yaml", "deployment.device", "devices")),
    # --- space: constraints and objectives ---
    ("tpot-text", sweep_case(space(constraints=[{"tpot_ms": "fast"}])), 2,
     ("s.yaml", "constraints[0].tpot_ms", "'fast'", "number")),
    ("ttft-negative", sweep_case(space(constraints=[{"ttft_s": -1}])), 2, ("s.yaml", "constraints[0].ttft_s", "positive")),
    ("ttft-nan", sweep_case(space(constraints=[{"ttft_s": float("nan")}])), 2, ("s.yaml", "constraints[0].ttft_s")),
    ("memory-text", sweep_case(space(constraints=[{"memory": "maybe"}])), 2,
     ("s.yaml", "constraints[0].memory", "true or false")),
    ("constraint-unknown", sweep_case(space(constraints=[{"tpot": 50}])), 2, ("s.yaml", "constraints", "tpot_ms")),
    ("constraint-two-keys", sweep_case(space(constraints=[{"tpot_ms": 50, "ttft_s": 1}])), 2,
     ("s.yaml", "constraints", "one 'kind: value' pair")),
    ("constraints-mapping", sweep_case(space(constraints={"tpot_ms": 50})), 2,
     ("s.yaml", "constraints", "expected a list")),
    ("constraint-expr-field", sweep_case(space(constraints=[{"expr": "latency > 1"}])), 2,
     ("s.yaml", "constraints", "unknown field 'latency'")),
    ("constraint-expr-syntax", sweep_case(space(constraints=[{"expr": "latency_s >"}])), 2,
     ("s.yaml", "constraints", "not an expression")),
    ("constraint-expr-attribute", sweep_case(space(constraints=[{"expr": "latency_s.real > 1"}])), 2,
     ("s.yaml", "constraints", "unsupported syntax")),
    ("objective-unknown-field", sweep_case(space(objectives=[{"minimize": "latency"}])), 2,
     ("s.yaml", "objectives", "latency_s")),
    ("objective-bad-kind", sweep_case(space(objectives=[{"minimise": "latency_s"}])), 2,
     ("s.yaml", "objectives", "minimize")),
    ("objectives-mapping", sweep_case(space(objectives={"minimize": "latency_s"})), 2,
     ("s.yaml", "objectives", "expected a list")),
    ("objectives-empty", sweep_case(space(objectives=[])), 2, ("s.yaml", "objectives", "empty")),
    # --- space: variants ---
    ("variants-mapping", sweep_case(space(variants={"variant": "gqa"})), 2, ("s.yaml", "variants", "expected a list")),
    ("variants-empty", sweep_case(space(variants=[])), 2, ("s.yaml", "variants")),
    ("space-variant-unknown", sweep_case(space(variants=[{"variant": "gqx"}])), 2, ("s.yaml", "variants[0]", "gqa")),
    ("variant-number", sweep_case(space(variants=[42])), 2, ("s.yaml", "variants[0]", "mapping")),
    ("variant-name-list", sweep_case(space(variants=[{"variant": ["gqa"]}])), 2,
     ("s.yaml", "variants[0].variant", "text")),
    ("variant-model-number", sweep_case(space(variants=[{"model": 3}])), 2, ("s.yaml", "variants[0].model", "text")),
    ("variant-no-name", sweep_case(space(variants=[{"params": {"n_heads": 8}}])), 2,
     ("s.yaml", "variants[0]", "variant")),
    ("variant-label-list", sweep_case(space(variants__0__label=["a"])), 2, ("s.yaml", "variants[0].label", "text")),
    ("params-list", sweep_case(space(variants__0__params=[8, 2])), 2,
     ("s.yaml", "variants[0].params", "mapping")),
    ("param-bad-later-element", sweep_case(space(variants__0__params__n_kv_heads=[1, 2, "four"])), 2,
     ("s.yaml", "variants[0].params.n_kv_heads[2]", "'four'")),
    ("param-nan-element", sweep_case(space(variants__0__params__n_kv_heads=[1, float("nan")])), 2,
     ("s.yaml", "variants[0].params.n_kv_heads[1]", "finite")),
    ("param-zero-later", sweep_case(space(variants__0__params__n_kv_heads=[1, 0])), 2,
     ("s.yaml", "variants[0].params.n_kv_heads[1]", ">= 1")),
    ("param-not-divisor-later", sweep_case(space(variants__0__params__n_kv_heads=[1, 3])), 2,
     ("s.yaml", "variants[0].params.n_kv_heads[1]", "n_kv_heads")),
    ("param-empty-list", sweep_case(space(variants__0__params__n_kv_heads=[])), 2,
     ("s.yaml", "variants[0].params.n_kv_heads", "empty")),
    ("space-param-unknown", sweep_case(space(variants__0__params__n_head=[8])), 2, ("s.yaml", "variants[0]", "n_heads")),
    ("weight-params-text", sweep_case(space(variants__0__weight_params="lots")), 2,
     ("s.yaml", "variants[0].weight_params", "70.6e9")),
    ("variant-unknown-key", sweep_case(space(variants__0__param={})), 2, ("s.yaml", "variants[0].param", "params")),
    # --- space: hardware axes ---
    ("hw-axis-unknown", sweep_case(space(hardware={"presets": ["h100"], "hbm_bw": ["x2"]})), 2,
     ("s.yaml", "hardware.hbm_bw", "hbm_bandwidth")),
    ("hw-axis-zero-scale", sweep_case(space(hardware={"presets": ["h100"], "hbm_bandwidth": ["x0"]})), 2,
     ("s.yaml", "hardware.hbm_bandwidth", "x0.5")),
    ("hw-axis-unit", sweep_case(space(hardware={"presets": ["h100"], "hbm_bandwidth": ["4 TFLOP/s"]})), 2,
     ("s.yaml", "hardware.hbm_bandwidth", "TB/s")),
    ("hw-axis-mapping-element", sweep_case(space(hardware={"presets": ["h100"], "matmul": [{"a": 1}]})), 2,
     ("s.yaml", "hardware.matmul")),
    ("hw-scalar", sweep_case(space(hardware=42)), 2, ("s.yaml", "hardware", "presets")),
    ("hw-preset-number", sweep_case(space(hardware=[42])), 2, ("s.yaml", "hardware[0]", "preset")),
    # --- roofline ---
    ("roofline-suffix", args("roofline", "h100", "--variants", "gqa", "-o", "{dir}/r.txt"), 2,
     ("-o", "r.txt", ".png", ".svg", ".pdf")),
    ("roofline-no-suffix", args("roofline", "h100", "--variants", "gqa", "-o", "{dir}/r"), 2, ("-o", ".png")),
    ("roofline-context-text", args(*ROOF, "--context", "long"), 2, ("--context", "'long'", "1k")),
    ("roofline-context-zero", args(*ROOF, "--context", "0,1024"), 2, ("--context", "'0'", "positive")),
    ("roofline-context-empty", args(*ROOF, "--context", ",,"), 2, ("--context", "1024,8192")),
    ("roofline-context-mega", args(*ROOF, "--context", "1m"), 2, ("--context", "'1m'", "1k")),
    ("roofline-context-fraction", args(*ROOF, "--context", "1.3k"), 2, ("--context", "'1.3k'")),
    ("roofline-phase", args(*ROOF, "--phase", "decode,prefil"), 2, ("--phase", "'prefil'", "prefill")),
    ("roofline-phase-empty", args(*ROOF, "--phase", ","), 2, ("--phase", "decode")),
    ("roofline-variants", args("roofline", "h100", "--variants", "gqa,gqx", "-o", "{dir}/r.png"), 2,
     ("gqx", "gqa")),
    ("roofline-batch-zero", args(*ROOF, "--batch", "0"), 2, ("--batch", "x>=1")),
    ("roofline-hw-unknown", args("roofline", "h1000", "--variants", "gqa", "-o", "{dir}/r.png"), 2, ("h1000",)),
    ("roofline-out-dir-missing", args("roofline", "h100", "--variants", "gqa", "-o", "/proc/nope/r.png"), 2,
     ("-o", "/proc/nope/r.png")),
    # --- validate ---
    ("write-without-calibrate", args("validate", "h100", "--write", "--out", "{dir}/vout"), 2,
     ("--write", "--calibrate")),
    ("family-without-calibrate", args("validate", "h100", "--family", "decode", "--out", "{dir}/vout"), 2,
     ("--family", "--calibrate")),
    ("family-without-rows", args("validate", "h200", "--measurements", str(data_dir() / "h200-decode-fp8-measurements.csv"),
                                 "--calibrate", "--family", "prefill", "--out", "{dir}/vout"), 2,
     ("--family prefill", "no rows of that family", "decode")),
    ("validate-out-cannot-create", args("validate", "h100", "--out", "/proc/nope"), 2,
     ("--out", "/proc/nope", "cannot create")),
    ("csv-missing", args("validate", "h100", "--measurements", "{dir}/none.csv", "--out", "{dir}/vout"), 2,
     ("no such measurements file",)),
    ("csv-text-median", csv_case("decode,16,1,32768,64,8,128,fast"), 2, ("m.csv", "row 2", "median_s", "'fast'")),
    ("csv-text-batch", csv_case(GOOD_ROW, "decode,sixteen,1,32768,64,8,128,0.0007"), 2,
     ("m.csv", "row 3", "batch", "'sixteen'")),
    ("csv-text-heads", csv_case("prefill,1,8192,8192,many,8,128,0.0012"), 2, ("m.csv", "row 2", "n_heads", "'many'")),
    ("csv-zero-median", csv_case(GOOD_ROW, "decode,16,1,32768,64,8,128,0"), 2,
     ("m.csv", "row 3", "median_s", "positive")),
    ("csv-negative-median", csv_case("decode,16,1,32768,64,8,128,-0.001"), 2, ("m.csv", "row 2", "median_s", "positive")),
    ("csv-nan-median", csv_case("decode,16,1,32768,64,8,128,nan"), 2, ("m.csv", "row 2", "median_s")),
    ("csv-empty-median", csv_case("decode,16,1,32768,64,8,128,"), 2, ("m.csv", "row 2", "median_s")),
    ("csv-zero-batch", csv_case("decode,0,1,32768,64,8,128,0.0007"), 2, ("m.csv", "row 2", "batch", "positive")),
    ("csv-unknown-family", csv_case("flash,16,1,32768,64,8,128,0.0007"), 2,
     ("m.csv", "row 2", "family", "'flash'", "decode", "prefill", "mla_decode", "block_sparse")),
    ("csv-unmeasured-family", csv_case("gemm,16,1,32768,64,8,128,0.0007"), 2,
     ("m.csv", "row 2", "family", "'gemm'", "decode")),
    ("csv-missing-column", csv_case("decode,16,1,32768,64,8,128", header=HEADER.rsplit(",", 1)[0]), 2,
     ("m.csv", "median_s")),
    ("csv-header-only", csv_case(), 2, ("m.csv", "no rows")),
    ("csv-short-row", csv_case("decode,16,1"), 2, ("m.csv", "row 2")),
]

# a representative set that also runs through the real entry point in a subprocess
SUBPROCESS = ("param-empty-value", "split-zero", "batch-zero", "phase-typo", "hw-level-typo-extends",
              "range-times-one", "range-from-zero", "range-to-nan", "range-too-long", "list-text-element",
              "samples-text", "tpot-text", "devices-text", "out-cannot-create", "roofline-suffix",
              "roofline-context-text", "write-without-calibrate", "csv-text-median", "csv-unknown-family",
              "command-unknown")


def _materialize(tmp_path, case):
    argv, files = case
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return [a.replace("{dir}", str(tmp_path)) for a in argv]


def _check(code, stderr, expected_code, words):
    lines = stderr.strip().splitlines()
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"


def test_at_least_100_distinct_bad_inputs():
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids) >= 100
    assert set(SUBPROCESS) <= set(ids)


@pytest.mark.parametrize("name,case,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_in_process(tmp_path, name, case, code, words):
    result = CliRunner().invoke(cli, _materialize(tmp_path, case))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    _check(result.exit_code, result.stderr, code, words)


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_subprocess(tmp_path, name):
    _, case, code, words = next(c for c in CASES if c[0] == name)
    env = {k: v for k, v in os.environ.items() if k != "ATTN_DSE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "attn_dse.cli", *_materialize(tmp_path, case)],
                          capture_output=True, text=True, env=env, timeout=60)
    _check(proc.returncode, proc.stderr, code, words)
    assert proc.stdout == ""
