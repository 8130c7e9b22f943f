"""Propensities at a new multiplier for a stored run (the dashboard's slider), from cached prompt states:
one value, every step of the slider at once, or an instant estimate interpolated from the stored grid."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from steering.core.prompts import EncodedPair, encode_pair
from steering.core.results import SweepResult
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import LoadedModel
from steering.run.sweep import use_fast


def test_pairs(lm: LoadedModel, result: SweepResult) -> list[EncodedPair]:
    """The run's test pairs exactly as stored (same prompt text and completions)."""
    return [encode_pair(lm.tokenizer, r.prompt, r.positive, r.negative) for r in result.test_pairs().itertuples()]


def _cache(lm: LoadedModel, result: SweepResult, caches: fast.CacheStore) -> fast.PromptCache:
    cfg, key = result.config, result.manifest["key"]
    cache = caches.get(key)
    if cache is None:
        cache = fast.build_cache(lm, test_pairs(lm, result), cfg.position, cfg.metric)
        caches.put(key, cache)
    return cache


def slider_grid(lm: LoadedModel, result: SweepResult, layer: int, multipliers: Sequence[float],
                caches: fast.CacheStore) -> np.ndarray:
    """Test-split propensities [example, multiplier] at every slider step, in the stored example order:
    one grid call on the cached prompt states (the steered passes batch several multipliers)."""
    cfg = result.config
    vector = result.vectors[layer].to(lm.device, lm.dtype)
    if not use_fast(lm, cfg):
        return evaluate.reference_grid(lm, test_pairs(lm, result), {layer: vector}, [layer], list(multipliers),
                                       cfg.position, cfg.metric)[:, 0, :]
    return fast.grid(lm, _cache(lm, result, caches), {layer: vector}, [layer], list(multipliers))[:, 0, :]


def interpolate(grid: Sequence[float], values: np.ndarray, multiplier: float) -> np.ndarray:
    """Per-example propensity at ``multiplier`` [example] from values on the grid [example, grid point]:
    linear between the neighbouring grid points, and along the end segment outside the grid."""
    x = np.asarray(grid, dtype=float)
    order = np.argsort(x)
    x, y = x[order], np.asarray(values, dtype=float)[:, order]
    if len(x) < 2:
        raise ValueError("interpolation needs at least two grid multipliers")  # a sweep always has two
    k = int(np.clip(np.searchsorted(x, multiplier) - 1, 0, len(x) - 2))
    t = (multiplier - x[k]) / (x[k + 1] - x[k])
    return y[:, k] + t * (y[:, k + 1] - y[:, k])


def live_propensities(lm: LoadedModel, result: SweepResult, layer: int, multiplier: float,
                      caches: fast.CacheStore) -> np.ndarray:
    """Test-split propensities at one (possibly off-grid) multiplier, in the stored example order.

    Reuses the cached prompt states of the run when present (the dashboard's
    slider); otherwise builds them once and keeps them in ``caches``.
    """
    cfg = result.config
    vector = result.vectors[layer].to(lm.device, lm.dtype)
    if not use_fast(lm, cfg):
        return np.array([evaluate.reference_propensity(lm, p, layer, vector, multiplier, cfg.position, cfg.metric)
                         for p in test_pairs(lm, result)])
    return fast.slider(lm, _cache(lm, result, caches), layer, vector, multiplier)
