"""Calibration knobs: the time model's named parameters per (hardware, implementation, family),
stored in their own YAML files (`calibration/knobs/HW/IMPLEMENTATION.yaml`), never in a preset."""
