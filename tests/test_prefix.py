"""The shared head of a batch's prompts runs once: same numbers as every prompt whole, and as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steering.core.datasets import load_dataset
from steering.core.prompts import encode_example
from steering.engine import fast, prefix
from steering.engine import reference as evaluate


def mixed_pairs(lm, n=4):
    """Items under three variants: within a variant the prompts share a long head, across them a short one."""
    ds = load_dataset("corrigibility-demo")
    return [encode_example(lm.tokenizer, e, v, ds.name) for v in ("BASE", "SYS_POS", "USER_NEG")
            for e in ds.examples[:n]]


def vectors(lm):
    g = torch.Generator().manual_seed(1)
    return {l: torch.randn(lm.hidden_size, generator=g) * 3 for l in range(lm.n_layers)}


@pytest.mark.parametrize("rows,expected", [([[1, 2, 3, 4], [1, 2, 5]], 2), ([[1, 2], [1, 2, 3]], 1),
                                           ([[1, 2, 3]], 0), ([[7, 2], [1, 2]], 0), ([[1, 2, 3], [1, 2, 3]], 2)])
def test_shared_head_leaves_every_row_a_token_of_its_own(rows, expected):
    assert prefix.shared_head(rows) == expected


def grid_with(lm, pairs, share: bool, batch_size: int, side: str = "left"):
    saved = prefix.MIN_TOKENS_SAVED
    prefix.MIN_TOKENS_SAVED = 1 if share else 1 << 30
    try:
        cache = fast.build_cache(lm, pairs, mode="answer", metric="logprob_diff", batch_size=batch_size,
                                 padding_side=side)
        return fast.grid(lm, cache, vectors(lm), [0, 2], [-2.0, 0.0, 1.5]), cache
    finally:
        prefix.MIN_TOKENS_SAVED = saved


@pytest.mark.parametrize("side", ["left", "right"])
def test_shared_head_matches_whole_prompts_and_reference(tiny, side):
    pairs = mixed_pairs(tiny)
    assert prefix.shared_head([p.prompt_ids[:-1] for p in pairs[:4]]) > 10  # the case under test occurs
    shared, cache = grid_with(tiny, pairs, True, 4, side)
    whole, _ = grid_with(tiny, pairs, False, 4, side)
    mixed, _ = grid_with(tiny, pairs, True, 5, side)  # a batch across two variants: a short shared head
    ref = evaluate.reference_grid(tiny, pairs, vectors(tiny), [0, 2], [-2.0, 0.0, 1.5], "answer", "logprob_diff")
    assert np.abs(shared - whole).max() < 1e-4 and np.abs(mixed - whole).max() < 1e-4
    assert np.abs(shared - ref).max() < 1e-4
    assert np.abs(ref[:, :, 0] - ref[:, :, 2]).max() > 1e-3  # steering moves something: the check can fail
    pos, neg = fast.activation_differences(cache)  # training reads the same activations
    rpos, rneg = evaluate.reference_differences(tiny, pairs)
    assert torch.allclose(pos, rpos, atol=1e-4) and torch.allclose(neg, rneg, atol=1e-4)


def test_shared_head_runs_once_per_batch(tiny_llama):
    """The head is one row: the rows' own pass sees only their own tokens."""
    pairs = mixed_pairs(tiny_llama)[:4]
    prefixes = [p.prompt_ids[:-1] for p in pairs]
    P = prefix.shared_head(prefixes)
    widths = []
    hook = tiny_llama.blocks[0].register_forward_hook(lambda m, a, o: widths.append(a[0].shape[:2]))
    try:
        keys, _, mask = prefix.prefix_pass(tiny_llama, prefixes, share=True)
    finally:
        hook.remove()
    longest = max(map(len, prefixes))
    assert widths == [(1, P), (4, longest - P)]
    assert keys[0].shape[2] == longest and mask.sum(1).tolist() == [len(p) for p in prefixes]
