"""The ``best`` layer rule: the layer with the largest mean steerability on a validation part of the
training split. The test split is never encoded or evaluated here (tests poison it to check).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from steering.core import metrics
from steering.core.config import SweepConfig
from steering.core.datasets import Dataset
from steering.engine.models import LoadedModel
from steering.run.sweep import encode_all, evaluate_grid, split_of, train_vectors


def candidate_layers(n_layers: int, count: int = 8) -> list[int]:
    """Every layer of a small model; else ``count`` evenly spaced layers between 15% and 85% depth."""
    if n_layers <= count:
        return list(range(n_layers))
    return sorted({int(round(x)) for x in np.linspace(0.15 * n_layers, 0.85 * (n_layers - 1), count)})


def fit_validation_split(train_ex: Sequence, seed: int) -> tuple[list, list]:
    """Halves of the training items (seeded): vectors are trained on the first, layers scored on the second."""
    order = np.random.default_rng(seed).permutation(len(train_ex))
    half = max(1, len(train_ex) // 2)
    return [train_ex[i] for i in order[:half]], [train_ex[i] for i in order[half:]]


def validation_slopes(lm: LoadedModel, ds: Dataset, cfg: SweepConfig, layers: Sequence[int]) -> np.ndarray:
    """Mean validation slope per candidate layer for one dataset, from its training split only."""
    train_ex = split_of(cfg, ds).train  # the runs' own training items; test items unused
    fit_ex, val_ex = fit_validation_split(train_ex, cfg.seed)
    if not val_ex:
        val_ex = fit_ex  # a one-item training split: nothing to hold out
    fit_pairs = encode_all(lm, fit_ex, cfg, ds.name, "train")
    # Scored as the run scores its test split (the metric's form), on the training variant: in distribution.
    val_pairs = encode_all(lm, val_ex, replace(cfg, test_variant=cfg.train_variant), ds.name, "test")
    vectors = train_vectors(lm, fit_pairs, cfg)
    props = evaluate_grid(lm, val_pairs, vectors, list(layers), cfg)  # [example, layer, multiplier]
    mults = np.asarray(cfg.multipliers, dtype=float)
    return np.array([metrics.ols_fit(mults, props[:, j, :])[0].mean() for j in range(len(layers))])


def choose_best_layer(lm: LoadedModel, datasets: Sequence[Dataset], configs: Sequence[SweepConfig],
                      candidates: Sequence[int] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> tuple[int, pd.DataFrame]:
    """One layer for the model: the candidate with the largest validation mean slope, averaged over datasets.

    ``configs[i]`` holds the split and vector settings for ``datasets[i]`` (its train variant is used
    for both fitting and validation: an in-distribution choice). Returns (layer, table of the scores).
    """
    layers = list(candidates) if candidates is not None else candidate_layers(lm.n_layers)
    rows = []
    for i, (ds, cfg) in enumerate(zip(datasets, configs)):
        for layer, value in zip(layers, validation_slopes(lm, ds, cfg, layers)):
            rows.append({"dataset": ds.name, "layer": layer, "val_mean_slope": float(value)})
        if progress:
            progress(i + 1, len(datasets))
    table = pd.DataFrame(rows)
    mean = table.groupby("layer").val_mean_slope.mean()
    return int(mean.idxmax()), table
