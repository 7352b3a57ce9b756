"""Plain PyTorch references (float32) for the kernels: the ground truth of every check."""
from __future__ import annotations

import math

import torch


def attention_ref(q, k, v, causal: bool, window: int | None = None, seq_lens=None):
    """q [B, Sq, Hq, D]; k, v [B, Sk, Hkv, D]. Queries sit at the last Sq positions of the keys
    (per batch entry: the last Sq of seq_lens[b] when given)."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    g = Hq // Hkv
    qf, kf, vf = q.float(), k.float().repeat_interleave(g, 2), v.float().repeat_interleave(g, 2)
    s = torch.einsum("bqhd,bkhd->bhqk", qf, kf) / math.sqrt(D)
    lens = torch.full((B,), Sk, device=q.device) if seq_lens is None else seq_lens.to(q.device)
    qpos = lens[:, None] - Sq + torch.arange(Sq, device=q.device)[None, :]  # [B, Sq]
    kpos = torch.arange(Sk, device=q.device)[None, None, :]
    allowed = kpos < lens[:, None, None]
    if causal:
        allowed = allowed & (kpos <= qpos[:, :, None])
    if window is not None:
        allowed = allowed & (qpos[:, :, None] - kpos < window)
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), vf)


def mla_decode_ref(q_nope, q_pe, kv, seq_lens, d_latent: int, sm_scale: float):
    """Absorbed MLA decode. q_nope [B, H, d_latent] or [B, Sq, H, d_latent], q_pe likewise with
    d_rope, kv [B, L, d_latent + d_rope]; V = the latent columns of kv. Sq new tokens sit at the
    last Sq of seq_lens[b] and attend causally among themselves."""
    one = q_nope.dim() == 3
    q = torch.cat([q_nope, q_pe], -1).float()
    q = q[:, None] if one else q
    s = torch.einsum("bqhd,bld->bqhl", q, kv.float()) * sm_scale
    L, Sq = kv.shape[1], q.shape[1]
    last = seq_lens.to(kv.device)[:, None] - Sq + torch.arange(Sq, device=kv.device)[None, :]  # [B, Sq]
    mask = torch.arange(L, device=kv.device)[None, None, :] <= last[:, :, None]
    s = s.masked_fill(~mask[:, :, None], float("-inf"))
    out = torch.einsum("bqhl,bld->bqhd", s.softmax(-1), kv[..., :d_latent].float())
    return out[:, 0] if one else out


def block_sparse_ref(q, k, v, block_idx, block: int, causal: bool):
    """q [B, Sq, Hq, D] (queries at the last Sq positions), block_idx [B, Hkv, n_qblocks, top_k] of
    key-block ids (-1 = none) per query block of `block` rows (decode: one query block)."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    g = Hq // Hkv
    allowed = torch.zeros(B, Hkv, Sq, Sk, dtype=torch.bool, device=q.device)
    kpos = torch.arange(Sk, device=q.device)
    qpos = Sk - Sq + torch.arange(Sq, device=q.device)
    for qb in range(block_idx.shape[2]):
        rows = slice(qb * block, min((qb + 1) * block, Sq))
        for j in range(block_idx.shape[3]):
            ids = block_idx[:, :, qb, j]  # [B, Hkv]
            sel = (kpos[None, None] // block == ids[..., None]) & (ids[..., None] >= 0)
            allowed[:, :, rows] |= sel[:, :, None, :]
    if causal:
        allowed &= kpos[None, None, None, :] <= qpos[None, None, :, None]
    allowed = allowed.repeat_interleave(g, 1)  # [B, Hq, Sq, Sk]
    s = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float().repeat_interleave(g, 2)) / math.sqrt(D)
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v.float().repeat_interleave(g, 2))
