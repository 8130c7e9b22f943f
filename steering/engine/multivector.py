"""Many vectors at one layer on the same cached prompt states (null baselines, split halves).

Each (vector, multiplier) pair is one more replica of the answer tokens in a
steered pass, so K extra vectors cost K x the grid's answer-token work and no
extra prompt pass. ``reference_many`` is the full-forward oracle beside it.

Shapes: K vectors, M multipliers, n examples.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from steering.core.prompts import EncodedPair
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import LoadedModel

Progress = Callable[[int, int], None]


@torch.no_grad()
def _steered_many(lm: LoadedModel, batch: fast.PromptBatch, layer: int, deltas: torch.Tensor, mode: str,
                  metric: str) -> torch.Tensor:
    """Propensities [B, R] for R additive vectors ``deltas`` [R, d] (multiplier already applied)."""
    R, K = deltas.shape[0], batch.S - 1  # as fast._steered: the positions that predict a completion token
    base = fast.answer_positions(batch, batch.hidden[layer])  # [B, 2K, d]
    steer_from = 0 if mode == "answer" else 1  # as fast._steered: suffix index 0 is the last prompt token
    where = (torch.arange(K, device=base.device) >= steer_from).to(base.dtype).repeat(2)
    delta = where.view(1, 2 * K, 1) * deltas.to(base.device, base.dtype).view(R, 1, -1)
    x = (base.unsqueeze(1) + delta.unsqueeze(0)).reshape(base.shape[0], R * 2 * K, -1)
    h = fast._run_from(lm, batch, layer + 1, x, R, K)
    sel, logz = fast._logits_at(lm, h, fast.answer_positions(batch, batch.targets).repeat(1, R), metric != "logit_diff")
    return fast._propensity(batch, sel, logz, metric, K)


def grid_many(lm: LoadedModel, cache: fast.PromptCache, layer: int, vectors: torch.Tensor,
              multipliers: Sequence[float], progress: Progress | None = None) -> np.ndarray:
    """Propensities [n, K, M] for K vectors [K, d] at ``layer``, from the cached prompt states."""
    K, M = vectors.shape[0], len(multipliers)
    out = np.zeros((cache.n, K, M))
    cells = [(k, j) for k in range(K) for j, m in enumerate(multipliers) if m != 0]
    vecs = vectors.to(lm.device, lm.dtype)
    if progress:
        progress(0, len(cache.batches))
    for number, b in enumerate(cache.batches):
        idx = np.array(b.index)
        base = fast._propensity(b, b.base_logits, b.base_logz, cache.metric).squeeze(1).cpu().numpy()
        for j, m in enumerate(multipliers):
            if m == 0:
                out[idx, :, j] = base[:, None]  # multiplier 0 is the unsteered pass, whatever the vector
        R = max(1, min(fast.TOKENS_PER_PASS // max(1, len(idx) * 2 * b.S),
                       fast.replicas_in_window(lm, b.prefix_mask.shape[1], b.S)))
        for c in range(0, len(cells), R):
            chunk = cells[c : c + R]
            deltas = torch.stack([multipliers[j] * vecs[k] for k, j in chunk])
            with lm.lock:
                p = _steered_many(lm, b, layer, deltas, cache.mode, cache.metric).cpu().numpy()
            for r, (k, j) in enumerate(chunk):
                out[idx, k, j] = p[:, r]
        if progress:
            progress(number + 1, len(cache.batches))
    if cache.fallback:  # items the fast path cannot serve (longer than a sliding window): the oracle's loop
        rows = list(cache.fallback)
        out[rows] = reference_many(lm, list(cache.fallback.values()), layer, vectors, multipliers, cache.mode,
                                   cache.metric)
    return out


def reference_many(lm: LoadedModel, pairs: Sequence[EncodedPair], layer: int, vectors: torch.Tensor,
                   multipliers: Sequence[float], mode: str = "answer", metric: str = "logit_diff",
                   progress: Progress | None = None) -> np.ndarray:
    """The same [n, K, M] from one full forward pass per cell (the oracle, and the non-fast families)."""
    out = np.zeros((len(pairs), vectors.shape[0], len(multipliers)))
    for k in range(vectors.shape[0]):
        v = vectors[k].to(lm.device, lm.dtype)
        out[:, k, :] = evaluate.reference_grid(lm, pairs, {layer: v}, [layer], multipliers, mode, metric)[:, 0, :]
        if progress:
            progress(k + 1, vectors.shape[0])
    return out
