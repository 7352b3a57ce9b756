"""Design-space exploration: spaces, vectorized evaluation, constraints, Pareto fronts."""
