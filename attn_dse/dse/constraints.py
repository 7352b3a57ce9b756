"""Constraints and objectives over the columns of evaluated design points.

Constraint forms (YAML list items):
  memory: true          KV cache + weights fit the usable HBM of one device
  tpot_ms: 50           decode: time per output token (the step over its new tokens per sequence) within 50 ms
  ttft_s: 2             prefill (time to first token) within 2 s
  tokens_per_s_per_gpu: 1000   at least this many tokens/s per GPU (the replica's tokens over its GPUs)
  expr: "arithmetic_intensity > 10"   any numpy expression over the columns
Objectives: {minimize: FIELD} or {maximize: FIELD}, e.g. {maximize: tokens_per_s_per_gpu},
{minimize: tpot_s}, {minimize: ttft_s}.
"""
from __future__ import annotations

import ast

import numpy as np

from attn_dse.errors import AttnDseError, did_you_mean

NUMERIC_COLUMNS = ("batch", "seq", "context", "latency_s", "tokens_per_s", "time_per_token_s", "flops",
                   "executed_flops", "hbm_bytes", "min_hbm_bytes", "arithmetic_intensity", "kv_cache_bytes",
                   "kv_bytes_per_token", "weight_bytes", "memory_bytes", "max_batch", "n_split", "block_m",
                   "block_n", "achieved_flop_per_s", "achieved_bytes_per_s", "activation_bytes",
                   "tokens_per_s_per_gpu", "tpot_s", "ttft_s")
KINDS = ("memory", "tpot_ms", "ttft_s", "tokens_per_s_per_gpu", "expr")
_FUNCS = {"log": np.log, "log2": np.log2, "sqrt": np.sqrt, "abs": np.abs, "minimum": np.minimum,
          "maximum": np.maximum}


def known_columns(space) -> set[str]:
    params = {k for v in space.variants for k in v.params}
    return set(NUMERIC_COLUMNS) | params


def check_spec(space, where: str) -> None:
    """Each constraint one known `kind: value` with a value of its type; each objective a
    known column to minimize or maximize."""
    cols = known_columns(space)
    for i, c in enumerate(space.constraints):
        if not isinstance(c, dict) or len(c) != 1:
            raise AttnDseError(f"constraints: {c!r} is not one 'kind: value' pair", where=where,
                               fix="e.g. '- tpot_ms: 50' or '- expr: \"arithmetic_intensity > 10\"'")
        kind, value = next(iter(c.items()))
        if kind not in KINDS:
            raise AttnDseError(f"constraints: unknown constraint '{kind}'", where=where,
                               fix=did_you_mean(str(kind), KINDS))
        at = f"constraints[{i}].{kind}"
        if kind == "expr":
            _check_expr(str(value), cols, where)
        elif kind == "memory" and not isinstance(value, bool):
            raise AttnDseError(f"{at}: {value!r} is not true or false", where=where, fix="write 'memory: true'")
        elif kind in ("tpot_ms", "ttft_s", "tokens_per_s_per_gpu") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                 or not 0 < value < float("inf")):
            raise AttnDseError(f"{at}: {value!r} is not a positive number", where=where,
                               fix=f"write the limit as a number, e.g. '{kind}: {50 if kind == 'tpot_ms' else 2}'")
    for o in space.objectives:
        if not isinstance(o, dict) or len(o) != 1 or next(iter(o)) not in ("minimize", "maximize"):
            raise AttnDseError(f"objectives: {o!r} is not 'minimize: FIELD' or 'maximize: FIELD'", where=where,
                               fix="e.g. '- minimize: time_per_token_s'")
        name = next(iter(o.values()))
        if not isinstance(name, str) or name not in cols:
            raise AttnDseError(f"objectives: unknown field {name!r}", where=where, fix=did_you_mean(str(name), cols))


def _check_expr(text: str, cols: set[str], where: str) -> None:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise AttnDseError(f"constraints: expr '{text}' is not an expression", where=where,
                           fix="write e.g. \"arithmetic_intensity > 10\"") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in cols and node.id not in _FUNCS:
            raise AttnDseError(f"constraints: expr '{text}' refers to unknown field '{node.id}'", where=where,
                               fix=did_you_mean(node.id, cols))
        if isinstance(node, (ast.Attribute, ast.Lambda, ast.Subscript)):
            raise AttnDseError(f"constraints: expr '{text}' uses unsupported syntax", where=where,
                               fix="use field names, numbers, arithmetic, comparisons, and/or")


class _Elementwise(ast.NodeTransformer):
    """`a and b` / `a or b` / `not a` -> numpy's elementwise logical functions."""

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        fn = "logical_and" if isinstance(node.op, ast.And) else "logical_or"
        out = node.values[0]
        for v in node.values[1:]:
            out = ast.Call(ast.Name(fn, ast.Load()), [out, v], [])
        return out

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.Call(ast.Name("logical_not", ast.Load()), [node.operand], [])
        return node


_LOGIC = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_not": np.logical_not}


def _eval_expr(text: str, cols: dict) -> np.ndarray:
    tree = ast.fix_missing_locations(_Elementwise().visit(ast.parse(text, mode="eval")))
    code = compile(tree, "<constraint>", "eval")
    # the AST was checked by _check_expr: names are columns or listed numpy functions
    return np.asarray(eval(code, {"__builtins__": {}}, {**_FUNCS, **_LOGIC, **cols}), dtype=bool)  # noqa: S307


def apply_constraints(constraints, cols: dict) -> dict[str, np.ndarray]:
    """One boolean column per constraint (True = satisfied)."""
    phase = np.asarray(cols["phase"])
    out = {}
    for c in constraints:
        kind, value = next(iter(c.items()))
        if kind == "memory":
            ok = cols["fits"] if value else np.ones(len(phase), bool)
        elif kind == "tpot_ms":
            tpot = cols["tpot_s"] if "tpot_s" in cols else cols["latency_s"]
            ok = (phase != "decode") | (np.nan_to_num(tpot, nan=np.inf) * 1e3 <= float(value))
        elif kind == "ttft_s":
            ok = (phase != "prefill") | (cols["latency_s"] <= float(value))
        elif kind == "tokens_per_s_per_gpu":
            ok = cols["tokens_per_s_per_gpu"] >= float(value)
        else:
            ok = np.broadcast_to(_eval_expr(str(value), cols), phase.shape)
        out[f"ok_{kind}"] = np.asarray(ok, dtype=bool)
    return out


def objective_matrix(objectives, cols: dict) -> np.ndarray:
    """(n, m) costs to minimize: maximized fields are negated."""
    return np.stack([np.asarray(cols[f], dtype=np.float64) * (1 if k == "minimize" else -1)
                     for o in objectives for k, f in o.items()], axis=1)
