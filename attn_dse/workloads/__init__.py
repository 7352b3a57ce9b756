"""Attention variants as op graphs with exact FLOPs, bytes and KV cache."""
