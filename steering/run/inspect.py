"""Per-example detail for the Inspect page: where steering acts, and the example's own curve."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from steering.core.prompts import encode_pair
from steering.core.scoring import combine_scores
from steering.engine.hooks import steer, steer_start
from steering.engine.models import LoadedModel
from steering.engine.reference import _sequences, completion_score


def token_view(lm: LoadedModel, prompt: str, positive: str, negative: str, mode: str = "answer") -> list[dict]:
    """Tokens of prompt + positive completion with their role.

    role: "prompt" (not steered), "steered_prompt" (a prompt token that is
    steered, the last one in the default mode), "read" (the answer-letter token
    the vector is read at; it is also steered), "completion" (steered).
    """
    pair = encode_pair(lm.tokenizer, prompt, positive, negative)
    n = len(pair.prompt_ids)
    start = steer_start(n, mode)
    rows = []
    for i, tid in enumerate(pair.prompt_ids + pair.pos_ids):
        if i == n + pair.read_index:
            role = "read"
        elif i >= n:
            role = "completion"
        else:
            role = "steered_prompt" if i >= start else "prompt"
        rows.append({"text": lm.tokenizer.decode([tid]), "index": i, "role": role})
    return rows


@torch.no_grad()
def example_curve(lm: LoadedModel, prompt: str, positive: str, negative: str, layer: int, vector: torch.Tensor,
                  multipliers: Sequence[float], mode: str = "answer", metric: str = "logit_diff") -> pd.DataFrame:
    """Propensity, P(A) and P(B) at each multiplier (reference path, one example).

    P(A), P(B): the model's probability of the letter token A / B at the
    answer-letter position (after "("), over the whole vocabulary.
    """
    pair = encode_pair(lm.tokenizer, prompt, positive, negative)
    ids, mask = _sequences(lm, pair)
    n = len(pair.prompt_ids)
    at = n + pair.read_index - 1  # the position that predicts the letter
    pos_letter, neg_letter = pair.pos_ids[pair.read_index], pair.neg_ids[pair.read_index]
    pos_is_A = "A" in positive and "B" in negative
    rows = []
    for m in multipliers:
        with lm.lock, steer(lm.blocks[layer], vector.to(lm.device, lm.dtype), m, steer_start(n, mode)):
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
        prop = combine_scores(completion_score(logits[0], n, pair.pos_ids, metric),
                              completion_score(logits[1], n, pair.neg_ids, metric), metric)
        probs = torch.softmax(logits[0, at].float(), -1)
        p_pos, p_neg = float(probs[pos_letter]), float(probs[neg_letter])
        rows.append({"multiplier": float(m), "propensity": float(prop),
                     "p_A": p_pos if pos_is_A else p_neg, "p_B": p_neg if pos_is_A else p_pos})
    return pd.DataFrame(rows)
