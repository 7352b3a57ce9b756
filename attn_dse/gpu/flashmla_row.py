"""FlashMLA's 656-byte fp8 cache row of one token: the 512 latent values as e4m3 (512 B), one
fp32 scale per 128 of them (4 x 4 B), then the 64 RoPE key values in bf16 (128 B), against 1152
B for the bf16 latent (variants.md 2.2, FlashMLA README). Rows sit one after another in one
uint8 allocation [B, L, 656]; both fp8 MLA kernels (mla_decode_fp8.py in Triton,
mla_decode_fp8_wgmma.py in Gluon) read it.
"""
from __future__ import annotations

import torch

from attn_dse.gpu.decode_fp8 import E4M3_MAX

N_GROUPS = 4  # scales per latent row (FlashMLA: one per 128 of the 512 values); the kernel unrolls them
SCALE_BYTES = 4
D_LATENT, D_ROPE = 512, 64


def row_bytes(d_latent: int = D_LATENT, d_rope: int = D_ROPE) -> int:
    """Bytes of one token's cache row: e4m3 latent, fp32 group scales, bf16 RoPE key."""
    return d_latent + N_GROUPS * SCALE_BYTES + 2 * d_rope


def unpack(packed: torch.Tensor, d_latent: int = D_LATENT, d_rope: int = D_ROPE):
    """Views into the packed cache [B, L, row_bytes]: (e4m3 latent [B, L, d_latent],
    fp32 scales [B, L, 4], bf16 RoPE key [B, L, d_rope]), all with the row's stride."""
    if packed.dtype != torch.uint8 or packed.shape[-1] != row_bytes(d_latent, d_rope):
        raise ValueError(f"packed cache must be uint8 [..., {row_bytes(d_latent, d_rope)}] for latent {d_latent} "
                         f"+ rope {d_rope}, not {packed.dtype} {list(packed.shape)}")
    s0, r0 = d_latent, d_latent + N_GROUPS * SCALE_BYTES
    return (packed[..., :s0].view(torch.float8_e4m3fn), packed[..., s0:r0].view(torch.float32),
            packed[..., r0:].view(torch.bfloat16))


def quantize_latent(c_kv: torch.Tensor, k_rope: torch.Tensor) -> torch.Tensor:
    """c_kv [B, L, d_latent], k_rope [B, L, d_rope] -> packed uint8 [B, L, row_bytes]: each
    group of d_latent/4 values scaled by its amax / 448 into e4m3, the RoPE key kept in bf16."""
    B, L, D = c_kv.shape
    R = k_rope.shape[-1]
    if D % (4 * N_GROUPS) or R % 8:
        raise ValueError(f"latent {D} must divide into {N_GROUPS} groups of a multiple of 4 values, rope {R} by 8"
                         " (16-byte aligned parts of each row)")
    cg = c_kv.float().view(B, L, N_GROUPS, D // N_GROUPS)
    scale = (cg.abs().amax(-1) / E4M3_MAX).clamp_min(1e-12)
    packed = torch.empty(B, L, row_bytes(D, R), dtype=torch.uint8, device=c_kv.device)
    lat, sc, rope = unpack(packed, D, R)
    lat.copy_((cg / scale[..., None]).clamp(-E4M3_MAX, E4M3_MAX).view(B, L, D).to(torch.float8_e4m3fn))
    sc.copy_(scale)
    rope.copy_(k_rope.to(torch.bfloat16))
    return packed


def dequantize(packed: torch.Tensor, d_latent: int = D_LATENT, d_rope: int = D_ROPE) -> torch.Tensor:
    """The float32 latent + RoPE cache [B, L, d_latent + d_rope] the packed one stands for."""
    lat, sc, rope = unpack(packed, d_latent, d_rope)
    return torch.cat([lat.float() * sc.repeat_interleave(d_latent // N_GROUPS, -1), rope.float()], -1)
