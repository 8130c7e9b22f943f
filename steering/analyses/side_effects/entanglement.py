"""Entanglement: does concept X's vector move concept Y? The cross-concept matrix on one model and layer.

shift[X, Y] = mean over Y's test items of propensity(multiplier m, X's vector) - propensity(0).
The matrix normalises each column by Y's own shift: M[X, Y] = shift[X, Y] / shift[Y, Y], so the
diagonal is 1 and an off-diagonal 1 means X's vector moves Y as much as Y's own vector does.

Works from a list of concepts (each trained with the sweep machinery; its run is stored and
reused) or from a stored study (``from_study``: its concepts, layer and settings, so the vectors its
cells trained are read from the store, not trained again).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from steering.core.config import SweepConfig, check_multipliers
from steering.core.damage import Damaged, read_or_quarantine, require_columns
from steering.core.datasets import Dataset, load_dataset
from steering.core.files import atomic_write, atomic_write_text
from steering.core.store import settings_key
from steering.engine.models import LoadedModel
from steering.errors import SweepError

PhaseProgress = Callable[[str, int, int], None]


def shift_matrix(lm: LoadedModel, vectors: Sequence, runs: Sequence[tuple[SweepConfig, Dataset]], layer: int,
                 multiplier: float, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """shift[x, y]: mean propensity change of run y's test items under vector x at ``multiplier``.

    Each ``runs[y]`` is (its settings, its dataset); its test split is encoded once, as that run shows it
    (variant, the metric's form), and scored by the sweep's own evaluation for every vector. On the fast
    path the split's prompt states are built once and serve every vector.
    """
    from steering.engine.cache_store import CacheStore
    from steering.run.sweep import encode_test_split, evaluate_given_vectors

    out = np.zeros((len(vectors), len(runs)))
    for y, (cfg, ds) in enumerate(runs):
        cfg = replace(cfg, layers=[layer], multipliers=[0.0, multiplier])
        split, caches = encode_test_split(lm, cfg, ds), CacheStore()  # one concept's prompt states at a time
        for x, v in enumerate(vectors):
            p = evaluate_given_vectors(lm, cfg, ds, {layer: v}, [layer], caches=caches, cache_key="test",
                                       split=split).props
            out[x, y] = float((p[:, 0, 1] - p[:, 0, 0]).mean())
        if progress:
            progress(y + 1, len(runs))
    return out


def normalise(shift: np.ndarray) -> np.ndarray:
    """Each column divided by its diagonal entry (the concept's own vector's shift)."""
    diag = np.diag(shift).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return shift / diag[None, :]


def frame(names: Sequence[str], shift: np.ndarray) -> pd.DataFrame:
    """Long table: steered_with (X), measured_on (Y), shift, normalised."""
    norm = normalise(shift)
    rows = [{"steered_with": x, "measured_on": y, "shift": shift[i, j], "normalised": norm[i, j]}
            for i, x in enumerate(names) for j, y in enumerate(names)]
    return pd.DataFrame(rows)


def entanglement(lm: LoadedModel, datasets: Sequence[str], layer: int, base: SweepConfig, out: str | Path,
                 multiplier: float = 1.0, progress: PhaseProgress | None = None) -> pd.DataFrame:
    """Train (or reuse) each concept's vector at ``layer`` and measure every concept under every vector.

    Stored under ``<out>/entanglement/<key>.parquet`` and served from there when the settings recur.
    """
    from steering.run.sweep import run_sweep

    if len(datasets) < 2:
        raise SweepError("entanglement needs at least two concepts, e.g. --datasets A,B")
    if multiplier == 0:
        raise SweepError("the entanglement multiplier must not be 0")
    check_multipliers([0.0, float(multiplier)])  # nan or inf would store an all-NaN matrix
    lm.check_layer(layer)
    loaded = [load_dataset(d, base.data_dir) for d in datasets]
    key = settings_key({"model": lm.name, "layer": layer, "multiplier": multiplier,
                        "datasets": [d.sha256 for d in loaded], "n_train": base.n_train, "n_test": base.n_test,
                        "seed": base.seed, "aggregator": base.aggregator, "variant": base.test_variant,
                        "train_variant": base.train_variant, "metric": base.metric, "position": base.position,
                        "rescale": base.rescale, "balance_train": base.balance_train, "system": base.system})
    path = Path(out) / "entanglement" / f"{key}.parquet"
    names = [d.name for d in loaded]
    stored = read_or_quarantine(out, path, lambda p: _read_table(p, names), "entanglement table")
    if stored is not None:
        return stored
    vectors, runs = [], []
    for i, ds in enumerate(loaded):
        if progress:
            progress("train", i, len(loaded))
        cfg = replace(base, dataset=ds.name, layers=[layer])
        result = run_sweep(cfg, lm=lm, out=out, dataset=ds)
        vectors.append(result.vectors[layer].to(lm.device, lm.dtype))
        runs.append((cfg, ds))
    if progress:
        progress("train", len(loaded), len(loaded))
        progress("cross", 0, len(runs))
    step = (lambda done, total: progress("cross", done, total)) if progress else None
    shift = shift_matrix(lm, vectors, runs, layer, multiplier, step)
    df = frame([d.name for d in loaded], shift).assign(layer=layer, multiplier=multiplier, model=lm.name)
    # content-addressed by key: identical concurrent computations write identical files, each atomically
    atomic_write(path, lambda p: df.to_parquet(p, index=False))
    atomic_write_text(path.with_suffix(".json"), json.dumps({"datasets": names, "key": key}))
    return df


def _read_table(path: Path, names: list[str]) -> pd.DataFrame:
    """A stored matrix, checked: its columns, and every (X, Y) pair of these concepts once (``Damaged`` if not)."""
    df = pd.read_parquet(path)
    require_columns(df, ("steered_with", "measured_on", "shift", "normalised", "layer", "multiplier", "model"),
                    path.name, len(names) ** 2, numeric=("shift", "normalised", "layer", "multiplier"))
    if set(zip(df.steered_with, df.measured_on)) != {(x, y) for x in names for y in names}:
        raise Damaged(f"{path.name} does not hold the matrix of these concepts")
    return df


def from_study(study, model: str | None = None, pair: tuple[str, str] | None = None
               ) -> tuple[list[str], int, SweepConfig]:
    """A stored study's concepts, layer and settings for one of its models and variant pairs (default: the
    first of each): the arguments ``entanglement`` needs to reuse the study's runs."""
    spec = study.spec
    model = model or spec.models[0]
    if model not in spec.models:
        raise SweepError(f"model '{model}' is not in study '{spec.name}' (it has {', '.join(spec.models)})")
    pair = tuple(pair) if pair else tuple(spec.variants[0])
    if pair not in [tuple(p) for p in spec.variants]:
        have = ", ".join(":".join(p) for p in spec.variants)
        raise SweepError(f"variant pair {':'.join(pair)} is not in study '{spec.name}' (it has {have})")
    if len(study.meta.get("dataset_paths", {})) < 2:
        raise SweepError(f"study '{spec.name}' has fewer than two concepts: entanglement needs at least two")
    layer = study.layer(model)
    data_dir = study.meta.get("data_dir_abs") or spec.data_dir
    # A stored path when it is still there (files given by path), else the name, found in the data directory.
    datasets = [path if path and Path(path).is_file() else name
                for name, path in study.meta["dataset_paths"].items()]
    base = replace(spec.config(model, "", pair, layer), data_dir=data_dir)
    return datasets, layer, base


def weak_columns(df: pd.DataFrame, fraction: float = 0.1) -> list[str]:
    """Concepts whose own vector barely moves them (|own shift| below ``fraction`` of the median |own shift|):
    their column's ratios divide by almost nothing and are not to be read."""
    own = df[df.steered_with == df.measured_on].set_index("measured_on")["shift"].abs()
    return [c for c, v in own.items() if not v >= fraction * own.median()]


def matrix(df: pd.DataFrame, column: str = "normalised") -> pd.DataFrame:
    """The X-by-Y matrix (rows: steered with, columns: measured on) in the concepts' order."""
    order = list(dict.fromkeys(df.steered_with))
    return df.pivot(index="steered_with", columns="measured_on", values=column).reindex(index=order, columns=order)
