"""A study's numbers from its per-example table: dataset rows (steerability, anti-steerable fraction,
spurious shares) and the rank correlations between variants and between models.

Dataset-level steerability is the median per-example slope (DESIGN.md). Everything here is a pure
function of ``examples.parquet``, so the stored ``datasets.parquet`` can be checked by recomputing it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from steering.core import metrics

CELL = ["model", "dataset", "train_variant", "test_variant", "layer"]
EXAMPLE_COLUMNS = CELL + ["example_id", "slope", "anti_steerable", "baseline", "pos_is_A", "pos_is_yes"]
ID_PAIR = ("BASE", "BASE")


def _factor(values: pd.Series) -> np.ndarray:
    """0/1 floats, NaN where the factor does not apply (A/B items have no Yes/No)."""
    return pd.to_numeric(values.astype("Float64"), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def spurious_shares(slopes, pos_is_A, pos_is_yes) -> tuple[float, float, float]:
    """(share_ab, share_yes, share_unexplained) of the slopes' variance, as the paper does it:
    R² on pos_is_A; the R² that pos_is_yes adds on top; the rest. A factor that does not vary adds 0."""
    y = np.asarray(slopes, dtype=float)
    a, yes = np.asarray(pos_is_A, dtype=float), np.asarray(pos_is_yes, dtype=float)
    r2_a = metrics.r_squared(y, [a]) or 0.0
    r2_both = metrics.r_squared(y, [a, yes]) or 0.0
    r2_both = max(r2_both, r2_a)  # nested least squares: adding a column never lowers R² (guards round-off)
    return r2_a, r2_both - r2_a, 1.0 - r2_both


def dataset_rows(examples: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A row per model x dataset x variant pair x layer from the per-example rows."""
    rows = []
    for key, g in examples.groupby(CELL, sort=False):
        s = g.slope.to_numpy(dtype=float)
        a, yes = _factor(g.pos_is_A), _factor(g.pos_is_yes)
        f = metrics.dataset_figures(s, seed=seed)
        ab, y, rest = spurious_shares(s, a, yes)
        rows.append({**dict(zip(CELL, key)), "n": f.n, "mean_slope": f.mean_slope, "median_slope": f.median_slope,
                     "frac_anti": f.frac_anti, "frac_anti_lo": f.frac_anti_lo, "frac_anti_hi": f.frac_anti_hi,
                     "var_slope": f.var_slope, "share_ab": ab, "share_yes": y, "share_unexplained": rest,
                     "mean_baseline": float(g.baseline.mean())})
    return pd.DataFrame(rows)


def spearman(x, y) -> float:
    """Spearman's rho (average ranks for ties; nan with fewer than three points or a constant side)."""
    return metrics.spearman_rho(x, y)


def pair_name(train: str, test: str) -> str:
    return f"{train}->{test}"


def id_vs_ood(datasets: pd.DataFrame) -> pd.DataFrame:
    """Per model and OOD pair (BASE -> another variant): Spearman of dataset medians, ID against OOD."""
    rows = []
    for model, g in datasets.groupby("model", sort=False):
        ident = g[(g.train_variant == ID_PAIR[0]) & (g.test_variant == ID_PAIR[1])].set_index("dataset").median_slope
        if ident.empty:
            continue
        ood = g[(g.train_variant == ID_PAIR[0]) & (g.test_variant != ID_PAIR[1])]
        for test, h in ood.groupby("test_variant", sort=False):
            both = pd.concat([ident, h.set_index("dataset").median_slope], axis=1, join="inner").dropna()
            rows.append({"model": model, "pair": pair_name(ID_PAIR[0], test), "n_datasets": len(both),
                         "rho": spearman(both.iloc[:, 0], both.iloc[:, 1])})
    return pd.DataFrame(rows, columns=["model", "pair", "n_datasets", "rho"])


def cross_model(datasets: pd.DataFrame) -> pd.DataFrame:
    """Per pair of models and variant pair: Spearman of their dataset medians."""
    rows = []
    models = list(dict.fromkeys(datasets.model))
    for a, b in itertools.combinations(models, 2):
        for (train, test), g in datasets.groupby(["train_variant", "test_variant"], sort=False):
            wide = g.pivot_table(index="dataset", columns="model", values="median_slope")
            if a not in wide or b not in wide:
                continue
            both = wide[[a, b]].dropna()
            rows.append({"model_a": a, "model_b": b, "pair": pair_name(train, test), "n_datasets": len(both),
                         "rho": spearman(both[a], both[b])})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "pair", "n_datasets", "rho"])
