"""Diagnostics runs for the sidebar settings: looked up in the store, computed on request (with progress).

A diagnostics run is the sidebar's run plus ``null=8, swap, predictors, split_half``
(its own store key); its vectors come from the vector store, so only the test
grid and the diagnostics are computed.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from steering.core.config import settings_of
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run, settings_key
from steering.run.diagnostics import stats as diag_stats
from steering.run.diagnostics.compute import load_frames
from steering.run.sweep import run_sweep
from ui import demo, state
from ui.compute import run

NULL_K = 8  # what the dashboard offers
MEMO = state.SessionMemo("diagnostics", 4)
PHASES = {"train": "Training activations", "test": "Encoding test prompts", "grid": "Evaluating the grid",
          "null": f"Null vectors ({NULL_K} random + {NULL_K} label-shuffled) on the cached prompt states",
          "swap": "A/B-swapped prompts (one pass of their own), then their grid",
          "split": "Split-half vectors", "predictors": "Per-example activation differences"}


def config(ctx: state.Context, layers: list[int], only_split: bool = False):
    cfg = ctx.config(layers)
    if only_split:  # the Layer sweep's per-layer stability: split-half only, every layer
        return dataclasses.replace(cfg, split_half=True)
    return dataclasses.replace(cfg, null=NULL_K, swap=ctx.metric != "answer_text", predictors=True, split_half=True)


def stored(ctx: state.Context, layers: list[int] | None = None, only_split: bool = False) -> SweepResult | None:
    cfg = config(ctx, layers if layers is not None else [ctx.layer], only_split)
    settings = settings_of(cfg, ctx.dataset, cfg.layers)
    key = settings_key(settings)
    hit = MEMO.get(key)
    if hit is not None:
        return hit
    path = find_run(state.results_dir(), settings)
    return MEMO.put(key, load_run(path, cached=True)) if path is not None else None


def compute(ctx: state.Context, layers: list[int] | None = None, only_split: bool = False) -> SweepResult:
    cfg = config(ctx, layers if layers is not None else [ctx.layer], only_split)
    demo.check_sweep(cfg)  # demo mode: layers, items and multipliers are bounded
    result = run(lambda progress: run_sweep(cfg, lm=ctx.lm, out=state.results_dir(), progress=progress,
                                            caches=state.cache_store(), dataset=ctx.dataset),
                 model=ctx.lm.name, labels=PHASES, start="Starting diagnostics…")
    return MEMO.put(result.manifest["key"], result)


def button(ctx: state.Context, key: str) -> bool:
    """The "compute diagnostics" button; True once computed (the caller reruns)."""
    label = f"Compute diagnostics for layer {ctx.layer}"
    if st.button(label, type="primary", key=key,
                 help=f"{NULL_K} random and {NULL_K} label-shuffled null vectors, the A/B swap, split-half "
                      "vectors and per-example predictors, on the sidebar settings"):
        compute(ctx)
        return True
    return False


def frames(result: SweepResult) -> dict[str, pd.DataFrame]:
    return MEMO.get_or_compute(("frames", result.manifest["key"]), lambda: load_frames(result.run_dir))


def layer_summary(result: SweepResult, layer: int) -> dict:
    return result.manifest.get("diagnostics", {}).get("layers", {}).get(str(layer), {})


def reading(summary: dict) -> str | None:
    """One line that explains the anti-steerable share from the swap, or None without a swap."""
    s = summary.get("swap")
    if not s:
        return None
    if s["frac_letter_driven"] >= 0.3:
        return (f"{s['frac_letter_driven']:.0%} of items flip the sign of their slope when the two options swap "
                f"letters: the vector mostly pushes a letter, not the behaviour. Averaged over both letter orders, "
                f"{s['letter_free_anti']:.0%} are anti-steerable (as given {s['frac_anti']:.0%}).")
    return (f"Only {s['frac_letter_driven']:.0%} of items are letter-driven: the slopes follow the content. "
            f"Letter-free, {s['letter_free_anti']:.0%} are anti-steerable (as given {s['frac_anti']:.0%}).")


def headline(ctx: state.Context) -> None:
    """Home: once diagnostics exist, the letter-free steerability and the letter-driven share."""
    result = stored(ctx)
    s = layer_summary(result, ctx.layer).get("swap") if result is not None else None
    if not s:
        st.caption("Diagnostics (null baselines, A/B swap, split-half, predictors) explain the anti-steerable "
                   "share: see the Diagnostics page.")
        return
    c = st.columns(4)
    c[0].metric("Letter-free steerability", f"{s['letter_free_mean']:.3g}",
                help="Mean of each item's slope as given and with its options swapped between the letters.")
    c[1].metric("Letter-free median", f"{s['letter_free_median']:.3g}")
    c[2].metric("Letter-driven items", f"{s['frac_letter_driven']:.0%}",
                help="Items whose slope flips sign when the two option texts exchange letters.")
    c[3].metric("Anti-steerable, letter-free", f"{s['letter_free_anti']:.0%}")
    st.markdown(reading(layer_summary(result, ctx.layer)))


def example_panel(ctx: state.Context, example_id: str) -> None:
    """Inspect: this example's null z, swapped slope, own-difference cosine and a one-line verdict."""
    result = stored(ctx)
    if result is None:
        st.caption("No diagnostics for these settings yet: they tell whether this item is letter-driven or no "
                   "better than a random direction.")
        if button(ctx, "inspect_diagnostics"):
            st.rerun()
        return
    s = result.steerability
    row = s[(s.layer == ctx.layer) & (s.example_id == example_id)]
    if row.empty:
        return
    r = row.iloc[0]
    get = lambda c: float(r[c]) if c in r.index and pd.notna(r[c]) else None  # noqa: E731
    fmt = lambda v, f: format(v, f) if v is not None else "n/a"  # noqa: E731
    c = st.columns(4)
    c[0].metric("Null z (random)", fmt(get("null_z_random"), "+.2f"), help="(slope - mean null slope) / their std")
    c[1].metric("Null z (label-shuffled)", fmt(get("null_z_shuffled"), "+.2f"))
    c[2].metric("Slope, options swapped", fmt(get("slope_swapped"), ".3g"))
    c[3].metric("Own-difference cosine", fmt(get("own_cos"), "+.2f"),
                help="Cosine of this item's own activation difference (positive - negative) with the vector.")
    v = diag_stats.verdict(float(r.slope), get("slope_swapped"), get("null_z_random"), get("null_z_shuffled"))
    st.markdown(f"**Verdict:** {v}")
