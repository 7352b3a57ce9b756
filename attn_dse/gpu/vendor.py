"""Attention kernels attn-dse did not write, timed with the project's harness, so the cost model
can be calibrated per implementation.

    python -m attn_dse.gpu.vendor --out DIR [--quick] [--only cudnn,flash,eager,flex]

Implementations (the `implementation` column):
- cudnn, flash: torch SDPA under `sdpa_kernel(CUDNN_ATTENTION / FLASH_ATTENTION)`, layout
  (B, H, S, D). GQA through `enable_gqa=True`; where a backend refuses it, K/V are expanded with
  repeat_interleave outside the timed call and the row records the expanded head count
  (config "...,repeat_kv"). Prefill, decode (one query over the whole cache) and training
  (forward + backward timed together).
- eager: unfused PyTorch ops (matmul, scale, masked_fill, softmax in fp32, matmul), as model
  code without a fused kernel runs them; GQA K/V are expanded inside the timed call.
- flex: FlexAttention compiled with torch.compile: causal sliding windows and a causal top-k
  selection of 128-token key blocks per query block.

Rows follow the conventions of the project's own measurements (validation/data/*-measurements.csv):
context = cached tokens for decode (the query is the cache's last token, so it sees all L keys:
causal is recorded True, although SDPA is called with is_causal=False, as top-left alignment
would leave the single query one key), flops = exact algorithmic FLOPs (2 per multiply-add over
the attended pairs, causal S(S+1)/2; training 3x the forward: the backward's four matmuls, no
recomputation), kv_bytes = the K+V tensors' bytes (unexpanded). n_split is left empty: the
vendor's split count is unknown, so the model is not pinned to one.

Every implementation is checked against a float32 reference on a small ragged shape before it
is timed; one that does not run on the machine is skipped with a printed line.
Writes DIR/vendor-measurements.csv and DIR/vendor-checks.csv (not measurements.csv / checks.csv,
so a directory holding the project's own run keeps it).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

IMPLEMENTATIONS = ("cudnn", "flash", "eager", "flex")  # the order they run in
BOUND = 2e-2  # bf16 operands against float32 (the harness's BF16_BOUND)
BLOCK = 128  # FlexAttention's sparse block: the window masks' and the top-k selection's granularity
MLA_LATENT, MLA_ROPE = 512, 64
MLA_SCALE = 1 / math.sqrt(128 + 64)  # DeepSeek's q-k head dim (nope + rope), as the project's MLA rows


# ---------------------------------------------------------------- pure helpers (no GPU)
def dense_pairs(seq: int, causal: bool) -> int:
    """Attended (query, key) pairs of one head of square self-attention."""
    return seq * (seq + 1) // 2 if causal else seq * seq


def window_pairs(seq: int, window: int) -> int:
    """Causal sliding window: query i sees keys i-window+1 .. i, i.e. min(i+1, window) keys."""
    if seq <= window:
        return seq * (seq + 1) // 2
    return window * (window + 1) // 2 + (seq - window) * window


def topk_block_selection(n_blocks: int, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """[n_blocks, n_blocks] bool: query block qb takes its own (diagonal) block plus
    min(top_k, qb + 1) - 1 distinct earlier blocks drawn at random (MoBA-style causal top-k)."""
    sel = np.zeros((n_blocks, n_blocks), dtype=bool)
    for qb in range(n_blocks):
        sel[qb, qb] = True
        extra = min(top_k, qb + 1) - 1
        if extra:
            sel[qb, rng.choice(qb, size=extra, replace=False)] = True
    return sel


def selection_pairs(sel: np.ndarray, seq: int, block: int) -> int:
    """Causal pairs attended under a block selection (blocks of `block` tokens, the last one
    partial): a selected earlier block is attended whole, a selected diagonal block causally."""
    n = sel.shape[0]
    size = np.minimum(block, seq - block * np.arange(n)).astype(np.int64)  # tokens per block
    earlier = np.tril(sel, -1)
    full = int((size[:, None] * size[None, :] * earlier).sum())
    diagonal = int((np.diag(sel) * size * (size + 1) // 2).sum())
    return full + diagonal


def attention_flops(batch: int, n_heads: int, pairs: int, d_qk: int, d_v: int | None = None) -> float:
    """QK^T and PV: 2 FLOPs per multiply-add over every attended pair of every head."""
    return float(2 * batch * n_heads * pairs * (d_qk + (d_qk if d_v is None else d_v)))


TRAIN_FLOP_FACTOR = 3  # forward 2 matmuls + backward 4 (dV, dP, dQ, dK) of the same size; no recompute


def kv_bytes(batch: int, tokens: int, n_kv_heads: int, head_dim: int, elem: int = 2) -> int:
    """Bytes of the K and V tensors (bf16)."""
    return 2 * batch * tokens * n_kv_heads * head_dim * elem


def variant(n_heads: int, n_kv_heads: int) -> str:
    return "mha" if n_heads == n_kv_heads else ("mqa" if n_kv_heads == 1 else "gqa")


def window_allowed(seq: int, window: int | None, causal: bool = True) -> np.ndarray:
    """Dense [seq, seq] bool mask of causal (optionally windowed) attention."""
    i, j = np.arange(seq)[:, None], np.arange(seq)[None, :]
    allowed = (j <= i) if causal else np.ones((seq, seq), dtype=bool)
    return allowed & (i - j < window) if window else allowed


def selection_allowed(sel: np.ndarray, seq: int, block: int) -> np.ndarray:
    """Dense [seq, seq] bool mask of a causal block selection."""
    blk = np.arange(seq) // block
    return sel[blk[:, None], blk[None, :]] & window_allowed(seq, None)


# ---------------------------------------------------------------- the grids (pure: counts are testable)
def sdpa_prefill_shapes(quick: bool = False) -> list[tuple]:
    """(B, S, Hq, Hkv, D, causal), batch = 16k / S. GQA ratios 1, 4, 8 at d = 128; the two
    extremes at d = 64 and 256 (the ratio changes K/V traffic, which matters least in prefill)."""
    if quick:
        return [(2, 1024, 32, 8, 128, True)]
    shapes = []
    for D, ratios in ((64, (1, 8)), (128, (1, 4, 8)), (256, (1, 8))):
        for S in (1024, 4096, 16384):
            for causal in (False, True):
                shapes += [(16384 // S, S, 32, 32 // r, D, causal) for r in ratios]
    return shapes


def sdpa_decode_shapes(quick: bool = False) -> list[tuple]:
    """(B, L keys, Hq, Hkv, D): one new query token over L cached keys (context = L - 1)."""
    if quick:
        return [(16, 4096, 64, 8, 128)]
    return [(B, L, hq, hkv, 128) for hq, hkv in ((64, 8), (32, 32)) for B in (1, 16, 64) for L in (4096, 32768)]


def sdpa_train_shapes(quick: bool = False) -> list[tuple]:
    """(B, S, Hq, Hkv, D, causal): forward + backward."""
    if quick:
        return [(1, 2048, 32, 8, 128, True)]
    return [(16384 // S, S, 32, 8, D, causal) for D in (64, 128) for S in (2048, 8192, 16384)
            for causal in (True, False)]


def flex_window_shapes(quick: bool = False) -> list[tuple]:
    """(B, S, Hq, Hkv, D, window), causal."""
    if quick:
        return [(1, 4096, 32, 8, 128, 512)]
    return [(1, S, 32, 8, 128, w) for S in (4096, 16384) for w in (256, 512, 2048, 4096)]


def flex_sparse_shapes(quick: bool = False) -> list[tuple]:
    """(B, S, Hq, Hkv, D, top_k), causal, blocks of BLOCK tokens (128 blocks at S = 16k)."""
    if quick:
        return [(1, 4096, 32, 8, 128, 8)]
    return [(1, S, 32, 8, 128, k) for S in (8192, 16384) for k in (4, 8, 16, 32)]


def eager_prefill_shapes(quick: bool = False) -> list[tuple]:
    if quick:
        return [(2, 1024, 32, 8, 128, True)]
    return [(16384 // S, S, 32, 8, 128, c) for S in (1024, 4096) for c in (False, True)]


def eager_decode_shapes(quick: bool = False) -> list[tuple]:
    if quick:
        return [(16, 4096, 64, 8, 128)]
    return [(B, L, hq, hkv, 128) for hq, hkv in ((64, 8), (32, 32)) for B in (16, 64) for L in (4096, 16384)]


def eager_mla_shapes(quick: bool = False) -> list[tuple]:
    """(B, H, L latent tokens)."""
    if quick:
        return [(16, 128, 4096)]
    return [(B, H, L) for H in (128, 16) for B in (1, 16, 64) for L in (4096, 16384, 32768)]


def shape_counts(quick: bool = False) -> dict:
    sdpa = len(sdpa_prefill_shapes(quick)) + len(sdpa_decode_shapes(quick)) + len(sdpa_train_shapes(quick))
    return {"cudnn": sdpa, "flash": sdpa,
            "eager": len(eager_prefill_shapes(quick)) + len(eager_decode_shapes(quick)) + len(eager_mla_shapes(quick)),
            "flex": len(flex_window_shapes(quick)) + len(flex_sparse_shapes(quick))}


# ---------------------------------------------------------------- the kernels
def reference(q, k, v, allowed=None):
    """float32 attention, (B, H, S, D) layout; K/V heads expanded to the query heads; allowed a
    bool mask broadcastable to the scores (True = attended)."""
    g = q.shape[1] // k.shape[1]
    kf, vf = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)
    s = q.float() @ kf.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    return s.softmax(-1) @ vf


def mla_reference(q, kv):
    s = torch.einsum("bhd,bld->bhl", q.float(), kv.float()) * MLA_SCALE
    return torch.einsum("bhl,bld->bhd", s.softmax(-1), kv[..., :MLA_LATENT].float())


def eager_attention(q, k, v, masked=None):
    """Unfused attention as model code writes it: K/V heads repeated to the query heads, scores
    in bf16, masked_fill of `masked` (True = dropped), softmax in fp32, P cast back, P @ V."""
    g = q.shape[1] // k.shape[1]
    if g > 1:
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
    if masked is not None:
        s = s.masked_fill(masked, float("-inf"))
    p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(p, v)


def eager_mla_decode(q, kv):
    """Absorbed MLA decode, unfused: q [B, H, 576] against the latent cache kv [B, L, 576]; V is
    the cache's first 512 columns (a strided view, no copy)."""
    s = torch.bmm(q, kv.transpose(1, 2)) * MLA_SCALE
    p = torch.softmax(s, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.bmm(p, kv[..., :MLA_LATENT])


def causal_dropped(seq: int, device) -> torch.Tensor:
    """The eager path's cached causal mask: True above the diagonal."""
    return torch.ones(seq, seq, dtype=torch.bool, device=device).triu(1)


def window_mask_mod(window: int):
    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    return mask


def selection_mask_mod(table: torch.Tensor, block: int):
    """Causal attention within the selected blocks: table [n_blocks, n_blocks] bool on the device."""
    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & table[q_idx // block, kv_idx // block]
    return mask


def sdpa(q, k, v, causal: bool, gqa: bool):
    kw = {"enable_gqa": True} if gqa else {}
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)


def _sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend
    return {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[name]


_FLEX = {}


def _flex():
    """(compiled flex_attention, create_block_mask). Static shapes (no automatic dynamic
    recompile on the second sequence length); a recompile per mask closure, so the limit is raised."""
    if "fn" not in _FLEX:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        import torch._dynamo.config as dcfg
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dcfg, name):
                setattr(dcfg, name, max(getattr(dcfg, name), 64))
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
        _FLEX["mask"] = create_block_mask
    return _FLEX["fn"], _FLEX["mask"]


def _block_mask(mask_mod, seq: int):
    create_block_mask = _flex()[1]
    return create_block_mask(mask_mod, 1, 1, seq, seq, device="cuda", BLOCK_SIZE=BLOCK)


# ---------------------------------------------------------------- running
class _Run:
    """One implementation's pass: its checks, its shapes, the skipped ones."""

    def __init__(self, rec, impl: str):
        self.rec, self.impl, self.skipped, self.rows = rec, impl, [], 0

    def check(self, name: str, out, ref):
        from attn_dse.gpu.harness import rel_err
        self.rec.check(f"{self.impl} {name}", rel_err(out, ref), BOUND)

    def probe(self, what: str, attempts) -> str | None:
        """Runs the first of `attempts` [(label, fn)] that the machine supports (fn does the
        checks); returns its label, or None (printed) when none runs."""
        for label, fn in attempts:
            try:
                fn()
                return label
            except (RuntimeError, TypeError, ValueError, ImportError, AttributeError) as exc:
                print(f"{self.impl} {what} [{label}]: not available here: {_why(exc)}", flush=True)
            finally:
                torch.cuda.empty_cache()
        print(f"skip {self.impl} {what}: no variant runs on this machine", flush=True)
        return None

    def shape(self, label: str, body) -> None:
        """Times one shape (body adds the row); a failure is printed and the run goes on."""
        try:
            body()
            self.rows += 1
        except Exception as exc:  # noqa: BLE001 (a shape a backend refuses, or out of memory)
            print(f"skip {self.impl} {label}: {_why(exc)}", flush=True)
            self.skipped.append(label)
        finally:
            torch.cuda.empty_cache()

    def add(self, med_p20_p80, **row):
        med, p20, p80 = med_p20_p80
        row = {"window": "", "top_k": "", "block": "", "dtype": "bf16", "n_split": "", **row}
        self.rec.add(implementation=self.impl, median_s=med, p20_s=p20, p80_s=p80, **row)


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _sdpa_pass(run: _Run, quick: bool) -> None:
    from attn_dse.gpu.harness import rnd, timed
    from torch.nn.attention import sdpa_kernel
    impl = run.impl
    with sdpa_kernel([_sdpa_backend(impl)]):
        # ---- checks: GQA through enable_gqa, else K/V repeated outside the call; ragged first
        def check_prefill(S, gqa):
            B, Hq, Hkv, D = 2, 8, 2, 128
            q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
            if not gqa:
                k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
            allowed = torch.from_numpy(window_allowed(S, None)).cuda()
            run.check(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal {'enable_gqa' if gqa else 'repeat_kv'}",
                      sdpa(q, k, v, True, gqa), reference(q, k, v, allowed))

        def check_decode(L, gqa):
            B, Hq, Hkv, D = 3, 16, 2, 128
            q, k, v = rnd(B, Hq, 1, D), rnd(B, Hkv, L, D), rnd(B, Hkv, L, D)
            if not gqa:
                k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
            run.check(f"decode B{B} L{L} H{Hq}/{Hkv} d{D} {'enable_gqa' if gqa else 'repeat_kv'}",
                      sdpa(q, k, v, False, gqa), reference(q, k, v))

        def check_train(S, gqa):
            B, Hq, Hkv, D = 2, 8, 2, 128
            q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
            if not gqa:
                k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
            grad = rnd(B, Hq, S, D)
            leaves = [t.requires_grad_() for t in (q, k, v)]
            out = sdpa(*leaves, True, gqa)
            grads = torch.autograd.grad(out, leaves, grad)
            ref_leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
            allowed = torch.from_numpy(window_allowed(S, None)).cuda()
            ref = reference(*ref_leaves, allowed)
            ref_grads = torch.autograd.grad(ref, ref_leaves, grad.float())
            tag = f"train B{B} S{S} H{Hq}/{Hkv} d{D} causal {'enable_gqa' if gqa else 'repeat_kv'}"
            run.check(f"{tag} out", out.detach(), ref.detach())
            for name, g, rg in zip(("dq", "dk", "dv"), grads, ref_grads):
                run.check(f"{tag} {name}", g, rg)

        def attempts(check, ragged, aligned):
            return [(f"{mode} S{n}", (lambda n=n, gqa=gqa: check(n, gqa)))  # enable_gqa preferred
                    for mode, gqa in (("enable_gqa", True), ("repeat_kv", False)) for n in (ragged, aligned)]

        modes = {phase: run.probe(phase, attempts(check, ragged, aligned)) for phase, check, ragged, aligned in
                 (("prefill", check_prefill, 1000, 1024), ("decode", check_decode, 3001, 4096),
                  ("train", check_train, 777, 1024))}
        gqa_mode = {phase: (m.split()[0] if m else None) for phase, m in modes.items()}

        def kv_heads(Hq, Hkv, mode):
            """(heads K/V have in the call, whether enable_gqa is passed)."""
            if Hq == Hkv:
                return Hkv, False
            return (Hkv, True) if mode == "enable_gqa" else (Hq, False)

        # ---- prefill
        if gqa_mode["prefill"]:
            for B, S, Hq, Hkv, D, causal in sdpa_prefill_shapes(quick):
                def body(B=B, S=S, Hq=Hq, Hkv=Hkv, D=D, causal=causal):
                    h, gqa = kv_heads(Hq, Hkv, gqa_mode["prefill"])
                    q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
                    if h != Hkv:
                        k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
                    t = timed(lambda: sdpa(q, k, v, causal, gqa))
                    run.add(t, family="prefill", variant="gqa", phase="prefill", batch=B, seq=S, context=S,
                            n_heads=Hq, n_kv_heads=h, head_dim=D, causal=causal,
                            config=_cfg(impl, Hq, Hkv, gqa_mode["prefill"]),
                            flops=attention_flops(B, Hq, dense_pairs(S, causal), D), kv_bytes=kv_bytes(B, S, h, D))
                run.shape(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal}", body)
        # ---- decode: one query over L keys, the query being the cache's last token
        if gqa_mode["decode"]:
            for B, L, Hq, Hkv, D in sdpa_decode_shapes(quick):
                def body(B=B, L=L, Hq=Hq, Hkv=Hkv, D=D):
                    h, gqa = kv_heads(Hq, Hkv, gqa_mode["decode"])
                    q, k, v = rnd(B, Hq, 1, D), rnd(B, Hkv, L, D), rnd(B, Hkv, L, D)
                    if h != Hkv:
                        k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
                    t = timed(lambda: sdpa(q, k, v, False, gqa))
                    run.add(t, family="decode", variant=variant(Hq, h), phase="decode", batch=B, seq=1,
                            context=L - 1, n_heads=Hq, n_kv_heads=h, head_dim=D, causal=True,
                            config=_cfg(impl, Hq, Hkv, gqa_mode["decode"]),
                            flops=attention_flops(B, Hq, L, D), kv_bytes=kv_bytes(B, L, h, D))
                run.shape(f"decode B{B} L{L} H{Hq}/{Hkv} d{D}", body)
        # ---- training: forward + backward in one timed call
        if gqa_mode["train"]:
            for B, S, Hq, Hkv, D, causal in sdpa_train_shapes(quick):
                def body(B=B, S=S, Hq=Hq, Hkv=Hkv, D=D, causal=causal):
                    h, gqa = kv_heads(Hq, Hkv, gqa_mode["train"])
                    q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
                    if h != Hkv:
                        k, v = k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1)
                    q, k, v = [t.requires_grad_() for t in (q, k, v)]
                    grad = rnd(B, Hq, S, D)

                    def step():
                        q.grad = k.grad = v.grad = None  # host-side only: no kernel, no accumulation
                        sdpa(q, k, v, causal, gqa).backward(grad)

                    t = timed(step)
                    run.add(t, family="prefill", variant="gqa", phase="train", batch=B, seq=S, context=S,
                            n_heads=Hq, n_kv_heads=h, head_dim=D, causal=causal,
                            config=_cfg(impl, Hq, Hkv, gqa_mode["train"]) + ",fwd+bwd",
                            flops=TRAIN_FLOP_FACTOR * attention_flops(B, Hq, dense_pairs(S, causal), D),
                            kv_bytes=kv_bytes(B, S, h, D))
                run.shape(f"train B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal}", body)


def _cfg(impl: str, hq: int, hkv: int, mode: str) -> str:
    """How the kernel was called, e.g. "sdpa-cudnn,enable_gqa" (no parser reads it as a tile tuple:
    the model pins tiles only from tuples)."""
    return f"sdpa-{impl}" if hq == hkv else f"sdpa-{impl},{mode}"


def _eager_pass(run: _Run, quick: bool) -> None:
    from attn_dse.cost.families.mla_decode import MlaDecode
    from attn_dse.gpu.harness import rnd, timed

    def check_all():
        B, S, Hq, Hkv, D = 2, 777, 8, 2, 128
        q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
        dropped = causal_dropped(S, q.device)
        run.check(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal", eager_attention(q, k, v, dropped),
                  reference(q, k, v, ~dropped))
        B, L, Hq, Hkv = 3, 3001, 16, 2
        q, k, v = rnd(B, Hq, 1, D), rnd(B, Hkv, L, D), rnd(B, Hkv, L, D)
        run.check(f"decode B{B} L{L} H{Hq}/{Hkv} d{D}", eager_attention(q, k, v), reference(q, k, v))
        for B, H, L in ((2, 16, 3001), (1, 128, 1500)):
            q, kv = rnd(B, H, MLA_LATENT + MLA_ROPE), rnd(B, L, MLA_LATENT + MLA_ROPE)
            run.check(f"mla_decode B{B} H{H} L{L}", eager_mla_decode(q, kv), mla_reference(q, kv))

    if run.probe("checks", [("eager", check_all)]) is None:
        return
    for B, S, Hq, Hkv, D, causal in eager_prefill_shapes(quick):
        def body(B=B, S=S, Hq=Hq, Hkv=Hkv, D=D, causal=causal):
            q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
            dropped = causal_dropped(S, q.device) if causal else None
            t = timed(lambda: eager_attention(q, k, v, dropped))
            run.add(t, family="prefill", variant="gqa", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                    n_kv_heads=Hkv, head_dim=D, causal=causal, config="eager,repeat_kv",
                    flops=attention_flops(B, Hq, dense_pairs(S, causal), D), kv_bytes=kv_bytes(B, S, Hkv, D))
        run.shape(f"prefill B{B} S{S} H{Hq}/{Hkv} d{D} causal={causal}", body)
    for B, L, Hq, Hkv, D in eager_decode_shapes(quick):
        def body(B=B, L=L, Hq=Hq, Hkv=Hkv, D=D):
            q, k, v = rnd(B, Hq, 1, D), rnd(B, Hkv, L, D), rnd(B, Hkv, L, D)
            t = timed(lambda: eager_attention(q, k, v))
            run.add(t, family="decode", variant=variant(Hq, Hkv), phase="decode", batch=B, seq=1, context=L - 1,
                    n_heads=Hq, n_kv_heads=Hkv, head_dim=D, causal=True, config="eager,repeat_kv",
                    flops=attention_flops(B, Hq, L, D), kv_bytes=kv_bytes(B, L, Hkv, D))
        run.shape(f"decode B{B} L{L} H{Hq}/{Hkv} d{D}", body)
    width = MLA_LATENT + MLA_ROPE
    for B, H, L in eager_mla_shapes(quick):
        def body(B=B, H=H, L=L):
            q, kv = rnd(B, H, width), rnd(B, L, width)
            t = timed(lambda: eager_mla_decode(q, kv))
            run.add(t, family=MlaDecode.name, variant="mla", phase="decode", batch=B, seq=1, context=L - 1,
                    n_heads=H, n_kv_heads=1, head_dim=width, causal=True, config="eager,bmm",
                    flops=attention_flops(B, H, L, width, MLA_LATENT), kv_bytes=B * L * width * 2)
        run.shape(f"mla_decode B{B} H{H} L{L}", body)


def _flex_pass(run: _Run, quick: bool) -> None:
    from attn_dse.gpu.harness import rnd, timed
    rng = np.random.default_rng(0)

    def check(S, window, top_k):
        flex = _flex()[0]
        B, Hq, Hkv, D = 2, 8, 2, 128
        q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
        allowed = window_allowed(S, window)
        run.check(f"window B{B} S{S} H{Hq}/{Hkv} d{D} w{window}",
                  flex(q, k, v, block_mask=_block_mask(window_mask_mod(window), S), enable_gqa=True),
                  reference(q, k, v, torch.from_numpy(allowed).cuda()))
        sel = topk_block_selection(-(-S // BLOCK), top_k, rng)
        mask = selection_mask_mod(torch.from_numpy(sel).cuda(), BLOCK)
        run.check(f"block_sparse B{B} S{S} H{Hq}/{Hkv} d{D} top_k{top_k} of {sel.shape[0]}",
                  flex(q, k, v, block_mask=_block_mask(mask, S), enable_gqa=True),
                  reference(q, k, v, torch.from_numpy(selection_allowed(sel, S, BLOCK)).cuda()))

    if run.probe("checks", [("ragged 1000", lambda: check(1000, 300, 3)),
                            ("aligned 1024", lambda: check(1024, 300, 3))]) is None:
        return
    flex = _flex()[0]
    for B, S, Hq, Hkv, D, w in flex_window_shapes(quick):
        def body(B=B, S=S, Hq=Hq, Hkv=Hkv, D=D, w=w):
            q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
            bm = _block_mask(window_mask_mod(w), S)
            fn = lambda: flex(q, k, v, block_mask=bm, enable_gqa=True)  # noqa: E731
            fn()  # compiles outside the harness's estimate
            torch.cuda.synchronize()
            t = timed(fn)
            run.add(t, family="prefill", variant="gqa", phase="prefill", batch=B, seq=S, context=S, n_heads=Hq,
                    n_kv_heads=Hkv, head_dim=D, causal=True, window=w, block=BLOCK, config="flex,compiled",
                    flops=attention_flops(B, Hq, window_pairs(S, w), D), kv_bytes=kv_bytes(B, S, Hkv, D))
        run.shape(f"window B{B} S{S} H{Hq}/{Hkv} d{D} w{w}", body)
    for B, S, Hq, Hkv, D, top_k in flex_sparse_shapes(quick):
        def body(B=B, S=S, Hq=Hq, Hkv=Hkv, D=D, top_k=top_k):
            q, k, v = rnd(B, Hq, S, D), rnd(B, Hkv, S, D), rnd(B, Hkv, S, D)
            sel = topk_block_selection(-(-S // BLOCK), top_k, rng)  # one selection for every head
            bm = _block_mask(selection_mask_mod(torch.from_numpy(sel).cuda(), BLOCK), S)
            fn = lambda: flex(q, k, v, block_mask=bm, enable_gqa=True)  # noqa: E731
            fn()
            torch.cuda.synchronize()
            t = timed(fn)
            run.add(t, family="block_sparse", variant="moba", phase="prefill", batch=B, seq=S, context=S,
                    n_heads=Hq, n_kv_heads=Hkv, head_dim=D, causal=True, top_k=top_k, block=BLOCK,
                    config="flex,compiled", flops=attention_flops(B, Hq, selection_pairs(sel, S, BLOCK), D),
                    kv_bytes=kv_bytes(B, S, Hkv, D))
        run.shape(f"block_sparse B{B} S{S} H{Hq}/{Hkv} d{D} top_k{top_k}", body)


_PASSES = {"cudnn": _sdpa_pass, "flash": _sdpa_pass, "eager": _eager_pass, "flex": _flex_pass}


def measure_vendor(rec, quick: bool = False, implementations=IMPLEMENTATIONS) -> dict:
    """Checks and times each implementation's grid into `rec` (a harness Recorder); returns
    {implementation: {"rows": n, "skipped": [shape labels]}}. quick: one to three shapes each."""
    torch.manual_seed(0)
    summary = {}
    for impl in implementations:
        start = time.time()
        print(f"== {impl} ({shape_counts(quick)[impl]} shapes)", flush=True)
        run = _Run(rec, impl)
        try:
            _PASSES[impl](run, quick)
        except (ImportError, AttributeError, RuntimeError) as exc:  # the implementation is absent here
            print(f"skip {impl}: not available on this machine: {_why(exc)}", flush=True)
        torch.cuda.empty_cache()
        summary[impl] = {"rows": run.rows, "skipped": run.skipped}
        print(f"== {impl}: {run.rows} shapes timed, {len(run.skipped)} skipped, {time.time() - start:.0f} s",
              flush=True)
    return summary


def columns() -> list[str]:
    from attn_dse.gpu.harness import FIELDS
    return list(FIELDS) + [c for c in ("implementation",) if c not in FIELDS]


def write_vendor(rec, out: Path) -> None:
    rec.write(out, "vendor", columns())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for vendor-measurements.csv")
    ap.add_argument("--quick", action="store_true", help="a few shapes per implementation (smoke test)")
    ap.add_argument("--only", default=",".join(IMPLEMENTATIONS), help="comma-separated implementations")
    args = ap.parse_args(argv)
    impls = tuple(i for i in args.only.split(",") if i)
    unknown = [i for i in impls if i not in IMPLEMENTATIONS]
    if unknown:
        ap.error(f"unknown implementation(s) {', '.join(unknown)} (known: {', '.join(IMPLEMENTATIONS)})")
    from attn_dse.gpu.harness import Recorder, provenance
    start = time.time()
    print(f"{provenance()}", flush=True)
    rec = Recorder(args.out)
    summary = {}
    for impl in impls:  # written after each implementation: a crash keeps what was measured
        summary.update(measure_vendor(rec, args.quick, (impl,)))
        write_vendor(rec, args.out)
    ok = all(c["ok"] for c in rec.checks)
    per_impl = ", ".join(f"{k} {v['rows']}" for k, v in summary.items())
    print(f"{len(rec.rows)} shapes measured ({per_impl}), "
          f"{sum(len(v['skipped']) for v in summary.values())} skipped, "
          f"{sum(c['ok'] for c in rec.checks)}/{len(rec.checks)} checks ok, {time.time() - start:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
