"""attn-dse: how does attention variant X perform on accelerator Y for workload Z?"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_hardware", "attention", "predict", "AttnDseError", "__version__"]


def __getattr__(name: str):
    # Lazy, so `attn-dse --help` and `import attn_dse` stay fast.
    if name == "load_hardware":
        from attn_dse.hardware.loader import load_hardware
        return load_hardware
    if name == "attention":
        from attn_dse.workloads.registry import attention
        return attention
    if name == "predict":
        from attn_dse.cost.predict import predict
        return predict
    if name == "AttnDseError":
        from attn_dse.errors import AttnDseError
        return AttnDseError
    raise AttributeError(name)
