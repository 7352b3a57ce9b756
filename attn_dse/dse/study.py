"""The built-in study that `attn-dse sweep HW` runs with no space: every registered variant at
iso-model settings, in a 70B-class and a DeepSeek-V3-class model, prefill and decode, context
1k-128k, batch 1-256, under the device's memory capacity. Its analysis answers: which variant
wins where, by how much, what bounds it, how large a batch each supports, and which serves
the most tokens/s per GPU at each (context, time-per-output-token target)."""
from __future__ import annotations

import numpy as np

from attn_dse.dse.space import Space, VariantAxis
from attn_dse.workloads.study import ISO_MODELS, iso_variants

CONTEXTS = tuple(1024 * 2**i for i in range(8))  # 1k .. 128k
BATCHES = tuple(2**i for i in range(9))  # 1 .. 256
BASELINE = "gqa-8"

TPOT_TARGETS_MS = (20, 50, 100)


def _variants(tag: str) -> list[VariantAxis]:
    """Each variant inside the class's model (its MLP or experts, vocabulary and depth): the
    weights the memory check holds are counted from the same shapes the step reads."""
    shape = ISO_MODELS[tag]
    return [VariantAxis(f"{tag}/{label}", model=shape["model"],
                        params={k: [v] for k, v in {"variant": variant, **p, **shape.get("step", {})}.items()})
            for label, variant, p in iso_variants(tag)]


def builtin_space() -> Space:
    return Space(
        name="builtin-study",
        description="all variants at iso-model settings inside Llama-3-70B and DeepSeek-V3 (whole steps: "
                    "attention, MLP or experts, norms, embeddings, LM head), prefill and decode, context 1k-128k, "
                    "batch 1-256, fp8 weights, activations and KV cache, the layers split over one node's pipeline "
                    "stages (each GPU holds 1/8 of the weights and one batch's KV; its tokens/s is one step's)",
        variants=tuple(_variants("70b") + _variants("v3")),
        phase=("prefill", "decode"), batch=BATCHES, context=CONTEXTS, scope="model",
        dtype=("fp8",), devices="node", weight_dtype=None, weights_bytes=None,
        constraints=({"memory": True},), objectives=({"minimize": "time_per_token_s"}, {"minimize": "kv_bytes_per_token"}))


def analyze(cols: dict, hw) -> dict:
    """Winners per (class, phase, context, batch), speed-ups over GQA-8, bounds, capacity."""
    classes = sorted({lab.split("/")[0] for lab in cols["label"]})
    hw_label = hw.name
    out = {"hardware": hw_label, "winners": [], "capacity": [], "conclusions": [], "heatmaps": {}}
    short = np.array([lab.split("/", 1)[1] for lab in cols["label"]], dtype=object)
    cls = np.array([lab.split("/")[0] for lab in cols["label"]], dtype=object)
    for c in classes:
        for phase in ("prefill", "decode"):
            sel = (cls == c) & (cols["phase"] == phase)
            grid, ties = _winner_grid(cols, short, sel)
            out["heatmaps"][f"{c}/{phase}"] = grid
            out["winners"] += ties
            out["conclusions"].append(_conclude(c, phase, ties, hw_label))
        out["capacity"] += _capacity(cols, short, (cls == c) & (cols["phase"] == "decode"), c)
        out["conclusions"].append(bound_contrast(cols, hw, c))
    out["conclusions"].append(_capacity_sentence(out["capacity"], hw_label))
    out["serving"] = []
    for c in classes:
        out["serving"] += best_under_tpot(cols, short, cls == c, c)
        out["conclusions"].append(_serving_sentence(out["serving"], c, hw_label))
    return out


def best_under_tpot(cols: dict, short, sel, c: str, contexts=CONTEXTS, targets_ms=TPOT_TARGETS_MS) -> list[dict]:
    """Per (context, TPOT target): the decode point (variant and batch) that fits and meets the
    target with the most tokens/s per GPU, and GQA-8's best under the same target."""
    out = []
    dec = sel & (cols["phase"] == "decode") & cols["feasible"]
    for ctx in contexts:
        for target in targets_ms:
            m = dec & (cols["context"] == ctx) & (np.nan_to_num(cols["tpot_s"], nan=np.inf) * 1e3 <= target)
            row = {"class": c, "context": int(ctx), "tpot_target_ms": target, "winner": None, "batch": None,
                   "tokens_per_s_per_gpu": 0.0, "tpot_s": np.nan, "gqa8_tokens_per_s_per_gpu": 0.0}
            if np.any(m):
                i = np.flatnonzero(m)[np.argmax(cols["tokens_per_s_per_gpu"][m])]
                row.update(winner=short[i], batch=int(cols["batch"][i]),
                           tokens_per_s_per_gpu=float(cols["tokens_per_s_per_gpu"][i]), tpot_s=float(cols["tpot_s"][i]))
                base = m & (short == BASELINE)
                if np.any(base):
                    row["gqa8_tokens_per_s_per_gpu"] = float(np.max(cols["tokens_per_s_per_gpu"][base]))
            out.append(row)
    return out


def _serving_sentence(rows: list, c: str, hw: str) -> str:
    rows = [r for r in rows if r["class"] == c and r["winner"]]
    if not rows:
        return f"{c} serving on {hw}: no decode point fits and meets a TPOT target."
    parts = []
    for target in TPOT_TARGETS_MS:
        mine = [r for r in rows if r["tpot_target_ms"] == target and r["context"] in (8192, 32768, 131072)]
        if mine:
            parts.append(f"TPOT <= {target} ms: " + ", ".join(
                f"{r['context'] // 1024}k {r['winner']} {r['tokens_per_s_per_gpu']:,.0f} tok/s/GPU"
                f" (GQA-8 {r['gqa8_tokens_per_s_per_gpu']:,.0f})" for r in mine))
    return f"{c} serving on {hw}, the most tokens/s per GPU: " + "; ".join(parts) + "."


def _winner_grid(cols, short, sel):
    """For each (context, batch): the fastest feasible variant and its lead."""
    rows, grid = [], {"contexts": list(CONTEXTS), "batches": list(BATCHES), "winner": [], "speedup_vs_gqa8": []}
    for ctx in CONTEXTS:
        wrow, srow = [], []
        for b in BATCHES:
            m = sel & (cols["context"] == ctx) & (cols["batch"] == b)
            feas = m & cols["feasible"]
            base = m & (short == BASELINE)
            if not np.any(feas):
                wrow.append(None)
                srow.append(np.nan)
                continue
            i = np.flatnonzero(feas)[np.argmin(cols["time_per_token_s"][feas])]
            order = np.sort(cols["time_per_token_s"][feas])
            base_t = cols["time_per_token_s"][base][0] if np.any(base) else np.nan
            base_ok = bool(np.any(base & cols["feasible"]))
            rows.append({"class": None, "phase": cols["phase"][i], "context": int(ctx), "batch": int(b),
                         "winner": short[i], "time_per_token_s": float(cols["time_per_token_s"][i]),
                         "runner_up_ratio": float(order[1] / order[0]) if len(order) > 1 else np.nan,
                         "speedup_vs_gqa8": float(base_t / cols["time_per_token_s"][i]) if base_ok else np.nan,
                         "gqa8_fits": base_ok, "bound": cols["bound"][i], "limiter": cols["limiter"][i],
                         "arithmetic_intensity": float(cols["arithmetic_intensity"][i]),
                         "label": cols["label"][i]})
            wrow.append(short[i])
            srow.append(rows[-1]["speedup_vs_gqa8"])
        grid["winner"].append(wrow)
        grid["speedup_vs_gqa8"].append(srow)
    for r in rows:
        r["class"] = r.pop("label").split("/")[0]
    return grid, rows


def _conclude(c: str, phase: str, rows: list, hw: str) -> str:
    rows = [r for r in rows if r["class"] == c and r["phase"] == phase]
    if not rows:
        return f"{c} {phase}: no configuration fits in memory on {hw}."
    names, counts = np.unique([r["winner"] for r in rows], return_counts=True)
    top = names[np.argmax(counts)]
    mine = [r for r in rows if r["winner"] == top]
    sp = np.array([r["speedup_vs_gqa8"] for r in mine], dtype=float)
    lead = np.array([r["runner_up_ratio"] for r in mine], dtype=float)
    bounds, bc = np.unique([r["bound"] for r in mine], return_counts=True)
    vs = (f"{np.nanmin(sp):.2g}x-{np.nanmax(sp):.2g}x faster per token than GQA-8 where GQA-8 fits"
          if np.isfinite(sp).any() else "GQA-8 does not fit at any of these points")
    others = ", ".join(f"{n} ({k})" for n, k in sorted(zip(names, counts), key=lambda t: -t[1]) if n != top)
    return (f"{c} {phase} on {hw}: {top} is fastest at {len(mine)} of {len(rows)} feasible (context, batch) points "
            f"({vs}; median lead over the runner-up {_median(lead)}), mostly {bounds[np.argmax(bc)]}-bound"
            + (f". Elsewhere: {others}." if others else "."))


def bound_contrast(cols: dict, hw, c: str, context: int = 32768, batch: int = 4) -> str:
    """GQA-8 vs MLA decode at one point: time, bound and intensity against the ridge point."""
    from attn_dse.hardware.units import format_si
    parts = []
    for v in ("gqa-8", "mla"):
        m = (cols["label"] == f"{c}/{v}") & (cols["phase"] == "decode") & (cols["context"] == context) & \
            (cols["batch"] == batch)
        if np.any(m):
            i = np.flatnonzero(m)[0]
            fits = "" if cols["feasible"][i] else ", does not fit"
            parts.append(f"{v} {format_si(cols['time_per_token_s'][i], 's', 3)}/token, {cols['bound'][i]}-bound "
                         f"(AI {cols['arithmetic_intensity'][i]:.3g}{fits})")
    return (f"{c} decode at {context // 1024}k context, batch {batch} on {hw.name} "
            f"(ridge {hw.ridge_point():.3g} FLOP/B): " + "; ".join(parts) + ".")


def _capacity(cols, short, sel, c):
    out = []
    for ctx in (32768, 131072):
        m = sel & (cols["context"] == ctx) & (cols["batch"] == 1)
        for i in np.flatnonzero(m):
            out.append({"class": c, "variant": short[i], "context": ctx, "max_batch": int(cols["max_batch"][i]),
                        "kv_bytes_per_token": float(cols["kv_bytes_per_token"][i])})
    return out


def _capacity_sentence(cap: list, hw: str) -> str:
    parts = []
    for c in sorted({r["class"] for r in cap}):
        rows = [r for r in cap if r["class"] == c and r["context"] == 131072]
        g = next((r["max_batch"] for r in rows if r["variant"] == BASELINE), 0)
        best = max(rows, key=lambda r: r["max_batch"]) if rows else None
        mla = next((r["max_batch"] for r in rows if r["variant"] == "mla"), 0)
        if best:
            parts.append(f"{c}: GQA-8 holds {g} sequences of 128k per device, MLA {mla}, "
                         f"{best['variant']} the most ({best['max_batch']})")
    return f"Capacity on {hw} (fp8 weights over one node's pipeline, fp8 KV): " + "; ".join(parts) + "."


def _median(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    return f"{np.median(x):.2g}x" if len(x) else "n/a"


SERVING_BATCHES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def serving_curves(hw: str, labels=("gqa-8", "mla", "moba-4x256"), contexts=(8192, 32768), tag: str = "70b",
                   batches=SERVING_BATCHES, tp: int | None = 8) -> list[dict]:
    """Tokens/s per GPU against time per output token, one point per decode batch that fits, for
    some of the study's variants inside its `tag` model, fp8. Deployment: tensor parallel over
    `tp` GPUs (attention heads, MLP and vocabulary sharded; GQA's KV heads split, MLA's latent
    held whole by every GPU), or with tp=None the study's one-node pipeline.
    Rows: label, context, batch, tpot_s, tokens_per_s_per_gpu, max_batch."""
    import dataclasses

    from attn_dse.dse.evaluate import evaluate
    space = builtin_space()
    chosen = [v for v in space.variants if v.label in {f"{tag}/{x}" for x in labels}]
    if tp:
        chosen = [dataclasses.replace(v, params={**v.params, "tp": [tp]}) for v in chosen]
    space = dataclasses.replace(space, name="serving-curves", variants=tuple(chosen), phase=("decode",),
                                batch=tuple(batches), context=tuple(contexts), devices=None if tp else space.devices)
    cols = evaluate(space, (hw,)).columns
    out = []
    for i in np.flatnonzero(cols["feasible"]):
        out.append({"hardware": hw, "label": cols["label"][i].split("/", 1)[1], "context": int(cols["context"][i]),
                    "batch": int(cols["batch"][i]), "tpot_s": float(cols["tpot_s"][i]),
                    "tokens_per_s_per_gpu": float(cols["tokens_per_s_per_gpu"][i]),
                    "max_batch": int(cols["max_batch"][i])})
    return sorted(out, key=lambda r: (r["label"], r["context"], r["batch"]))
