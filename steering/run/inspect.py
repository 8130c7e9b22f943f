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
    """Propensity, P(A) and P(B) at each multiplier (full forward passes, one example).

    P(A), P(B): the model's probability of the letter token A / B at the
    answer-letter position (after "("), over the whole vocabulary. Every multiplier's
    positive and negative sequence go in one batch (a per-row multiplier), and logits are
    formed only from the last prompt position on: the Inspect page waits for this.
    """
    pair = encode_pair(lm.tokenizer, prompt, positive, negative)
    ids, mask = _sequences(lm, pair)
    n = len(pair.prompt_ids)
    first = n - 1  # logits are kept from here on: this position predicts the first completion token
    pos_letter, neg_letter = pair.pos_ids[pair.read_index], pair.neg_ids[pair.read_index]
    pos_is_A = "A" in positive and "B" in negative
    k = len(multipliers)
    rows_m = torch.tensor([float(m) for m in multipliers]).repeat_interleave(2)  # [pos, neg] per multiplier
    with lm.lock, steer(lm.blocks[layer], vector.to(lm.device, lm.dtype), rows_m.to(lm.device), steer_start(n, mode)):
        logits = lm.model(input_ids=ids.repeat(k, 1), attention_mask=mask.repeat(k, 1),
                          logits_to_keep=ids.shape[1] - first).logits
    rows = []
    for i, m in enumerate(multipliers):
        pos, neg = logits[2 * i], logits[2 * i + 1]  # kept position j predicts completion token j
        prop = combine_scores(completion_score(pos, 1, pair.pos_ids, metric),
                              completion_score(neg, 1, pair.neg_ids, metric), metric)
        probs = torch.softmax(pos[pair.read_index].float(), -1)  # the kept position that predicts the letter
        p_pos, p_neg = float(probs[pos_letter]), float(probs[neg_letter])
        rows.append({"multiplier": float(m), "propensity": float(prop),
                     "p_A": p_pos if pos_is_A else p_neg, "p_B": p_neg if pos_is_A else p_pos})
    return pd.DataFrame(rows)
