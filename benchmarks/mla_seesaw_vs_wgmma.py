"""Our two Gluon bf16 MLA decode kernels in one process on a Hopper GPU, 128 heads: the seesaw
(gpu/mla_decode_seesaw.py) against the one that splits every tile across its warpgroups
(gpu/mla_decode_wgmma.py). Checks first (NaN-poisoned outputs, ragged lengths, odd tile counts,
partial head blocks, splits), then each shape timed three times alternately on a cold L2 (best shown,
all runs listed).

    PYTHONPATH=. python3 benchmarks/mla_seesaw_vs_wgmma.py
"""
import math
import sys

import torch
import triton
from attn_dse.gpu.harness import BF16_BOUND, DEV, rel_err, rnd, timed, sm_count
from attn_dse.gpu.reference import mla_decode_ref
from attn_dse.gpu.mla_decode_wgmma import mla_decode_wgmma
from attn_dse.gpu.mla_decode_seesaw import mla_decode_seesaw
from attn_dse.gpu.mla_decode import choose_splits

torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
scale = 1 / math.sqrt(192)
ok = True
print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
for (B, H, L, splits) in [(2, 128, 3001, 1), (2, 128, 3001, 3), (1, 128, 5000, 1), (1, 128, 5000, 7), (2, 96, 1500, 1),
                          (2, 96, 1500, 3), (3, 128, 63, 1), (1, 128, 65, 1), (1, 128, 129, 2), (4, 64, 2049, 5),
                          (1, 128, 200, 8)]:
    qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
    lens = torch.randint(max(1, L // 2), L + 1, (B,), generator=g).to(DEV, torch.int32)
    ref = mla_decode_ref(qn, qp, kv, lens, 512, scale)
    out = torch.full((B, 1, H, 512), float("nan"), device=DEV, dtype=torch.bfloat16)
    mla_decode_seesaw(qn, qp, kv, lens, splits, scale, out=out)
    torch.cuda.synchronize()
    e = rel_err(out[:, 0], ref)
    e2 = rel_err(mla_decode_seesaw(qn, qp, kv, lens, splits, scale), ref)
    good = e <= BF16_BOUND and e2 <= BF16_BOUND
    ok &= good
    print(f"check B{B} H{H} L{L} splits {splits}: rel err {e:.2e} / {e2:.2e} {'ok' if good else 'FAIL'}", flush=True)
print("ALL CHECKS PASS" if ok else "CHECKS FAILED", flush=True)
if not ok:
    sys.exit(1)
H = 128
for B, L in [(64, 32768), (16, 32768), (128, 4096), (64, 4096), (128, 32768), (8, 8192), (32, 4096), (1, 32768)]:
    qn, qp, kv = rnd(B, H, 512), rnd(B, H, 64), rnd(B, L, 576)
    lens = torch.full((B,), L, device=DEV, dtype=torch.int32)
    s = choose_splits(B, 2, L, 64, sm_count())
    flops = 2 * B * H * L * 1088
    runs = {"wgmma": [], "seesaw": []}
    for _ in range(3):
        runs["wgmma"].append(timed(lambda: mla_decode_wgmma(qn, qp, kv, lens, s, scale))[0])
        runs["seesaw"].append(timed(lambda: mla_decode_seesaw(qn, qp, kv, lens, s, scale))[0])
    o, n = min(runs["wgmma"]), min(runs["seesaw"])
    print(f"B{B:4d} L{L:6d} splits {s:3d}: wgmma {o*1e6:7.1f} us {flops/o/1e12:5.1f} TF/s | seesaw {n*1e6:7.1f} us "
          f"{flops/n/1e12:5.1f} TF/s x{o/n:.3f}  (runs, us: wgmma {[round(x*1e6, 1) for x in runs['wgmma']]} "
          f"seesaw {[round(x*1e6, 1) for x in runs['seesaw']]})", flush=True)
    del kv
