"""Validation: Triton kernels, microbenchmarks, measured CSVs, calibration and error reports.

Needs the `gpu` extra (torch, triton) for kernels and measurement; comparing stored
measurements with predictions needs only the core. Run everything on a GPU with
`python -m attn_dse.validate --measure --out DIR`.
"""
