"""GPU kernels (Triton, Gluon), their float32 references, checks and the timing harness.

Needs the `gpu` extra (torch, triton). Only the CLI imports this package; run everything on a
GPU with `python -m attn_dse.gpu.measure --out DIR`.
"""
