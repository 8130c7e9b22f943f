"""Steerability metrics: per-example fits and dataset figures (Tan et al. 2024)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import binomtest, rankdata
from scipy.stats import t as student_t

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
    """Dataset figures of one layer. A figure that cannot be estimated is NaN (or None for the R² shares)
    and ``undefined`` names it with the reason, which readers show as "undefined (reason)"."""

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
    undefined: dict[str, str] = field(default_factory=dict)  # figure name -> why it cannot be estimated

    def as_dict(self) -> dict:
        return asdict(self)


def r_squared(y: np.ndarray, factors: list[np.ndarray]) -> float | None:
    """Share of var(y) explained by an OLS fit on the given 0/1 factors (with intercept); None when it is
    undefined (see ``r_squared_reason``)."""
    return None if r_squared_reason(y, factors) else _r_squared(y, factors)


def r_squared_reason(y: np.ndarray, factors: list[np.ndarray]) -> str | None:
    """Why the R² of ``y`` on ``factors`` cannot be estimated, or None when it can."""
    y = np.asarray(y, dtype=float)
    if len(y) < 3:
        return f"{len(y)} item(s): an R² needs at least 3"
    if not y.var() > 0:
        return "the slopes have no variance"
    cols = [np.asarray(f, dtype=float) for f in factors if f is not None]
    if not any(np.isfinite(c).all() and c.std() > 0 for c in cols):
        return "the factor does not vary: every item has the same value"
    return None


def _r_squared(y: np.ndarray, factors: list[np.ndarray]) -> float:
    y = np.asarray(y, dtype=float)
    cols = [np.asarray(f, dtype=float) for f in factors if f is not None]
    cols = [c for c in cols if np.isfinite(c).all() and c.std() > 0]
    X = np.column_stack([np.ones(len(y))] + cols)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    return float(1 - resid.var() / y.var())


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: honest at small n (one item gives [21%, 100%], not
    [100%, 100%]); (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean: (nan, nan) below two values; a point when every value is equal."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    half = float(student_t.ppf(0.5 + level / 2, len(v) - 1)) * se
    return m - half, m + half


ALL_FLAT = ("no item's propensity changes with the multiplier (every slope is exactly 0): the steering "
            "saturates or has no effect, so no item can be called steerable or anti-steerable")


def dataset_figures(slopes: np.ndarray, pos_is_A: np.ndarray | None = None, pos_is_yes: np.ndarray | None = None,
                    seed: int = 0) -> DatasetFigures:
    """Mean/median slope (t interval), fraction anti-steerable (1 - mean(slope > 0), Wilson interval), spurious R².

    ``seed`` is kept for callers; the intervals are analytic and need none.
    """
    s = np.asarray(slopes, dtype=float)
    _require_finite(s, "slopes")
    n = len(s)
    anti = anti_steerable(s)  # the paper's 1 - mean(slope > 0)
    undefined: dict[str, str] = {}
    if n == 0:
        for name in ("mean_slope", "median_slope", "std_slope", "var_slope", "frac_anti", "mean_slope_interval"):
            undefined[name] = "no test items"
    elif n < 2:
        undefined["mean_slope_interval"] = "one test item: an interval needs at least two"
    frac = float(anti.mean()) if n else float("nan")
    lo, hi = wilson_interval(int(anti.sum()), n)
    if n and not np.any(s != 0):
        frac, lo, hi = float("nan"), float("nan"), float("nan")
        undefined["frac_anti"] = ALL_FLAT
    mlo, mhi = mean_interval(s)
    yes = None
    if pos_is_yes is not None:
        yes_arr = np.asarray(pos_is_yes, dtype=object)
        if all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in yes_arr):
            yes = yes_arr.astype(float)
    A = None if pos_is_A is None else np.asarray(pos_is_A, dtype=float)
    r2 = {}
    for name, factors in (("r2_pos_is_A", [A]), ("r2_pos_is_yes", [yes]), ("r2_spurious", [A, yes])):
        if factors[0] is None:
            r2[name] = None  # the factor does not apply (no letters recorded, or not a Yes/No dataset)
            continue
        why = r_squared_reason(s, factors)
        if why and name == "r2_pos_is_A" and A is not None and len(A) and np.isfinite(A).all() and A.std() == 0:
            why = f"every positive answer is ({'A' if A[0] else 'B'}): the letter cannot explain anything"
        r2[name] = None if why else _r_squared(s, factors)
        if why:
            undefined[name] = why
    return DatasetFigures(
        n=n,
        mean_slope=float(s.mean()) if n else float("nan"),
        median_slope=float(np.median(s)) if n else float("nan"),
        std_slope=float(s.std()) if n else float("nan"),
        var_slope=float(s.var()) if n else float("nan"),
        frac_anti=frac,
        frac_anti_lo=lo,
        frac_anti_hi=hi,
        mean_slope_lo=mlo,
        mean_slope_hi=mhi,
        undefined=undefined,
        **r2,
    )


def saturation_reason(multipliers, propensities: np.ndarray) -> str | None:
    """Why the slopes of a grid say nothing about the items, or None: at every nonzero multiplier every
    item has the same propensity (the steered state no longer depends on the input), or nothing moves.

    propensities: [n items, m multipliers].
    """
    x = np.asarray(multipliers, dtype=float)
    y = np.asarray(propensities, dtype=float)
    steered, unsteered = y[:, x != 0], y[:, x == 0]
    if y.shape[0] < 2 or steered.shape[1] == 0 or unsteered.shape[1] == 0 or not np.isfinite(y).all():
        return None
    spread = steered.max(0) - steered.min(0)
    scale = 1e-6 * max(1.0, float(np.abs(y).max()))
    # items that differ unsteered but not steered: the input no longer matters (identical items differ in neither)
    if np.all(spread <= scale) and float(np.ptp(unsteered[:, 0])) > scale:
        return ("every item has the same propensity at every nonzero multiplier: the steering saturates "
                "(the steered state no longer depends on the input), so no item can be called steerable or "
                "anti-steerable")
    return None


def shown(value, fmt: str = "{:.3g}", reason: str | None = None) -> str:
    """A figure as text: formatted when it is a finite number, else "undefined (reason)"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return f"undefined ({reason})" if reason else "undefined"
    return fmt.format(value)
