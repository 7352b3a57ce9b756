"""Figures: rooflines, Pareto fronts, heatmaps, predicted-vs-measured. matplotlib is imported
lazily (headless Agg backend); each function returns the data it plotted, for checking."""
