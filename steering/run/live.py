"""Propensities at a new multiplier for a stored run (the dashboard's slider), from cached prompt states."""

from __future__ import annotations

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


def live_propensities(lm: LoadedModel, result: SweepResult, layer: int, multiplier: float,
                      caches: fast.CacheStore) -> np.ndarray:
    """Test-split propensities at one (possibly off-grid) multiplier, in the stored example order.

    Reuses the cached prompt states of the run when present (the dashboard's
    slider); otherwise builds them once and keeps them in ``caches``.
    """
    cfg = result.config
    key = result.manifest["key"]
    vector = result.vectors[layer].to(lm.device, lm.dtype)
    if not use_fast(lm, cfg):
        return np.array([evaluate.reference_propensity(lm, p, layer, vector, multiplier, cfg.position, cfg.metric)
                         for p in test_pairs(lm, result)])
    cache = caches.get(key)
    if cache is None:
        cache = fast.build_cache(lm, test_pairs(lm, result), cfg.position, cfg.metric)
        caches.put(key, cache)
    return fast.slider(lm, cache, layer, vector, multiplier)
