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


def _varies(factor: np.ndarray) -> bool:
    """A factor can explain variance: known for every item and not the same for all."""
    return bool(len(factor)) and bool(np.isfinite(factor).all()) and factor.std() > 0


def _why_constant(factor: np.ndarray, name: str, same: str) -> str:
    if not np.isfinite(factor).any():
        return f"no item has a {name} answer"
    if not np.isfinite(factor).all():
        return f"not every item has a {name} answer"
    return same


def spurious_shares(slopes, pos_is_A, pos_is_yes) -> tuple[float, float, float, str]:
    """(share_ab, share_yes, share_unexplained, why) of the slopes' variance, as the paper does it:
    R² on pos_is_A; the R² that pos_is_yes adds on top; the rest.

    Undefined is not zero (DESIGN.md): a share whose factor does not vary (or is missing for some items) is
    NaN, and all three are NaN when the slopes do not vary or there are fewer than three items (the rest is
    undefined too when no factor varies). ``why`` says which are undefined and why ("" when all are defined).
    """
    y = np.asarray(slopes, dtype=float)
    a, yes = np.asarray(pos_is_A, dtype=float), np.asarray(pos_is_yes, dtype=float)
    nan = float("nan")
    if len(y) < 3:
        return nan, nan, nan, f"shares undefined: {len(y)} item(s), at least 3 needed"
    if not y.var() > 0:
        return nan, nan, nan, "shares undefined: the slopes do not vary"
    a_ok, yes_ok = _varies(a), _varies(yes)
    why = []
    if not a_ok:
        why.append("A/B share undefined: " + _why_constant(a, "letter", "every positive answer has the same letter"))
    if not yes_ok:
        why.append("Yes/No share undefined: " + _why_constant(yes, "Yes/No", "every positive answer is the same "
                                                                              "Yes/No"))
    if not (a_ok or yes_ok):
        return nan, nan, nan, "; ".join(why + ["no factor varies, so the unexplained rest is undefined too"])
    r2_a = metrics.r_squared(y, [a]) if a_ok else 0.0
    r2_both = metrics.r_squared(y, [f for f, ok in ((a, a_ok), (yes, yes_ok)) if ok])
    added = r2_both - r2_a
    if added < -1e-9:  # nested least squares: adding a column never lowers R²; more than round-off is a bug
        raise ArithmeticError(f"R² fell from {r2_a} to {r2_both} when pos_is_yes was added")
    return (r2_a if a_ok else nan), (max(added, 0.0) if yes_ok else nan), 1.0 - r2_both, "; ".join(why)


def dataset_rows(examples: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A row per model x dataset x variant pair x layer from the per-example rows.

    ``share_why`` says which spurious shares are undefined (NaN) and why; "" when all are defined."""
    rows = []
    for key, g in examples.groupby(CELL, sort=False):
        s = g.slope.to_numpy(dtype=float)
        a, yes = _factor(g.pos_is_A), _factor(g.pos_is_yes)
        f = metrics.dataset_figures(s, seed=seed)
        ab, y, rest, why = spurious_shares(s, a, yes)
        rows.append({**dict(zip(CELL, key)), "n": f.n, "mean_slope": f.mean_slope, "median_slope": f.median_slope,
                     "frac_anti": f.frac_anti, "frac_anti_lo": f.frac_anti_lo, "frac_anti_hi": f.frac_anti_hi,
                     "var_slope": f.var_slope, "share_ab": ab, "share_yes": y, "share_unexplained": rest,
                     "share_why": why, "mean_baseline": float(g.baseline.mean())})
    return pd.DataFrame(rows)


def share_text(value: float, width: int = 0) -> str:
    """A share as a percentage, or "undefined" (its reason is in the row's ``share_why``)."""
    return f"{value:{width}.1%}" if np.isfinite(value) else f"{'undefined':>{width}}"


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
