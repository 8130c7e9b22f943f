"""The fast path's prefix pass: keys/values of a batch of prompts up to their last token.

Prompts of one run share a long head (the chat template's system turn, a variant's persona sentence):
that head runs once, as one row, and only the rest of each prompt runs per row, attending to the head's
cached keys. Same numbers as running every prompt whole (up to float rounding; tested against the
reference path), at a fraction of the prompt tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch

from steering.core.scoring import pad_rows
from steering.engine.models import LoadedModel
from steering.engine.prompt_cache import seed_cache
from steering.errors import FastPathUnsupported

# Sharing costs one more (one-row) pass; below this many prompt tokens saved it does not pay on CPU.
MIN_TOKENS_SAVED = 8


def shared_head(prefixes: Sequence[Sequence[int]]) -> int:
    """Length of the head every prefix starts with, leaving each at least one token of its own."""
    if len(prefixes) < 2:
        return 0
    first, shortest = prefixes[0], min(map(len, prefixes))
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prefixes):
        n += 1
    return n


def _states(lm: LoadedModel, cache) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    keys = [layer.keys for layer in cache.layers]
    values = [layer.values for layer in cache.layers]
    if len(keys) != lm.n_layers:
        raise FastPathUnsupported("the model's cache does not hold one entry per block")
    return keys, values


@torch.no_grad()
def prefix_pass(lm: LoadedModel, prefixes: Sequence[Sequence[int]], padding_side: str = "left",
                share: bool | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """(keys, values per layer [B, Hkv, T, Dh], prefix mask [B, T]) for the token rows ``prefixes``.

    With a shared head of P tokens, columns 0..P-1 hold it for every row and each row's own tokens
    follow, padded on ``padding_side``; positions count real tokens only, so the layout changes nothing.
    ``share=False`` runs every row whole (the layout before sharing); default: share when it pays.
    """
    dev, pad = lm.device, lm.tokenizer.pad_token_id
    P = shared_head(prefixes)
    if share is None:
        share = (len(prefixes) - 1) * P >= MIN_TOKENS_SAVED
    if not share or P == 0:
        ids, mask = pad_rows([list(p) for p in prefixes], pad, padding_side)
        ids, mask = ids.to(dev), mask.to(dev)
        out = lm.base(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                      use_cache=True)
        return (*_states(lm, out.past_key_values), mask)
    head = torch.tensor([list(prefixes[0][:P])], device=dev)
    out = lm.base(input_ids=head, position_ids=torch.arange(P, device=dev).unsqueeze(0), use_cache=True)
    B = len(prefixes)
    keys, values = _states(lm, out.past_key_values)
    cache = seed_cache(lm, [k.expand(B, -1, -1, -1) for k in keys], [v.expand(B, -1, -1, -1) for v in values])
    ids, rest_mask = pad_rows([list(p[P:]) for p in prefixes], pad, padding_side)
    ids, rest_mask = ids.to(dev), rest_mask.to(dev)
    mask = torch.cat([torch.ones(B, P, dtype=rest_mask.dtype, device=dev), rest_mask], dim=1)
    positions = (P + rest_mask.cumsum(1) - 1).clamp(min=0)
    out = lm.base(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    return (*_states(lm, out.past_key_values), mask)
