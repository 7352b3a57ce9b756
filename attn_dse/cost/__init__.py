"""Everything that turns a workload and a machine into seconds: roofline, kernel families, predict."""
