"""Check and time MLA decode configurations, each in its own process (a miscompiled one can
poison the CUDA context): python benchmarks/explore_mla.py H B L cfg [cfg ...], cfg as
layout,block_h,block_n,warps,stages[,splits]."""
import math
import subprocess
import sys


def one(H, B, L, cfg):
    import torch
    from attn_dse.gpu.measure import rel_err, rnd, timed
    from attn_dse.gpu.mla_decode import mla_decode
    from attn_dse.gpu.reference import mla_decode_ref
    layout, bh, bn, w, st, *sp = cfg.split(",")
    kw = dict(layout=layout, block_h=int(bh), block_n=int(bn), num_warps=int(w), num_stages=int(st),
              n_splits=int(sp[0]) if sp else None)
    g = torch.Generator().manual_seed(1)
    qn, qp, kv = rnd(3, H, 512), rnd(3, H, 64), rnd(3, 3001, 576)
    lens = torch.randint(1500, 3002, (3,), generator=g).to("cuda", torch.int32)
    out = torch.full((3, 1, H, 512), float("nan"), device="cuda", dtype=torch.bfloat16)
    mla_decode(qn, qp, kv, lens, out=out, **kw)
    err = rel_err(out[:, 0], mla_decode_ref(qn, qp, kv, lens, 512, 1 / math.sqrt(192)))
    qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
    lens = torch.full((B,), L, device="cuda", dtype=torch.int32)
    t = timed(lambda: mla_decode(qn, qp, kv, lens, **kw))[0]
    print(f"H={H} B={B} L={L} {cfg:28s} err={err:.1e} {t * 1e6:8.1f} us {2 * B * H * L * 1088 / t / 1e12:5.0f} TF/s "
          f"{B * L * 1152 / t / 1e12:5.2f} TB/s", flush=True)


if __name__ == "__main__":
    H, B, L, *cfgs = sys.argv[1:]
    if len(cfgs) == 1:
        one(int(H), int(B), int(L), cfgs[0])
    else:
        for cfg in cfgs:
            r = subprocess.run([sys.executable, __file__, H, B, L, cfg], capture_output=True, text=True)
            print(r.stdout.strip() or f"H={H} B={B} L={L} {cfg:28s} failed: {r.stderr.strip().splitlines()[-1][:150]}",
                  flush=True)
