"""Options shared by commands that take a workload: --variant/--param or --model."""
from __future__ import annotations

import os
import re

import click
import yaml

from attn_dse.errors import AttnDseError


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_params(items: tuple[str, ...]) -> dict:
    """--param k=v (repeatable); values parsed as YAML scalars (8, 0.5, absorbed, true)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AttnDseError(f"--param {item!r} is not KEY=VALUE", fix="write e.g. --param n_kv_heads=8")
        if not value.strip():
            raise AttnDseError(f"--param {item!r}: {key} has no value", fix=f"write e.g. --param {key}=32")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value  # not YAML: the variant's schema judges the text
        if isinstance(parsed, str) and _EXPONENT.fullmatch(parsed.strip()):
            parsed = float(parsed)  # YAML 1.1 reads 1e308 (no dot) as text
        if isinstance(parsed, (list, dict)):
            raise AttnDseError(f"--param {item!r}: predict takes one value per parameter",
                               fix=f"write e.g. --param {key}=8; sweep several values with a space file (spaces/)")
        out[key] = parsed
    return out


def make_out_dir(path: str, option: str = "--out") -> None:
    """Create an output directory before any work starts, or say why it cannot be."""
    from pathlib import Path
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AttnDseError(f"{option} {path}: cannot create the directory ({exc.strerror or exc})",
                           fix="give a directory you can write, e.g. --out results/") from None
    if not os.access(path, os.W_OK):
        raise AttnDseError(f"{option} {path}: the directory is not writable", fix="give a directory you can write")


FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def figure_path(path: str, option: str = "-o") -> None:
    """A figure file name the plots can write: a known suffix, in a directory that exists or can be made."""
    from pathlib import Path
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise AttnDseError(f"{option} {path}: unsupported figure format",
                           fix="end the name with " + ", ".join(FIGURE_SUFFIXES) + ", e.g. -o roofline.png")
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AttnDseError(f"{option} {path}: cannot create the directory {parent} ({exc.strerror or exc})",
                           fix=f"write the figure where you can, e.g. {option} roofline.png") from None


def parse_counts(text: str, option: str) -> tuple[int, ...]:
    """A comma list of positive token counts; a k suffix means x1024 (1k,8k,128k)."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        scale, digits = (1024, item[:-1]) if item[-1:] in ("k", "K") else (1, item)
        try:
            value = float(digits) * scale
        except ValueError:
            value = None
        if value is None or not 0 < value < 2**53 or value != int(value):
            raise AttnDseError(f"{option}: {item!r} is not a positive whole number of tokens",
                               fix=f"write e.g. {option} 1024,8192 or {option} 1k,8k,128k (k = 1024)")
        out.append(int(value))
    if not out:
        raise AttnDseError(f"{option}: {text!r} lists no values", fix=f"write e.g. {option} 1024,8192,65536")
    return tuple(out)


def parse_names(text: str, option: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of names from `known`."""
    from attn_dse.errors import did_you_mean
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise AttnDseError(f"{option}: {text!r} lists no values", fix=f"write e.g. {option} {','.join(known[:2])}")
    for name in names:
        if name not in known:
            raise AttnDseError(f"{option}: {name!r} is unknown", fix=did_you_mean(name, known))
    return names


def build_workload(variant: str | None, params: tuple[str, ...], model: str | None):
    from attn_dse.workloads.registry import attention
    if model and variant:
        raise AttnDseError("give --variant or --model, not both", fix="--model uses the preset's variant")
    if model:
        return attention.from_model(model, **parse_params(params))
    if not variant:
        raise AttnDseError("no workload given", fix="pass --variant gqa --param n_heads=32 ... or --model llama-3-70b")
    return attention(variant, **parse_params(params))


def workload_options(f):
    f = click.option("--model", help="A model preset (attn-dse models lists them), e.g. llama-3-70b.")(f)
    f = click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Variant parameter, repeatable: --param n_heads=32 --param n_kv_heads=8.")(f)
    f = click.option("--variant", help="Attention variant (attn-dse variants lists them), e.g. gqa.")(f)
    return f
