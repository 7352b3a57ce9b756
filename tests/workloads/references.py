"""Plain-PyTorch reference implementations of every variant, one layer, written independently
of the op lists: FlopCounterMode counts their matmul FLOPs for the exactness tests.

Masks (causal, window, top-k) are applied by attending, per query, only the keys it sees, so
the FLOPs counted are exactly the attended pairs. Shapes: x [B, S, E]; caches hold `past`
tokens; queries sit at positions past..past+S-1.
"""
from __future__ import annotations

import math

import torch

G = torch.Generator().manual_seed(0)


def rand(*shape, grad=False):
    t = torch.randn(*shape, generator=G, dtype=torch.float32) * 0.1
    return t.requires_grad_(grad)


def attend(q, k, v, visible=None):
    """q [B,Sq,Hq,d], k [B,L,Hk,d], v [B,L,Hk,dv]; visible(i) -> key indices for query i."""
    g = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2)
    scale = 1 / math.sqrt(q.shape[-1])
    if visible is None:
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)
    outs = []
    for i in range(q.shape[1]):  # explicit batched matmuls: einsum folds size-1 dims into mul
        idx = torch.as_tensor(visible(i), dtype=torch.long)
        ki, vi = k[:, idx].permute(0, 2, 3, 1), v[:, idx].permute(0, 2, 1, 3)  # [B,H,d,n], [B,H,n,dv]
        s = (q[:, i].unsqueeze(2) @ ki) * scale  # [B,H,1,n]
        outs.append((s.softmax(-1) @ vi).squeeze(2))
    return torch.stack(outs, dim=1)


def causal_visible(past, window=None):
    def vis(i):
        p = past + i
        lo = 0 if window is None else max(0, p - window + 1)
        return list(range(lo, p + 1))
    return vis


def window_visible(past, seq, window):
    def vis(i):
        p = past + i
        return [j for j in range(past + seq) if abs(p - j) <= window - 1]
    return vis


def mask_for(past, seq, causal, window=None):
    if causal:
        return causal_visible(past, window)
    if window is not None:
        return window_visible(past, seq, window)
    return None


class Layer:
    """Holds the shapes of one test case and builds inputs."""

    def __init__(self, B, S, past, causal, train):
        self.B, self.S, self.past, self.causal, self.train = B, S, past, causal, train

    def x(self, E):
        return rand(self.B, self.S, E, grad=self.train)

    def w(self, *shape):
        return rand(*shape, grad=self.train)

    def cache(self, *shape):
        return rand(self.B, self.past, *shape)


def gqa(L: Layer, n_heads, n_kv_heads, head_dim, d_model=None, window=None, n_query_heads=None, **_):
    hq = n_query_heads or n_heads
    E = d_model or n_heads * head_dim
    x = L.x(E)
    q = (x @ L.w(E, hq * head_dim)).view(L.B, L.S, hq, head_dim)
    k = torch.cat([L.cache(n_kv_heads, head_dim), (x @ L.w(E, n_kv_heads * head_dim)).view(L.B, L.S, n_kv_heads, head_dim)], 1)
    v = torch.cat([L.cache(n_kv_heads, head_dim), (x @ L.w(E, n_kv_heads * head_dim)).view(L.B, L.S, n_kv_heads, head_dim)], 1)
    o = attend(q, k, v, mask_for(L.past, L.S, L.causal, window))
    return o.reshape(L.B, L.S, -1) @ L.w(hq * head_dim, E)


def mla(L: Layer, scheme, n_heads=128, kv_lora_rank=512, qk_rope_dim=64, qk_nope_dim=128, v_head_dim=128,
        q_lora_rank=1536, d_model=7168, latent_slice=None, **_):
    h, dc, dr, dn, dv, E = n_heads, kv_lora_rank, qk_rope_dim, qk_nope_dim, v_head_dim, d_model
    x = L.x(E)
    q = ((x @ L.w(E, q_lora_rank)) @ L.w(q_lora_rank, h * (dn + dr))).view(L.B, L.S, h, dn + dr)
    q_nope, q_rope = q[..., :dn], q[..., dn:]
    vis = mask_for(L.past, L.S, L.causal)
    if scheme == "absorbed":  # the device's latent columns: its slice of d_c, then the rope key
        sl = latent_slice or dc
        latent_new = x @ L.w(E, sl + dr)
        q_lat = torch.einsum("bshn,hnc->bshc", q_nope, L.w(h, dn, sl))
        kv = torch.cat([L.cache(sl + dr), latent_new], 1).unsqueeze(2)  # one shared head
        o_lat = attend(torch.cat([q_lat, q_rope], -1), kv, kv[..., :sl], vis)
        o = torch.einsum("bshc,hcv->bshv", o_lat, L.w(h, sl, dv))
    else:
        latent_new = x @ L.w(E, dc + dr)
        w_ukv = L.w(dc, h * (dn + dv))
        up_new = (latent_new[..., :dc] @ w_ukv).view(L.B, L.S, h, dn + dv)
        if scheme == "naive":
            k_cache, v_cache = L.cache(h, dn + dr), L.cache(h, dv)
        else:  # recompute: up-project the cached latent too
            lat = L.cache(dc + dr)
            up = (lat[..., :dc] @ w_ukv).view(L.B, L.past, h, dn + dv)
            k_cache = torch.cat([up[..., :dn], lat[..., dc:].unsqueeze(2).expand(-1, -1, h, -1)], -1)
            v_cache = up[..., dn:]
        k_new = torch.cat([up_new[..., :dn], latent_new[..., dc:].unsqueeze(2).expand(-1, -1, h, -1)], -1)
        k = torch.cat([k_cache, k_new], 1)
        v = torch.cat([v_cache, up_new[..., dn:]], 1)
        o = attend(q, k, v, vis)
    return o.reshape(L.B, L.S, h * dv) @ L.w(h * dv, E)


def block_sparse(L: Layer, n_heads, n_kv_heads, head_dim, block_size, top_k, **_):
    E, d, bs = n_heads * head_dim, head_dim, block_size
    x = L.x(E)
    q = (x @ L.w(E, n_heads * d)).view(L.B, L.S, n_heads, d)
    k = torch.cat([L.cache(n_kv_heads, d), (x @ L.w(E, n_kv_heads * d)).view(L.B, L.S, n_kv_heads, d)], 1)
    v = torch.cat([L.cache(n_kv_heads, d), (x @ L.w(E, n_kv_heads * d)).view(L.B, L.S, n_kv_heads, d)], 1)
    n = k.shape[1]
    g = n_heads // n_kv_heads
    outs = []
    for i in range(L.S):
        p = L.past + i
        n_vis = p // bs + 1 if L.causal else math.ceil(n / bs)
        with torch.no_grad():  # the gate: q . mean-pooled keys of every visible block
            cents = torch.stack([k[:, j * bs:min((j + 1) * bs, n)].mean(1) for j in range(n_vis)], 1)
            gate = torch.einsum("bhd,bnhd->bhn", q[:, i], cents.repeat_interleave(g, dim=2))
        if L.causal:  # own block (partial) plus the top_k - 1 best earlier blocks
            earlier = list(range(n_vis - 1))[: top_k - 1]
            idx = [t for j in earlier for t in range(j * bs, (j + 1) * bs)] + list(range((n_vis - 1) * bs, p + 1))
        else:
            chosen = gate[0, 0].topk(min(top_k, n_vis)).indices.tolist()
            idx = [t for j in chosen for t in range(j * bs, min((j + 1) * bs, n))]
        outs.append(attend(q[:, i:i + 1], k, v, lambda _, idx=idx: idx)[:, 0])
    o = torch.stack(outs, 1)
    return o.reshape(L.B, L.S, -1) @ L.w(n_heads * d, E)


def nsa(L: Layer, n_heads, n_kv_heads, head_dim, cmp_block, cmp_stride, sel_block, n_sel, window, **_):
    E, d, l, st = n_heads * head_dim, head_dim, cmp_block, cmp_stride
    x = L.x(E)
    q = (x @ L.w(E, n_heads * d)).view(L.B, L.S, n_heads, d)
    raw = [torch.cat([L.cache(n_kv_heads, d), (x @ L.w(E, n_kv_heads * d)).view(L.B, L.S, n_kv_heads, d)], 1)
           for _ in range(2)]
    win = [torch.cat([L.cache(n_kv_heads, d), (x @ L.w(E, n_kv_heads * d)).view(L.B, L.S, n_kv_heads, d)], 1)
           for _ in range(2)]
    gates = x @ L.w(E, 3 * n_heads)
    n = L.past + L.S

    def n_cmp(m):
        return (m - l) // st + 1 if m >= l else 0
    cmp = []
    for t in raw:  # compress only the blocks completed by the new tokens (older ones are cached)
        w = L.w(l * d, d)
        new = [torch.einsum("bhx,xd->bhd", t[:, j * st:j * st + l].permute(0, 2, 1, 3).reshape(L.B, n_kv_heads, l * d), w)
               for j in range(n_cmp(L.past), n_cmp(n))]
        old = [rand(L.B, n_kv_heads, d) for _ in range(n_cmp(L.past))]
        cmp.append(torch.stack(old + new, 1) if old + new else torch.zeros(L.B, 0, n_kv_heads, d))
    o_cmp = attend(q, cmp[0], cmp[1], lambda i: list(range(n_cmp(L.past + i + 1))))
    sel = n_sel * sel_block
    o_sel = attend(q, raw[0], raw[1], causal_visible(L.past, sel))
    o_win = attend(q, win[0], win[1], causal_visible(L.past, window))
    gz = gates.view(L.B, L.S, n_heads, 3, 1).sigmoid()
    o = gz[..., 0, :] * o_cmp + gz[..., 1, :] * o_sel + gz[..., 2, :] * o_win
    return o.reshape(L.B, L.S, -1) @ L.w(n_heads * d, E)


def linear_attention(L: Layer, n_heads, head_dim, chunk, **_):
    h, dk, E = n_heads, head_dim, n_heads * head_dim
    x = L.x(E)
    q, k, v = ((x @ L.w(E, h * dk)).view(L.B, L.S, h, dk).transpose(1, 2) for _ in range(3))
    state = torch.zeros(L.B, h, dk, dk, requires_grad=L.train) if L.past == 0 else rand(L.B, h, dk, dk)
    if L.past > 0 or not L.causal:
        outs = []
        for i in range(L.S):
            if L.past > 0:
                state = state + k[:, :, i].unsqueeze(-1) @ v[:, :, i].unsqueeze(-2)
                outs.append((q[:, :, i].unsqueeze(-2) @ state).squeeze(-2))
        if L.past == 0:  # non-causal global form
            state = k.transpose(-1, -2) @ v
            o = q @ state
        else:
            o = torch.stack(outs, 2)
    else:
        outs = []
        for c0 in range(0, L.S, chunk):
            qc, kc, vc = q[:, :, c0:c0 + chunk], k[:, :, c0:c0 + chunk], v[:, :, c0:c0 + chunk]
            m = torch.ones(qc.shape[2], qc.shape[2]).tril()
            intra = ((qc @ kc.transpose(-1, -2)) * m) @ vc
            outs.append(intra + qc @ state)
            state = state + kc.transpose(-1, -2) @ vc
        o = torch.cat(outs, 2)
    return o.transpose(1, 2).reshape(L.B, L.S, -1) @ L.w(h * dk, E)


def ccgqa(L: Layer, d_model, n_heads, q_compression, kv_compression, conv_kernel, **_):
    E = d_model
    eq, ekv = E // q_compression, E // kv_compression
    d = eq // n_heads
    hkv = ekv // d
    x = L.x(E)

    def conv(t):  # causal depthwise convolution as shifted weighted sums (not a matmul)
        w = torch.rand(conv_kernel, t.shape[-1], generator=G)
        return sum(w[j] * torch.nn.functional.pad(t, (0, 0, j, 0))[:, : t.shape[1]] for j in range(conv_kernel))
    q = conv(x @ L.w(E, eq)).view(L.B, L.S, n_heads, d)
    k = torch.cat([L.cache(hkv, d), conv(x @ L.w(E, ekv)).view(L.B, L.S, hkv, d)], 1)
    v = torch.cat([L.cache(hkv, d), (x @ L.w(E, ekv)).view(L.B, L.S, hkv, d)], 1)
    o = attend(q, k, v, mask_for(L.past, L.S, L.causal))
    return o.reshape(L.B, L.S, eq) @ L.w(eq, E)


def mfa(L: Layer, d_model, n_heads, latent, key_reuse=False, **_):
    E, C, h = d_model, latent, n_heads
    x = L.x(E)
    q = ((x @ L.w(E, C)) @ L.w(C, h * C)).view(L.B, L.S, h, C)
    k = torch.cat([L.cache(1, C), (x @ L.w(E, C)).view(L.B, L.S, 1, C)], 1)
    v = k if key_reuse else torch.cat([L.cache(1, C), (x @ L.w(E, C)).view(L.B, L.S, 1, C)], 1)
    o = attend(q, k, v, mask_for(L.past, L.S, L.causal))
    return o.reshape(L.B, L.S, h * C) @ L.w(h * C, E)


def cla_model(L: Layer, share, n_layers, n_heads, n_kv_heads, head_dim, **_):
    """n_layers GQA layers where only every share-th computes (and caches) K/V."""
    E = n_heads * head_dim
    x = L.x(E)
    for i in range(n_layers):
        if i % share == 0:
            k = torch.cat([L.cache(n_kv_heads, head_dim), (x @ L.w(E, n_kv_heads * head_dim)).view(L.B, L.S, n_kv_heads, head_dim)], 1)
            v = torch.cat([L.cache(n_kv_heads, head_dim), (x @ L.w(E, n_kv_heads * head_dim)).view(L.B, L.S, n_kv_heads, head_dim)], 1)
        q = (x @ L.w(E, n_heads * head_dim)).view(L.B, L.S, n_heads, head_dim)
        x = attend(q, k, v, mask_for(L.past, L.S, L.causal)).reshape(L.B, L.S, E) @ L.w(E, E)
    return x


def dsa(L: Layer, n_heads=128, kv_lora_rank=512, qk_rope_dim=64, qk_nope_dim=128, v_head_dim=128, q_lora_rank=1536,
        d_model=7168, index_n_heads=64, index_head_dim=128, index_topk=2048, **_):
    """Lightning indexer (relu(q_idx . k_idx) weighted per head, top-k of the visible tokens)
    feeding absorbed MLA over the chosen tokens only."""
    h, dc, dr, dn, dv, E = n_heads, kv_lora_rank, qk_rope_dim, qk_nope_dim, v_head_dim, d_model
    hi, di = index_n_heads, index_head_dim
    x = L.x(E)
    q_in = x @ L.w(E, q_lora_rank)
    q = (q_in @ L.w(q_lora_rank, h * (dn + dr))).view(L.B, L.S, h, dn + dr)
    latent_new = x @ L.w(E, dc + dr)
    q_lat = torch.einsum("bshn,hnc->bshc", q[..., :dn], L.w(h, dn, dc))
    kv = torch.cat([L.cache(dc + dr), latent_new], 1).unsqueeze(2)
    n = L.past + L.S
    chosen = []
    with torch.no_grad():  # top-k passes no gradient back to the indexer
        iq = (q_in @ L.w(q_lora_rank, hi * di)).view(L.B, L.S, hi, di)
        ik = torch.cat([L.cache(di), x @ L.w(E, di)], 1)
        iw = x @ L.w(E, hi)
        for i in range(L.S):
            vis = list(range(L.past + i + 1)) if L.causal else list(range(n))
            s = torch.einsum("bhd,bnd->bhn", iq[:, i], ik[:, vis])
            score = (s.relu() * iw[:, i].unsqueeze(-1)).sum(1)
            top = score[0].topk(min(index_topk, len(vis))).indices.tolist()
            chosen.append([vis[t] for t in top])
    o_lat = attend(torch.cat([q_lat, q[..., dn:]], -1), kv, kv[..., :dc], lambda i: chosen[i])
    o = torch.einsum("bshc,hcv->bshv", o_lat, L.w(h, dc, dv))
    return o.reshape(L.B, L.S, h * dv) @ L.w(h * dv, E)
