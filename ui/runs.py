"""Sweep results for the sidebar's settings: looked up in the store, computed on request, memoised.

Two scopes: ``"layer"`` (the sidebar layer only: the default Compute, fast) and
``"all"`` (every layer: the Layer sweep page). A stored all-layers run also
serves any single layer, so after a full sweep every layer is instant.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import streamlit as st

from steering.core.config import settings_of
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run, quarantine, settings_key
from steering.run.live import live_propensities
from steering.run.sweep import run_sweep
from ui import demo, state
from ui.compute import run

Scope = Literal["layer", "all"]
RESULTS = state.SessionMemo("results", 6)  # results kept per session (each holds a few tables and vectors)
LIVE = state.SessionMemo("live", 8)  # off-grid slider values: a few recent ones are enough, the slider moves on
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


def propensities_at(ctx: state.Context, result: SweepResult, layer: int, multiplier: float) -> tuple[np.ndarray, bool]:
    """Test-example propensities at ``multiplier``, in the steerability table's order; (values, computed live).

    Grid multipliers come from the stored table; others from the cached prompt states.
    """
    props = layer_rows(result, layer, "propensities")
    ids = layer_rows(result, layer).example_id.to_numpy()
    grid = np.asarray(result.config.multipliers, dtype=float)
    hit = np.flatnonzero(np.isclose(grid, multiplier, atol=1e-9))
    if len(hit):
        rows = props[np.isclose(props.multiplier, grid[hit[0]])]
        return rows.set_index("example_id").propensity.reindex(ids).to_numpy(), False
    def compute() -> np.ndarray:  # quick (cached prompt states): the busy flag without a bar
        values = run(lambda _: live_propensities(ctx.lm, result, layer, multiplier, state.cache_store()),
                     model=ctx.lm.name, bar=False)
        return pd.Series(values, index=result.test_pairs().example_id.to_numpy()).reindex(ids).to_numpy()

    return LIVE.get_or_compute(("live", result.manifest["key"], layer, round(float(multiplier), 6)), compute), True
