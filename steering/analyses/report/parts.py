"""The stored analyses a report card reads, found in the store without a model, and completed on request.

The card's run is the sweep at one layer with the dashboard's diagnostics (8 random and 8 label-shuffled
null vectors, the A/B swap, split-half vectors, predictors): the Diagnostics page stores the same run.
Without it, the plain run of the same settings still gives the slopes. The out-of-distribution runs are
ordinary sweeps with another test variant (a study's cells, when a study ran these settings); side effects
and the prompting baseline are stored beside the run (or beside the plain run, whose numbers are the same).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from steering.analyses.report import prompting
from steering.analyses.side_effects import compute as side_effects
from steering.core.config import SweepConfig, settings_of
from steering.core.datasets import Dataset
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run
from steering.engine.models import LoadedModel
from steering.run.sweep import run_sweep

PhaseProgress = Callable[[str, int, int], None]
StepProgress = Callable[[int, int, str], None]  # (step index, number of steps, step label)
DIAG_NULL_K = 8  # as the dashboard's Diagnostics page (ui.diagnostics.NULL_K): the same stored run
OOD_VARIANTS = ("SYS_POS", "SYS_NEG", "USER_POS", "USER_NEG")
LABELS = {"diagnostics": "diagnostics (null baselines, A/B swap, split-half)",
          "ood": "out-of-distribution runs", "side_effects": "side effects (KL, perplexity, capability)",
          "prompting": "prompting baseline"}


def card_config(base: SweepConfig, layer: int) -> SweepConfig:
    """The card's run: ``base`` at one layer with every diagnostic (swap only where letters are shown)."""
    return replace(base, layers=[layer], null=DIAG_NULL_K, swap=base.metric != "answer_text", predictors=True,
                   split_half=True)


def plain_config(cfg: SweepConfig) -> SweepConfig:
    return replace(cfg, null=0, swap=False, predictors=False, split_half=False)


def ood_config(cfg: SweepConfig, variant: str) -> SweepConfig:
    return replace(plain_config(cfg), test_variant=variant)


def ood_variants(cfg: SweepConfig) -> list[str]:
    return [v for v in OOD_VARIANTS if v != cfg.test_variant]


def has_zero(cfg: SweepConfig) -> bool:
    return 0 in [float(m) for m in cfg.multipliers]


def find_result(out: str | Path, cfg: SweepConfig, ds: Dataset) -> SweepResult | None:
    path = find_run(out, settings_of(cfg, ds, cfg.layers))
    return load_run(path, cached=True) if path is not None else None


@dataclass
class Parts:
    cfg: SweepConfig  # the card's run settings (one layer, diagnostics on)
    dataset: Dataset
    run: SweepResult | None = None  # the diagnostics run, else the plain run (slopes only), else None
    ood: dict[str, SweepResult | None] = field(default_factory=dict)
    side: pd.DataFrame | None = None
    side_info: dict | None = None  # the run manifest's side_effects section
    prompting: pd.DataFrame | None = None
    prompting_info: dict | None = None
    origin: dict[str, str] = field(default_factory=dict)  # part -> "store" | "computed"
    seconds: dict[str, float] = field(default_factory=dict)  # compute time of each part computed now

    @property
    def layer(self) -> int:
        return self.cfg.layers[0]

    @property
    def has_diagnostics(self) -> bool:
        return self.run is not None and "diagnostics" in self.run.manifest

    def missing(self) -> list[str]:
        """The parts still to compute, in the order ``complete`` computes them."""
        out = []
        if not self.has_diagnostics:
            out.append("diagnostics")
        if any(r is None for r in self.ood.values()):
            out.append("ood")
        if has_zero(self.cfg):  # side effects and the baseline measure shifts against multiplier 0
            if self.side is None:
                out.append("side_effects")
            if self.prompting is None:
                out.append("prompting")
        return out


def find(base: SweepConfig, ds: Dataset, layer: int, out: str | Path) -> Parts:
    """Everything the store already holds for a card of ``base`` at ``layer`` (no model needed)."""
    cfg = card_config(base, layer)
    diag = find_result(out, cfg, ds)
    plain = find_result(out, plain_config(cfg), ds)
    parts = Parts(cfg, ds, run=diag or plain)
    hosts = [r for r in (diag, plain) if r is not None]
    if parts.run is not None:
        parts.origin["run"] = "store"
    if diag is not None:
        parts.origin["diagnostics"] = "store"
    parts.ood = {v: find_result(out, ood_config(cfg, v), ds) for v in ood_variants(cfg)}
    if parts.ood and all(parts.ood.values()):
        parts.origin["ood"] = "store"
    for r in hosts:
        df = side_effects.load(r)
        if df is not None:
            parts.side, parts.side_info = df, r.manifest["side_effects"]
            parts.origin["side_effects"] = "store"
            break
    for r in hosts:
        hit = prompting.stored(r)
        if hit is not None:
            parts.prompting, parts.prompting_info = hit
            parts.origin["prompting"] = "store"
            break
    return parts


def steps(parts: Parts) -> list[tuple[str, str]]:
    """(part, label) of every computation ``complete`` will run, one per OOD variant."""
    out = []
    for part in parts.missing():
        if part == "ood":
            out += [("ood", f"out-of-distribution run {v}") for v, r in parts.ood.items() if r is None]
        else:
            out.append((part, LABELS[part]))
    return out


def complete(parts: Parts, lm: LoadedModel, out: str | Path, se: side_effects.SideEffectsConfig | None = None,
             data_dir: str | None = None, progress: PhaseProgress | None = None, step: StepProgress | None = None,
             caches=None) -> Parts:
    """Compute every missing part (each stored as it finishes, so an interrupted call resumes)."""
    plan = steps(parts)
    ds, cfg = parts.dataset, parts.cfg
    ood_left = [v for v, r in parts.ood.items() if r is None]
    for i, (part, label) in enumerate(plan):
        if step is not None:
            step(i, len(plan), label)
        inner = (lambda phase, d, t, label=label: progress(f"{label}: {phase}", d, t)) if progress else None
        started = time.time()
        if part == "diagnostics":
            parts.run = run_sweep(cfg, lm=lm, out=out, progress=inner, caches=caches, dataset=ds)
        elif part == "ood":
            v = ood_left.pop(0)
            parts.ood[v] = run_sweep(ood_config(cfg, v), lm=lm, out=out, progress=inner, caches=caches, dataset=ds)
            part = f"ood {v}"
        elif part == "side_effects":
            parts.side, _, _ = side_effects.ensure(lm, parts.run, ds, se or side_effects.SideEffectsConfig(), out,
                                                   data_dir, inner)
            parts.side_info = parts.run.manifest["side_effects"]
        elif part == "prompting":
            parts.prompting, parts.prompting_info, _ = prompting.ensure(lm, parts.run, ds, out, inner)
        parts.origin[part] = "computed"
        parts.seconds[part] = round(time.time() - started, 2)
    if step is not None:
        step(len(plan), len(plan), "done")
    return parts
