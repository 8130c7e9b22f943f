"""Coherence of a generation: its perplexity under the unsteered model and its distinct-2 ratio.

A large multiplier can turn text into noise (high perplexity) or a loop (low distinct-2).
"""

from __future__ import annotations

import math
import re

import torch

from steering.core.prompts import token_ids
from steering.engine.models import LoadedModel


def distinct_2(text: str) -> float | None:
    """Distinct word bigrams / all word bigrams (1 = no repetition); None below two words."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    bigrams = list(zip(words, words[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else None


@torch.no_grad()
def perplexity(lm: LoadedModel, prompt: str, generation: str) -> float | None:
    """exp(mean NLL) of the generation's tokens given the prompt, under the unsteered model."""
    p_ids = token_ids(lm.tokenizer, prompt)
    ids = token_ids(lm.tokenizer, prompt + generation)
    start = len(p_ids)
    while start > 0 and ids[:start] != p_ids[:start]:  # a token merged across the boundary: score from there
        start -= 1
    start = max(start, 1)
    if len(ids) <= start:
        return None
    x = torch.tensor([ids], device=lm.device)
    with lm.lock:
        logits = lm.model(input_ids=x).logits[0].float()
    logp = torch.log_softmax(logits[start - 1 : -1], -1)
    nll = -logp.gather(1, x[0, start:, None]).mean()
    return float(math.exp(float(nll)))
