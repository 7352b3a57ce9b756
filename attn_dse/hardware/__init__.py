"""The accelerator: its spec (frozen dataclasses, SI units), the strict YAML loader and units."""
