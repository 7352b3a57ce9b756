"""Every attention variant, one module each; importing this package registers them all."""
from attn_dse.workloads.variants import (  # noqa: F401
    block_sparse, cca, cla, dsa, gqa, linear, mfa, mla, neighborhood, nsa, sqa, swa, tpla)
