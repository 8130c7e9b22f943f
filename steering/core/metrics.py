"""Steerability metrics: per-example fits and dataset figures (Tan et al. 2024)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from steering.errors import NonFiniteError  # noqa: F401 - re-exported


def _require_finite(values: np.ndarray, what: str) -> None:
    if values.size and not np.isfinite(values).all():
        bad = values[~np.isfinite(values)].ravel()[0]
        raise NonFiniteError(f"{what} contain {bad} (not a finite number); refusing to fit them")


def ols_fit(multipliers: np.ndarray, propensities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares line per row. propensities: [n, m] -> (slope [n], intercept [n], rmse [n])."""
    x = np.asarray(multipliers, dtype=float)
    y = np.asarray(propensities, dtype=float)
    _require_finite(x, "multipliers")
    _require_finite(y, "propensities")
    xc = x - x.mean()
    denom = (xc**2).sum()
    if not denom > 0:
        raise NonFiniteError("need at least two distinct multipliers to fit a slope")
    slope = (y - y.mean(1, keepdims=True)) @ xc / denom
    intercept = y.mean(1) - slope * x.mean()
    resid = y - (intercept[:, None] + slope[:, None] * x[None, :])
    return slope, intercept, np.sqrt((resid**2).mean(1))


def spearman(multipliers: np.ndarray, propensities: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row with the multipliers (nan for a constant row).

    Ranks from scipy (ties share the mean rank); the Pearson correlation of the
    ranks is taken for all rows at once, which is what ``scipy.stats.spearmanr``
    computes for one row.
    """
    y = np.atleast_2d(np.asarray(propensities, dtype=float))
    ry = rankdata(y, axis=-1)
    rx = rankdata(np.asarray(multipliers, dtype=float))
    rxc = rx - rx.mean()
    ryc = ry - ry.mean(1, keepdims=True)
    denom = np.sqrt((ryc**2).sum(1) * (rxc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, ryc @ rxc / np.where(denom > 0, denom, 1), np.nan)


def anti_steerable(slopes) -> np.ndarray:
    """The paper's rule, used by every reader: an example is anti-steerable unless its slope is > 0."""
    return ~(np.asarray(slopes, dtype=float) > 0)


def spearman_rho(x, y) -> float:
    """Spearman's rho of two samples (average ranks for ties); nan with fewer than three finite pairs
    or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float(rx @ ry / denom) if denom > 0 else float("nan")


def per_example(multipliers, propensities: np.ndarray) -> dict[str, np.ndarray]:
    """Per row: slope, intercept, rmse, spearman, anti_steerable, and baseline
    (the propensity at multiplier 0, else the fit's intercept)."""
    x = np.asarray(multipliers, dtype=float)
    slope, intercept, rmse = ols_fit(x, propensities)
    zero = np.flatnonzero(x == 0)
    baseline = propensities[:, zero[0]] if len(zero) else intercept
    return {
        "slope": slope,
        "intercept": intercept,
        "rmse": rmse,
        "spearman": spearman(x, propensities),
        "baseline": np.asarray(baseline, dtype=float),
        "anti_steerable": anti_steerable(slope),
    }


@dataclass
class DatasetFigures:
    n: int
    mean_slope: float
    median_slope: float
    std_slope: float
    var_slope: float
    frac_anti: float
    frac_anti_lo: float
    frac_anti_hi: float
    mean_slope_lo: float
    mean_slope_hi: float
    r2_pos_is_A: float | None
    r2_pos_is_yes: float | None
    r2_spurious: float | None  # both factors together

    def as_dict(self) -> dict:
        return asdict(self)


def r_squared(y: np.ndarray, factors: list[np.ndarray]) -> float | None:
    """Share of var(y) explained by an OLS fit on the given 0/1 factors (with intercept)."""
    y = np.asarray(y, dtype=float)
    cols = [np.asarray(f, dtype=float) for f in factors if f is not None]
    cols = [c for c in cols if np.isfinite(c).all() and c.std() > 0]
    if not cols or len(y) < 3 or y.var() == 0:
        return None
    X = np.column_stack([np.ones(len(y))] + cols)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    return float(1 - resid.var() / y.var())


def bootstrap_ci(values: np.ndarray, stat, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over resampled examples."""
    values = np.asarray(values)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = stat(values[idx], axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def dataset_figures(slopes: np.ndarray, pos_is_A: np.ndarray | None = None, pos_is_yes: np.ndarray | None = None,
                    seed: int = 0) -> DatasetFigures:
    """Mean/median slope, fraction anti-steerable (1 - mean(slope > 0)) with bootstrap 95% intervals, spurious R²."""
    s = np.asarray(slopes, dtype=float)
    _require_finite(s, "slopes")
    anti = anti_steerable(s).astype(float)  # the paper's 1 - mean(slope > 0)
    lo, hi = bootstrap_ci(anti, np.mean, seed=seed)
    mlo, mhi = bootstrap_ci(s, np.mean, seed=seed)
    yes = None
    if pos_is_yes is not None:
        yes_arr = np.asarray(pos_is_yes, dtype=object)
        if all(v is not None for v in yes_arr):
            yes = yes_arr.astype(float)
    A = None if pos_is_A is None else np.asarray(pos_is_A, dtype=float)
    return DatasetFigures(
        n=len(s),
        mean_slope=float(s.mean()) if len(s) else float("nan"),
        median_slope=float(np.median(s)) if len(s) else float("nan"),
        std_slope=float(s.std()) if len(s) else float("nan"),
        var_slope=float(s.var()) if len(s) else float("nan"),
        frac_anti=float(anti.mean()) if len(s) else float("nan"),
        frac_anti_lo=lo,
        frac_anti_hi=hi,
        mean_slope_lo=mlo,
        mean_slope_hi=mhi,
        r2_pos_is_A=r_squared(s, [A]) if A is not None else None,
        r2_pos_is_yes=r_squared(s, [yes]) if yes is not None else None,
        r2_spurious=r_squared(s, [A, yes]) if A is not None else None,
    )
