"""Statistics of the diagnostics (pure numpy): null z, letter-driven items, agreement, rank correlation."""

from __future__ import annotations

import numpy as np

from steering.core import metrics
from steering.core.metrics import anti_steerable

Z95 = 1.959963984540054  # two-sided 95% normal quantile: the per-item null band is mean +- Z95 * std


def null_z(slopes: np.ndarray, null_slopes: np.ndarray) -> np.ndarray:
    """Per example (slope - mean of its null slopes) / their std (ddof 1). null_slopes: [n, K]."""
    mu = null_slopes.mean(1)
    sd = null_slopes.std(1, ddof=1) if null_slopes.shape[1] > 1 else np.full(len(mu), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.asarray(slopes, dtype=float) - mu) / sd


def null_summary(slopes: np.ndarray, null_slopes: np.ndarray) -> dict:
    """Null distributions (over the K null vectors) of the mean slope and the anti-steerable fraction,
    and the fraction of items steered beyond their 95% null band (z > 1.96)."""
    means = null_slopes.mean(0)  # [K]
    antis = anti_steerable(null_slopes).mean(0)
    z = null_z(slopes, null_slopes)
    return {"k": int(null_slopes.shape[1]), "mean_slope": float(np.mean(slopes)),
            "frac_anti": float(anti_steerable(slopes).mean()),
            "null_mean_slopes": means.tolist(), "null_frac_anti": antis.tolist(),
            "null_mean_lo": float(np.quantile(means, 0.025)), "null_mean_hi": float(np.quantile(means, 0.975)),
            "null_anti_lo": float(np.quantile(antis, 0.025)), "null_anti_hi": float(np.quantile(antis, 0.975)),
            "frac_beyond": float(np.mean(z > Z95)), "median_z": float(np.nanmedian(z)) if np.isfinite(z).any() else
            float("nan")}


def letter_driven(slopes: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """True where swapping the options flips the sign of the slope (a zero slope flips nothing)."""
    return np.sign(np.asarray(slopes, dtype=float)) * np.sign(np.asarray(swapped, dtype=float)) < 0


def swap_summary(slopes: np.ndarray, swapped: np.ndarray) -> dict:
    free = (np.asarray(slopes, dtype=float) + swapped) / 2
    return {"frac_letter_driven": float(letter_driven(slopes, swapped).mean()),
            "letter_free_mean": float(free.mean()), "letter_free_median": float(np.median(free)),
            "letter_free_anti": float(anti_steerable(free).mean()), "frac_anti": float(anti_steerable(slopes).mean()),
            "swapped_anti": float(anti_steerable(swapped).mean()), "mean_slope": float(np.mean(slopes)),
            "swapped_mean": float(np.mean(swapped))}


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def spearman_rho(x, y) -> float:
    """Spearman rank correlation of two samples (nan when one is constant)."""
    return metrics.spearman_rho(x, y)


def own_cos_proj(differences: np.ndarray, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item: cosine of its activation difference [n, d] with the vector [d], and its projection on it."""
    d = np.asarray(differences, dtype=float)
    v = np.asarray(vector, dtype=float)
    vn = np.linalg.norm(v)
    proj = d @ v / vn if vn > 0 else np.full(len(d), np.nan)
    norms = np.linalg.norm(d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return proj / norms, proj


def directional_agreement(differences: np.ndarray) -> float:
    """Mean cosine of each training difference [n, d] with their mean (Braun et al. 2025)."""
    d = np.asarray(differences, dtype=float)
    return float(np.nanmean(own_cos_proj(d, d.mean(0))[0]))


def verdict(slope: float, swapped: float | None = None, z_random: float | None = None,
            z_shuffled: float | None = None) -> str:
    """One line on why an example moves as it does, from its diagnostics (any may be missing)."""
    ok = lambda v: v is not None and np.isfinite(v)  # noqa: E731
    if ok(swapped) and bool(letter_driven(np.array([slope]), np.array([swapped]))[0]):
        return "letter-driven: its slope flips sign when the options are swapped"
    if ok(z_random) and abs(z_random) < Z95:
        return "no better than a random direction: its slope lies inside the 95% band of random vectors' slopes"
    if ok(swapped) and slope <= 0 and swapped <= 0:
        return "anti-steerable in both letter orders: the vector pushes this content the wrong way"
    if ok(swapped) and slope > 0 and swapped > 0:
        return "content-steered: steerable in both letter orders" + (
            ", and beyond the random-direction band" if ok(z_random) else "")
    if ok(z_shuffled) and abs(z_shuffled) < Z95:
        return "no better than a label-shuffled vector: the concept's labels add nothing for this item"
    return "steerable beyond the null band" if slope > 0 else "anti-steerable beyond the null band"
