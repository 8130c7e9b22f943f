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


def beyond_null_band(z) -> np.ndarray:
    """The one definition of "beyond the null band": the slope lies outside its 95% null band on either side,
    |z| > Z95. A z that is not finite (no band: NaN, or ±inf when the null slopes do not vary) is never beyond
    (nor inside)."""
    z = np.asarray(z, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(z) & (np.abs(z) > Z95)


def inside_null_band(z) -> np.ndarray:
    """A known z that is not beyond the band: |z| <= Z95 (a NaN z is neither inside nor beyond)."""
    z = np.asarray(z, dtype=float)
    return np.isfinite(z) & ~beyond_null_band(z)


def frac_beyond(z) -> float:
    """Share of the items with a known z that lie beyond their null band; NaN when no item has one."""
    z = np.asarray(z, dtype=float)
    known = np.isfinite(z)
    return float(beyond_null_band(z[known]).mean()) if known.any() else float("nan")


def frac_beyond_text(summary: dict) -> str:
    """A null summary's beyond-the-band share for display; "undefined (why)" when no item has a z."""
    v = summary.get("frac_beyond", float("nan"))
    return f"{v:.0%}" if np.isfinite(v) else "undefined (no item's null slopes vary, so no item has a z)"


def null_summary(slopes: np.ndarray, null_slopes: np.ndarray) -> dict:
    """Null distributions (over the K null vectors) of the mean slope and the anti-steerable fraction,
    and the share of items steered beyond their 95% null band (``beyond_null_band``; over items with a z)."""
    means = null_slopes.mean(0)  # [K]
    antis = anti_steerable(null_slopes).mean(0)
    z = null_z(slopes, null_slopes)
    return {"k": int(null_slopes.shape[1]), "mean_slope": float(np.mean(slopes)),
            "frac_anti": float(anti_steerable(slopes).mean()),
            "null_mean_slopes": means.tolist(), "null_frac_anti": antis.tolist(),
            "null_mean_lo": float(np.quantile(means, 0.025)), "null_mean_hi": float(np.quantile(means, 0.975)),
            "null_anti_lo": float(np.quantile(antis, 0.025)), "null_anti_hi": float(np.quantile(antis, 0.975)),
            "frac_beyond": frac_beyond(z), "n_z": int(np.isfinite(z).sum()),
            "median_z": float(np.nanmedian(z)) if np.isfinite(z).any() else float("nan")}


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
    """One line on why an example moves as it does, from its diagnostics (any may be missing or NaN).

    "Beyond the null band" is said only of a known z (``beyond_null_band``)."""
    ok = lambda v: v is not None and np.isfinite(v)  # noqa: E731
    inside = lambda z: ok(z) and bool(inside_null_band(z))  # noqa: E731
    beyond = lambda z: ok(z) and bool(beyond_null_band(z))  # noqa: E731
    if ok(swapped) and bool(letter_driven(np.array([slope]), np.array([swapped]))[0]):
        return "letter-driven: its slope flips sign when the options are swapped"
    if inside(z_random):
        return "no better than a random direction: its slope lies inside the 95% band of random vectors' slopes"
    if ok(swapped) and slope <= 0 and swapped <= 0:
        return "anti-steerable in both letter orders: the vector pushes this content the wrong way"
    if ok(swapped) and slope > 0 and swapped > 0:
        return "content-steered: steerable in both letter orders" + (
            ", and beyond the random-direction band" if beyond(z_random) else "")
    if inside(z_shuffled):
        return "no better than a label-shuffled vector: the concept's labels add nothing for this item"
    what = "steerable" if slope > 0 else "anti-steerable"
    if beyond(z_random) or beyond(z_shuffled):
        return f"{what} beyond the null band"
    return f"{what}; no null band to compare with (no null baselines, or their slopes do not vary)"
