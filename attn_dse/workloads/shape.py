"""The workload point: phase, batch, query tokens, cached tokens, masking, dtype."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attn_dse.errors import AttnDseError

PHASES = ("prefill", "decode", "train")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
SCOPES = ("core", "layer", "model")
# KV-cache storage formats: bits per element. Names, or a bit width (`6` -> int6). Formats
# narrower than 16 bits carry one fp32 scale per KV_SCALE_BLOCK elements (per-block scaling,
# as KIVI-style and FP8 KV caches store them) and are dequantized before the matmuls.
KV_DTYPE_BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}
KV_SCALE_BLOCK = 128  # elements per scale: one head vector of 128
KV_SCALE_BYTES = 4  # fp32 scale
# Dequantizing one element on the vector units, in FP32-FLOP equivalents: a type conversion
# issues at 16 results/clk/SM against 128 FP32 FMAs (256 FLOP) on sm_80/sm_90 (CUDA C++
# Programming Guide, arithmetic instruction throughput table), and the packed forms
# (cvt ...x2, PTX ISA) convert two elements per instruction: 8 per element, plus 1 for the
# scale multiply. FlashMLA's FP8 decode deep dive (2025-09-29) names this CUDA-core
# dequantization, not the tensor cores, as what bounds its FP8 kernel.
DEQUANT_VECTOR_FLOPS = 9.0


def kv_format(kv_dtype, dtype: str = "bf16") -> str:
    """The canonical KV format name: None -> the compute dtype; a bit width n -> 'int{n}'
    (16 -> bf16); names as given."""
    if kv_dtype is None:
        return dtype
    if isinstance(kv_dtype, (int, float)) or (isinstance(kv_dtype, str) and kv_dtype.strip().isdigit()):
        bits = float(kv_dtype)
        if bits != int(bits) or not 1 <= bits <= 32:
            raise AttnDseError(f"--kv-dtype {kv_dtype}: a bit width must be a whole number 1-32",
                               fix="e.g. --kv-dtype 6, or fp8, int8, int4, bf16")
        bits = int(bits)
        return {16: "bf16", 32: "fp32", 8: "int8", 4: "int4"}.get(bits, f"int{bits}")
    name = str(kv_dtype).strip().lower()
    if name in KV_DTYPE_BITS or (name.startswith("int") and name[3:].isdigit() and 1 <= int(name[3:]) <= 32):
        return name
    raise AttnDseError(f"unknown KV dtype '{kv_dtype}'",
                       fix="use one of: " + ", ".join(KV_DTYPE_BITS) + ", or a bit width such as 6")


def kv_bits(kv_dtype: str) -> int:
    if kv_dtype in KV_DTYPE_BITS:
        return KV_DTYPE_BITS[kv_dtype]
    return 8 * DTYPE_BYTES[kv_dtype] if kv_dtype in DTYPE_BYTES else int(kv_dtype[3:])


def kv_bytes_per_element(kv_dtype: str) -> float:
    """Stored bytes per cached element, per-block scales included for sub-16-bit formats."""
    bits = kv_bits(kv_dtype)
    scale = KV_SCALE_BYTES / KV_SCALE_BLOCK if bits < 16 else 0.0
    return bits / 8 + scale


@dataclass(frozen=True)
class Shape:
    """Queries attend `past` cached tokens plus the `seq` new ones (causally when `causal`).

    prefill/train: past = 0 (context = seq). decode: past = context, seq new tokens (1, or
    1 + draft tokens for speculative decoding). Numeric fields may be numpy arrays.
    """

    phase: str
    batch: np.ndarray
    seq: np.ndarray
    past: np.ndarray
    causal: bool
    dtype: str  # compute: activations, weights, matmuls
    kv_dtype: str = ""  # KV-cache storage ("" = the compute dtype)

    @property
    def bytes_per_element(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def kv_format(self) -> str:
        return self.kv_dtype or self.dtype

    @property
    def kv_bytes_per_element(self) -> float:
        """Bytes per cached K/V element in HBM (scales included)."""
        if not self.kv_dtype or self.kv_dtype == self.dtype:
            return float(DTYPE_BYTES[self.dtype])
        return kv_bytes_per_element(self.kv_dtype)

    @property
    def kv_quantized(self) -> bool:
        """The cache is stored narrower than 16 bits: kernels dequantize it before the matmuls."""
        return kv_bits(self.kv_format) < 16

    @property
    def attention_dtype(self) -> str:
        """The dtype the attention kernel's matmuls run at. A decode step's query is a fresh
        activation and decode kernels with a narrow cache dequantize it to 16 bits in
        registers and run 16-bit MMAs (FlashMLA FP8 decode, vLLM/FlashInfer FP8 KV); prefill
        kernels run the compute dtype (FlashAttention-3 FP8 quantizes Q, K and V together)."""
        if self.phase == "decode" and DTYPE_BYTES[self.dtype] < 2:
            return "bf16"
        return self.dtype

    @property
    def tokens(self):
        """Query tokens in the batch."""
        return self.batch * self.seq

    @property
    def context(self):
        """Tokens of KV cache held per sequence: the prompt in prefill, the cache in decode."""
        return self.past if self.phase == "decode" else self.seq

    @property
    def kv_len(self):
        """Keys the last query sees: past + seq."""
        return self.past + self.seq


def _whole(value: np.ndarray, low: float) -> bool:
    """Every element a whole number >= low (NaN is not)."""
    if value.ndim == 0:
        v = float(value)
        return v >= low and v == math.floor(v) if math.isfinite(v) else v == math.inf
    return bool(np.all((value >= low) & (value == np.floor(value))))


def make_shape(phase: str = "decode", batch=1, seq=None, context=None, causal: bool = True,
               dtype: str = "bf16", kv_dtype=None) -> Shape:
    if phase not in PHASES:
        raise AttnDseError(f"unknown phase '{phase}'", fix="use one of: " + ", ".join(PHASES))
    if dtype not in DTYPE_BYTES:
        raise AttnDseError(f"unknown dtype '{dtype}'", fix="use one of: " + ", ".join(DTYPE_BYTES))
    if phase == "decode":
        seq = 1 if seq is None else seq
        if context is None:
            raise AttnDseError("decode needs --context (tokens already in the KV cache)",
                               fix="e.g. --context 8192")
        past = context
    else:
        if seq is None:
            seq = context
        if seq is None:
            raise AttnDseError(f"{phase} needs --seq (prompt length)", fix="e.g. --seq 4096")
        if context is not None and np.any(np.asarray(context) != np.asarray(seq)):
            raise AttnDseError(f"{phase}: context must equal seq (the prompt attends to itself)",
                               fix="drop --context, or use --phase decode for cached tokens")
        past = 0
    # one point: numpy scalars (the arithmetic downstream runs at scalar speed), else arrays
    batch, seq, past = (np.asarray(x, dtype=np.float64) for x in (batch, seq, past))
    batch, seq, past = (x[()] if x.ndim == 0 else x for x in (batch, seq, past))
    for name, value, low in (("batch", batch, 1), ("seq", seq, 1), ("context", past, 0)):
        if not _whole(value, low):
            raise AttnDseError(f"{name} must be a whole number >= {low}", fix=f"got {value.min():g}")
    kv = kv_format(kv_dtype, dtype)
    return Shape(phase, batch, seq, past, bool(causal), dtype, "" if kv == dtype else kv)
