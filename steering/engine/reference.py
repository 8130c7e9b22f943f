"""Reference path: full forward passes with hooks, one per (example, layer, multiplier).

Simple and obviously correct, like the paper's own loop; it is the oracle the
fast path (``steering.engine.fast``) is tested against.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from steering.core.prompts import EncodedPair
from steering.core.scoring import METRIC_UNITS, METRICS, combine_scores, mean_per_token, pad_rows  # noqa: F401 - re-exported
from steering.engine.hooks import capture, steer, steer_start
from steering.engine.models import LoadedModel

Progress = Callable[[int, int], None]


def _sequences(lm: LoadedModel, pair: EncodedPair) -> tuple[torch.Tensor, torch.Tensor]:
    """[pos, neg] full sequences, right-padded, with their attention mask."""
    ids, mask = pad_rows([list(pair.prompt_ids + pair.pos_ids), list(pair.prompt_ids + pair.neg_ids)],
                         lm.tokenizer.pad_token_id)
    return ids.to(lm.device), mask.to(lm.device)


def completion_score(logits: torch.Tensor, prompt_len: int, completion: Sequence[int], metric: str) -> torch.Tensor:
    """Sum over completion tokens of the raw logit (or log-prob) the model gave each (mean for answer_text).

    logits: [seq, vocab] of one sequence; token ``completion[j]`` sits at
    position ``prompt_len + j`` and is predicted at the position before it.
    """
    rows = logits[prompt_len - 1 : prompt_len - 1 + len(completion)].float()
    if metric != "logit_diff":
        rows = torch.log_softmax(rows, dim=-1)
    picked = rows[torch.arange(len(completion)), torch.tensor(completion)]
    return picked.mean() if mean_per_token(metric) else picked.sum()


@torch.no_grad()
def reference_propensity(
    lm: LoadedModel,
    pair: EncodedPair,
    layer: int | None,
    vector: torch.Tensor | None,
    multiplier: float,
    mode: str = "answer",
    metric: str = "logit_diff",
) -> float:
    """Propensity of one pair with ``multiplier * vector`` added at ``layer`` (None: unsteered)."""
    ids, mask = _sequences(lm, pair)
    n = len(pair.prompt_ids)
    with lm.lock:
        if layer is None or vector is None:
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
        else:
            with steer(lm.blocks[layer], vector, multiplier, steer_start(n, mode)):
                logits = lm.model(input_ids=ids, attention_mask=mask).logits
    pos = completion_score(logits[0], n, pair.pos_ids, metric)
    neg = completion_score(logits[1], n, pair.neg_ids, metric)
    return float(combine_scores(pos, neg, metric))


def reference_grid(
    lm: LoadedModel,
    pairs: Sequence[EncodedPair],
    vectors: dict[int, torch.Tensor],
    layers: Sequence[int],
    multipliers: Sequence[float],
    mode: str = "answer",
    metric: str = "logit_diff",
    progress: Progress | None = None,
) -> np.ndarray:
    """Propensities [example, layer, multiplier], one full forward pass per cell."""
    out = np.zeros((len(pairs), len(layers), len(multipliers)))
    total, done = len(pairs) * len(layers) * len(multipliers), 0
    for i, pair in enumerate(pairs):
        for j, layer in enumerate(layers):
            for k, m in enumerate(multipliers):
                out[i, j, k] = reference_propensity(lm, pair, layer, vectors[layer], m, mode, metric)
                done += 1
                if progress:
                    progress(done, total)
    return out


@torch.no_grad()
def reference_differences(
    lm: LoadedModel, pairs: Sequence[EncodedPair], progress: Progress | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block outputs at the answer-letter token for every layer: (pos, neg), each [layer, pair, d].

    Two full forward passes per training pair (positive and negative sequences).
    """
    pos_acts, neg_acts = [], []
    for i, pair in enumerate(pairs):
        ids, mask = _sequences(lm, pair)
        at = len(pair.prompt_ids) + pair.read_index
        with lm.lock, capture(lm.blocks) as hs:
            lm.model(input_ids=ids, attention_mask=mask)
        stacked = torch.stack([h[:, at].to(lm.device) for h in hs])  # [layer, 2, d]; blocks may sit on other GPUs
        pos_acts.append(stacked[:, 0])
        neg_acts.append(stacked[:, 1])
        if progress:
            progress(i + 1, len(pairs))
    return torch.stack(pos_acts, 1).float(), torch.stack(neg_acts, 1).float()
