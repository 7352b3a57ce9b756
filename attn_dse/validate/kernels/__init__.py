"""Triton kernels for each variant family, each with its launcher and a PyTorch reference."""
