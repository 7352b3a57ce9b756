"""Predictions against measurements: compare, fit the calibration knobs, report errors."""
