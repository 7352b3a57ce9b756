"""Attention variants as op graphs with exact FLOPs, bytes and KV cache.

Importing the package registers every variant (`workloads/variants/`) and attaches
`attention.from_model` (model presets): the registry itself imports neither.
"""
from attn_dse.workloads import variants  # noqa: F401  (registers every variant)
from attn_dse.workloads.models import from_model
from attn_dse.workloads.registry import attention

attention.from_model = from_model  # type: ignore[attr-defined]
