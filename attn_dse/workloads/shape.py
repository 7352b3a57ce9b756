"""The workload point: phase, batch, query tokens, cached tokens, masking, dtype."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attn_dse.errors import AttnDseError

PHASES = ("prefill", "decode", "train")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
SCOPES = ("core", "layer", "model")


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
    dtype: str

    @property
    def bytes_per_element(self) -> int:
        return DTYPE_BYTES[self.dtype]

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


def make_shape(phase: str = "decode", batch=1, seq=None, context=None, causal: bool = True,
               dtype: str = "bf16") -> Shape:
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
    batch, seq, past = (np.asarray(x, dtype=np.float64) for x in (batch, seq, past))
    for name, value, low in (("batch", batch, 1), ("seq", seq, 1), ("context", past, 0)):
        if np.any(value < low) or np.any(value != np.floor(value)):
            raise AttnDseError(f"{name} must be a whole number >= {low}", fix=f"got {value.min():g}")
    return Shape(phase, batch, seq, past, bool(causal), dtype)
