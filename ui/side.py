"""Streamlit glue for the Side effects page: a run's side effects and entanglement, computed through
``ui.compute`` (progress bar, busy flag) and memoised."""

from __future__ import annotations

import pandas as pd

from steering.analyses.side_effects import compute as side_effects
from steering.analyses.side_effects import entanglement as ent
from steering.core.results import SweepResult
from ui import demo, state
from ui.compute import run

SIDE = state.SessionMemo("side_effects", 4)
ENT = state.SessionMemo("entanglement", 4)
PHASES = {"text": "Neutral text: KL and perplexity per layer", "mc": "Capability set", "val": "Validation items",
          "train": "Training each concept's vector", "cross": "Measuring every concept under every vector"}


def stored(result: SweepResult) -> pd.DataFrame | None:
    """The run's stored side-effect table (never computes)."""
    key = (result.manifest["key"], result.manifest.get("side_effects", {}).get("key"))
    hit = SIDE.get(key)
    if hit is not None:
        return hit
    df = side_effects.load(result)
    return SIDE.put(key, df) if df is not None else None


def compute(ctx: state.Context, result: SweepResult, se: side_effects.SideEffectsConfig) -> pd.DataFrame:
    demo.check_sweep(result.config, len(result.layers))  # demo mode: bounded like the run itself
    try:
        df, _, _ = run(lambda progress: side_effects.ensure(ctx.lm, result, ctx.dataset, se, state.results_dir(),
                                                            state.get("data_dir") or None, progress),
                       model=ctx.lm.name, labels=PHASES)
    except Exception as e:  # demo mode: the capability set's parse error is not quoted back
        quiet = demo.quiet(e)
        if quiet is e:
            raise
        raise quiet from None
    return SIDE.put((result.manifest["key"], result.manifest["side_effects"]["key"]), df)


def entanglement(ctx: state.Context, paths: list[str], multiplier: float, compute: bool) -> pd.DataFrame | None:
    """The matrix for these concepts at the sidebar layer: memoised, from the store, or computed on request."""
    if compute:  # demo mode: offered concepts only, and not too many
        demo.check_dataset_keys(paths, state.get("data_dir"))
        demo.check_sweep(ctx.config([ctx.layer]))
    return _matrix(ctx.lm.name, lambda: ctx.lm, paths, ctx.layer, ctx.config([ctx.layer]), multiplier, compute,
                   ctx.settings)


def study_entanglement(study, model: str, pair: tuple[str, str], multiplier: float,
                       compute: bool) -> pd.DataFrame | None:
    """The matrix over a stored study's concepts at its layer for ``model``; its runs' vectors are reused."""
    paths, layer, base = ent.from_study(study, model, pair)
    if compute:
        demo.check_concepts(len(paths))
    context = ("study", study.meta["key"], model, pair)
    return _matrix(model, lambda: state.model(model), paths, layer, base, multiplier, compute, context)


def _matrix(name, lm, paths, layer, base, multiplier, compute, context) -> pd.DataFrame | None:
    key = (context, tuple(paths), layer, multiplier)
    hit = ENT.get(key)
    if hit is not None or not compute:
        return hit
    # the model is loaded inside: the busy flag is held from before the load to the end
    df = run(lambda progress: ent.entanglement(lm(), paths, layer, base, state.results_dir(), multiplier, progress),
             model=name, labels=PHASES)
    return ENT.put(key, df)
