"""gpu/multi.py on two CPU processes (gloo): ring attention and the TPLA combine against one
process, and a quick run of the whole script."""
import math
import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)
import torch.multiprocessing as mp  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out, fn_name):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        globals()[fn_name](rank, world, out)
    finally:
        dist.destroy_process_group()


def _ring(rank, world, out):
    from attn_dse.gpu.multi import ring_attention
    g = torch.Generator().manual_seed(0)
    B, H, S, D = 1, 2, 16 * world, 8
    q, k, v = (torch.randn(B, H, S, D, generator=g) for _ in range(3))
    n = S // world
    sl = slice(rank * n, (rank + 1) * n)
    for causal in (True, False):
        mine = ring_attention(q[:, :, sl].contiguous(), k[:, :, sl].contiguous(), v[:, :, sl].contiguous(), causal)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)[:, :, sl]
        torch.save(float((mine - ref).abs().max()), os.path.join(out, f"ring{rank}{causal}.pt"))


def _tpla(rank, world, out):
    from attn_dse.gpu.multi import tpla_decode
    g = torch.Generator().manual_seed(1)
    B, H, L, dc, dr, dv = 1, 4, 32, 16, 4, 8
    ql, qr = torch.randn(B, H, dc, generator=g), torch.randn(B, H, dr, generator=g)
    lat, rope = torch.randn(B, L, dc, generator=g), torch.randn(B, L, dr, generator=g)
    w = torch.randn(H, dc, dv, generator=g)
    c = dc // world
    sl = slice(rank * c, (rank + 1) * c)
    got = tpla_decode(ql[..., sl], qr, lat[..., sl], rope, w[:, sl])
    # one process: each slice's own softmax over its partial scores, up-projected, summed
    ref = 0
    for i in range(world):
        s_ = slice(i * c, (i + 1) * c)
        s = (torch.einsum("bhc,blc->bhl", ql[..., s_], lat[..., s_]) + torch.einsum("bhr,blr->bhl", qr, rope)) / math.sqrt(dc + dr)
        ref = ref + torch.einsum("bhc,hcv->bhv", torch.softmax(s, -1) @ lat[..., s_], w[:, s_])
    torch.save(float((got - ref).abs().max()), os.path.join(out, f"tpla{rank}.pt"))


def _quick(rank, world, out):
    from pathlib import Path
    from attn_dse.gpu.multi import run
    run(Path(out), quick=True)


def _spawn(fn_name, tmp_path, world=2):
    mp.spawn(_worker, args=(world, _port(), str(tmp_path), fn_name), nprocs=world, join=True)


def test_ring_attention_matches_one_process(tmp_path):
    _spawn("_ring", tmp_path)
    for name in os.listdir(tmp_path):
        assert torch.load(tmp_path / name) < 1e-5, name


def test_tpla_combine_matches_one_process(tmp_path):
    _spawn("_tpla", tmp_path)
    assert all(torch.load(tmp_path / f"tpla{r}.pt") < 1e-4 for r in range(2))


def test_quick_run_writes_csvs_with_provenance(tmp_path):
    _spawn("_quick", tmp_path)
    import csv
    rows = list(csv.DictReader(open(tmp_path / "collectives.csv")))
    assert {r["op"] for r in rows} == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"}
    assert all(r["backend"] == "gloo" and r["world_size"] == "2" and float(r["median_s"]) > 0 for r in rows)
    kinds = {r["kind"] for r in csv.DictReader(open(tmp_path / "layers.csv"))}
    assert kinds == {"tp_layer", "ring_prefill", "tpla_decode"}
