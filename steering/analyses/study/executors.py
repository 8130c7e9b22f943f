"""Where a study's cells run. A study is a list of *groups*, each a list of SweepConfig sharing
(model, dataset, train variant, split, aggregator, seed): one training serves the whole group.

``run_groups`` is the one entry point; ``executor="local"`` runs in this process (one model load per
model, reused across groups), ``executor="ray"`` hands the groups to ``ray_executor`` (optional).
Progress phases read "cell 3/65 · corrigible-neutral-HHH BASE->SYS_POS · grid" with done/total.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Callable

from steering.core.config import SweepConfig, settings_of
from steering.core.datasets import Dataset
from steering.core.progress import plain_measure
from steering.core.results import SweepResult, load_run
from steering.core.store import find_run
from steering.engine.models import LoadedModel, load_model
from steering.errors import SweepError
from steering.run.sweep import run_sweep

Progress = Callable[[str, int, int], None]
EXECUTORS = ("local", "ray")
_CELL = re.compile(r"cell (\d+)/(\d+)")
# Where each phase of a cell lies within it, so the study's fraction only grows (train, then test, then grid).
_PHASE_SPAN = {"train": (0.0, 0.4), "test": (0.4, 0.2), "grid": (0.6, 0.4), "stored": (0.0, 1.0)}


def available_executors() -> list[str]:
    """'local', and 'ray' when Ray is importable."""
    return ["local"] + (["ray"] if importlib.util.find_spec("ray") is not None else [])


def study_fraction(phase: str, done: int, total: int) -> float | None:
    """Fraction of the whole study a progress report stands for (cells before it, plus this cell's share)."""
    m = _CELL.search(phase)
    if not m:
        return None
    k, n = int(m.group(1)), int(m.group(2))
    step = phase.rsplit("· ", 1)[-1]
    start, width = _PHASE_SPAN.get(step, (0.0, 1.0))
    return min(1.0, (k - 1 + start + width * done / max(total, 1)) / max(n, 1))


def study_measure(phase: str, done: int, total: int) -> tuple[str, float, bool]:
    """For ``core.progress``: a study's cells are one stage on the study's scale; stored cells are cached."""
    frac = study_fraction(phase, done, total)
    if frac is None:  # e.g. choosing the best layer, before the cells
        return plain_measure(phase, done, total)
    return "study", frac, phase.endswith("stored")


def get_model(name: str, pool: dict[str, LoadedModel]) -> LoadedModel:
    """The model from ``pool``, loading it once (``tiny-random`` is the test model)."""
    if name not in pool:
        if name == "tiny-random":
            from steering.engine.tiny import tiny_random_model

            pool[name] = tiny_random_model()
        else:
            pool[name] = load_model(name)
    return pool[name]


def cell_label(k: int, total: int, cfg: SweepConfig, ds: Dataset) -> str:
    return f"cell {k}/{total} · {ds.name} {cfg.train_variant}->{cfg.test_variant}"


def run_groups(groups: list[list[SweepConfig]], out: str | Path, datasets: dict[str, Dataset],
               progress: Progress | None = None, executor: str = "local",
               **executor_options) -> list[list[SweepResult]]:
    """Run every cell (skipping those already stored); results in the groups' shape."""
    if executor == "local":
        return run_groups_local(groups, out, datasets, progress, **executor_options)
    if executor == "ray":
        if importlib.util.find_spec("steering.analyses.study.ray_executor") is None:
            raise SweepError("the ray executor is not installed")
        from steering.analyses.study.ray_executor import run_groups_ray

        return run_groups_ray(groups, out, datasets, progress, **executor_options)
    raise SweepError(f"unknown executor '{executor}': choose one of {', '.join(EXECUTORS)}")


def run_groups_local(groups: list[list[SweepConfig]], out: str | Path, datasets: dict[str, Dataset],
                     progress: Progress | None = None, models: dict[str, LoadedModel] | None = None,
                     caches=None) -> list[list[SweepResult]]:
    """In this process, group after group; the vector store makes a group's later cells skip training."""
    pool = models if models is not None else {}
    total = sum(len(g) for g in groups)
    k = 0
    results: list[list[SweepResult]] = []
    for group in groups:
        done: list[SweepResult] = []
        for cfg in group:
            k += 1
            ds = datasets[cfg.dataset]
            label = cell_label(k, total, cfg, ds)
            stored = find_run(out, settings_of(cfg, ds, cfg.layers))
            if stored is not None:  # finished before (this study, another one, or a plain sweep)
                done.append(load_run(stored, cached=True))
                if progress:
                    progress(f"{label} · stored", 1, 1)
                continue
            step = (lambda phase, d, t, label=label: progress(f"{label} · {phase}", d, t)) if progress else None
            done.append(run_sweep(cfg, lm=get_model(cfg.model, pool), out=out, progress=step, caches=caches,
                                  dataset=ds))
        results.append(done)
    return results
