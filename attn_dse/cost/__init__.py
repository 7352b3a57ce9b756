"""Everything that turns a workload and a machine into seconds: roofline, kernel families, predict.

Importing the package registers every kernel family (`cost/families/`)."""
from attn_dse.cost import families  # noqa: F401  (registers every family)
