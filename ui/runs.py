"""Sweep results for the sidebar's settings: looked up in the store, computed on request, memoised.

Two scopes: ``"layer"`` (the sidebar layer only: the default Compute, fast) and
``"all"`` (every layer: the Layer sweep page). A stored all-layers run also
serves any single layer, so after a full sweep every layer is instant.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import pandas as pd
import streamlit as st

from steering.core.config import settings_of
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run, quarantine, settings_key
from steering.run.live import interpolate, slider_grid
from steering.run.sweep import run_sweep
from ui import demo, resources, state
from ui.compute import run

Scope = Literal["layer", "all"]
RESULTS = state.SessionMemo("results", 6)  # results kept per session (each holds a few tables and vectors)
SLIDER = (-3.0, 3.0, 0.1)  # the Steerability page's multiplier slider: low, high, step
# Slider values are a function of the stored run alone, so every session shares them:
# (run key, layer) -> {multiplier: propensities in the steerability table's order}, the last few runs kept.
SLIDER_VALUES: OrderedDict[tuple[str, int], dict[float, np.ndarray]] = OrderedDict()
SLIDER_RUNS = 8
_slider_lock = threading.Lock()
_pending: dict[tuple[str, int, float], Future] = {}
# One worker: the neighbours of the slider's value are computed after the page has drawn, one batch at a time,
# outside the script run (a page switch or the next step does not wait for them).
_prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slider")
PREFETCH_DELAY_S = 0.4  # a prefetch lets the browser draw the figure first: on two cores torch would take both
PHASES = {
    "train": "Training vectors (one pass per training prompt)",
    "test": "Encoding test prompts (cached for the slider)",
    "grid": "Evaluating the layer × multiplier grid",
}


def _layers(ctx: state.Context, scope: Scope, layer: int | None = None) -> list[int]:
    if scope == "all":
        return list(range(ctx.lm.n_layers))
    return [ctx.layer if layer is None else layer]


def _key(ctx: state.Context, scope: Scope, layer: int | None = None) -> tuple[str, dict]:
    cfg = ctx.config(_layers(ctx, scope, layer))
    settings = settings_of(cfg, ctx.dataset, cfg.layers)
    return settings_key(settings), settings


def stored(ctx: state.Context, scope: Scope, layer: int | None = None) -> SweepResult | None:
    """The result for the current settings if this session or the store already has it (never computes)."""
    key, settings = _key(ctx, scope, layer)
    hit = RESULTS.get(key)
    if hit is not None:
        return hit
    path = find_run(state.results_dir(), settings, on_damage=st.warning)  # damaged: quarantined, said once
    if path is not None:
        try:
            return RESULTS.put(key, load_run(path, cached=True))
        except Exception as e:  # noqa: BLE001 - damage the cheap checks missed: quarantine, compute again
            quarantine(state.results_dir(), path, f"cannot load: {type(e).__name__}")
            st.warning(f"stored run {path.name} could not be read; moved to quarantine/, compute it again")
    return None


def with_layer(ctx: state.Context, layer: int) -> SweepResult | None:
    """A result holding ``layer``: its single-layer run, else an all-layers run."""
    return stored(ctx, "layer", layer) or stored(ctx, "all")


def current(ctx: state.Context) -> SweepResult | None:
    """A result holding the sidebar layer."""
    return with_layer(ctx, ctx.layer)


def compute(ctx: state.Context, scope: Scope, layer: int | None = None) -> SweepResult:
    """Run (or fetch) the sweep with a progress bar for its phases."""
    cfg = ctx.config(_layers(ctx, scope, layer))
    demo.check_sweep(cfg)  # demo mode: layers, items and multipliers are bounded
    result = run(lambda progress: run_sweep(cfg, lm=ctx.lm, out=state.results_dir(), progress=progress,
                                            caches=state.cache_store(), dataset=ctx.dataset),
                 model=ctx.lm.name, labels=PHASES)
    key, _ = _key(ctx, scope, layer)
    return RESULTS.put(key, result)


def layer_rows(result: SweepResult, layer: int, table: str = "steerability") -> pd.DataFrame:
    df = result.steerability if table == "steerability" else result.propensities
    return df[df.layer == layer]


def neighbours(multiplier: float, notches: int = 1) -> list[float]:
    """The slider steps within ``notches`` of ``multiplier`` (itself excluded), inside the slider's range."""
    lo, hi, step = SLIDER
    near = (round(multiplier + k * step, 2) for k in range(-notches, notches + 1) if k)
    return [m for m in near if lo - 1e-9 <= m <= hi + 1e-9]


def _stored(result: SweepResult, layer: int, ids: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """The stored grid's multipliers and propensities [example, multiplier], in the steerability table's order."""
    props = layer_rows(result, layer, "propensities")
    table = props.pivot_table(index="example_id", columns="multiplier", values="propensity").reindex(ids)
    return table.columns.to_numpy(dtype=float), table


def _computed(result: SweepResult, layer: int) -> dict[float, np.ndarray]:
    """Slider values computed so far for (run, layer): multiplier -> propensities in the table's order."""
    key = (result.manifest["key"], layer)
    with _slider_lock:
        known = SLIDER_VALUES.setdefault(key, {})
        SLIDER_VALUES.move_to_end(key)
        while len(SLIDER_VALUES) > SLIDER_RUNS:
            SLIDER_VALUES.popitem(last=False)
        return known


def propensities_at(ctx: state.Context, result: SweepResult, layer: int, multiplier: float) -> tuple[np.ndarray, str]:
    """Test-example propensities at ``multiplier``, in the steerability table's order, at once; and where they
    come from: "stored" (the sweep grid), "computed" (by ``refine`` or ``prefetch``), or "interpolated" (from the
    stored grid, until this value has been computed)."""
    ids = layer_rows(result, layer).example_id.to_numpy()
    grid, table = _stored(result, layer, ids)
    hit = np.flatnonzero(np.isclose(grid, multiplier, atol=1e-9))
    if len(hit):
        return table.iloc[:, hit[0]].to_numpy(), "stored"
    known = _computed(result, layer).get(round(float(multiplier), 6))
    if known is not None:
        return known, "computed"
    return interpolate(grid, table.to_numpy(), multiplier), "interpolated"


def _submit(ctx: state.Context, result: SweepResult, layer: int, multipliers: list[float],
            delay: float = 0.0) -> list[Future]:
    """Futures of the values at ``multipliers`` not stored or computed yet: those already under way, and one
    new batch for the rest (the steered passes batch several multipliers)."""
    known = _computed(result, layer)
    grid = np.asarray(result.config.multipliers, dtype=float)
    run_key = result.manifest["key"]
    wanted = [round(float(m), 6) for m in multipliers]
    todo = [m for m in wanted if m not in known and not np.isclose(grid, m, atol=1e-9).any()]
    with _slider_lock:
        futures = {_pending[(run_key, layer, m)] for m in todo if (run_key, layer, m) in _pending}
        new = [m for m in todo if (run_key, layer, m) not in _pending]
        if new:
            ids = layer_rows(result, layer).example_id.to_numpy()
            order = pd.Index(result.test_pairs().example_id.to_numpy()).get_indexer(ids)  # stored -> table order
            lm, caches = ctx.lm, state.cache_store()

            def work() -> None:
                try:
                    time.sleep(delay)
                    with resources.busy(lm.name):  # no session may unload the model meanwhile
                        values = slider_grid(lm, result, layer, new, caches)
                    for k, m in enumerate(new):
                        known[m] = values[order, k]
                finally:
                    with _slider_lock:
                        for m in new:
                            _pending.pop((run_key, layer, m), None)

            fut = _prefetcher.submit(work)
            for m in new:
                _pending[(run_key, layer, m)] = fut
            futures.add(fut)
    return list(futures)


def refine(ctx: state.Context, result: SweepResult, layer: int, multipliers: list[float]) -> bool:
    """Compute the values at ``multipliers`` not stored or computed yet, and wait for them (one batch on the
    cached prompt states, or the batch already under way); False when there was nothing to compute."""
    futures = _submit(ctx, result, layer, multipliers)
    for fut in futures:
        fut.result()  # a failure is the page's to show
    return bool(futures)


def prefetch(ctx: state.Context, result: SweepResult, layer: int, multipliers: list[float]) -> list[Future]:
    """Start computing the values at ``multipliers`` in the background (the slider's next steps)."""
    return _submit(ctx, result, layer, multipliers, PREFETCH_DELAY_S)
