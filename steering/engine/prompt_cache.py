"""The fast path's cached prompt states, how a steered pass lays them out, and what fits a sliding window.

``steering.engine.fast`` builds and reads these (and re-exports the types). Shapes as there: B prompts,
T prefix length (padded), S suffix block length (padded), R multiplier replicas, Q = R * 2 * S.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from steering.core.prompts import EncodedPair
from steering.engine.models import LoadedModel


@dataclass
class PromptBatch:
    """Cached state of B prompts: everything a cell needs except the steered layers."""

    index: list[int]  # positions of these pairs in the caller's list
    keys: list[torch.Tensor]  # per layer [B, Hkv, T, Dh]
    values: list[torch.Tensor]
    prefix_mask: torch.Tensor  # [B, T] 1 for real tokens
    prefix_len: torch.Tensor  # [B] real prefix length (prompt length - 1)
    suffix_ids: torch.Tensor  # [B, 2S]: positive block then negative block
    targets: torch.Tensor  # [B, 2S] token each position predicts (0 where none)
    target_valid: torch.Tensor  # [B, 2S] bool
    read_pos: torch.Tensor  # [B] suffix index of the answer-letter token in the positive block
    hidden: torch.Tensor  # [L, B, 2S, d] unsteered block outputs
    base_logits: torch.Tensor  # [B, 2S] selected logits without steering
    base_logz: torch.Tensor | None  # [B, 2S] log-partition for log-prob metrics

    @property
    def S(self) -> int:
        return self.suffix_ids.shape[1] // 2

    def nbytes(self) -> int:
        tensors = self.keys + self.values + [self.hidden, self.prefix_mask, self.suffix_ids]
        return int(sum(t.numel() * t.element_size() for t in tensors))


@dataclass
class PromptCache:
    """All batches of one evaluation set, in the caller's order of pairs."""

    batches: list[PromptBatch]
    n: int
    mode: str
    metric: str
    created: float = field(default_factory=time.time)
    # Items the fast path cannot serve (caller index -> pair): every reader of the cache takes them from
    # the reference path, so a long item costs time, never the run.
    fallback: dict[int, EncodedPair] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(b.nbytes() for b in self.batches)


def _neg_inf(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).min


def layout(batch: PromptBatch, replicas: int, device, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids [B, Q] and additive attention mask [B, 1, Q, T + Q] for R replicas of [pos | neg],
    each block ``block`` positions long (default S; fewer: the blocks' leading positions)."""
    B, T = batch.prefix_mask.shape
    S = block or batch.S
    blocks = 2 * replicas
    Q = blocks * S
    j = torch.arange(Q, device=device)
    offset, block = j % S, j // S
    positions = batch.prefix_len.unsqueeze(1) + offset.unsqueeze(0)  # [B, Q]
    same_block = block.unsqueeze(1) == block.unsqueeze(0)
    causal = offset.unsqueeze(1) >= offset.unsqueeze(0)
    allowed_suffix = (same_block & causal).unsqueeze(0).expand(B, Q, Q)
    allowed_prefix = batch.prefix_mask.bool().unsqueeze(1).expand(B, Q, T)
    allowed = torch.cat([allowed_prefix, allowed_suffix], dim=2)
    mask = torch.zeros(allowed.shape, dtype=batch.hidden.dtype, device=device)
    mask.masked_fill_(~allowed, _neg_inf(batch.hidden.dtype))
    return positions, mask.unsqueeze(1)


def seeded_cache(lm: LoadedModel, batch: PromptBatch):
    """A KV cache seeded with the batch's prefix without copying it."""
    return seed_cache(lm, batch.keys, batch.values)


def seed_cache(lm: LoadedModel, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]):
    """A KV cache holding ``keys``/``values`` (per layer [B, Hkv, T, Dh]) as if T tokens had run."""
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.model.config)
    for layer, k, v in zip(cache.layers, keys, values):
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = k.shape[-2]
    return cache


def replicas_in_window(lm: LoadedModel, prefix: int, suffix: int) -> int:
    """How many [pos | neg] replicas (2 * ``suffix`` query tokens each) fit after ``prefix`` cached keys.

    The cells lay replicas side by side after the prefix; a model with a sliding window would drop keys
    that this layout still needs, so all of them must fit in the window. Unbounded without a window."""
    window = getattr(lm.model.config, "sliding_window", None)
    return (window - prefix) // (2 * suffix) if window else 1 << 30


def suffix_len(pair: EncodedPair) -> int:
    return 1 + max(len(pair.pos_ids), len(pair.neg_ids))  # the last prompt token, then a completion


def unserved(lm: LoadedModel, pairs: Sequence[EncodedPair]) -> list[int]:
    """Indices of the pairs the fast path cannot serve even alone (longer than the sliding window)."""
    return [i for i, p in enumerate(pairs) if replicas_in_window(lm, len(p.prompt_ids) - 1, suffix_len(p)) < 1]
