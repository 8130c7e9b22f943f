"""Steered text generation, streamed token by token.

The model lock is taken per decoding step (not across the whole stream), so a
viewer that abandons a stream never blocks other sessions; the steering hook is
installed and removed inside each step.
"""

from __future__ import annotations

from typing import Iterator

import torch

from steering.core.prompts import DEFAULT_SYSTEM, PromptParts, format_prompt, token_ids
from steering.engine.hooks import steer, steer_start
from steering.engine.models import LoadedModel
from steering.errors import ValidationError

MAX_NEW_TOKENS = 256


def chat_prompt(lm: LoadedModel, user_text: str, system: str | None = DEFAULT_SYSTEM) -> str:
    """A free prompt formatted like the sweep's prompts (chat template or plain template)."""
    text, _ = format_prompt(lm.tokenizer, PromptParts(system, user_text))
    return text


def _ids(value) -> set[int]:
    """generation_config.eos_token_id is an int, a list, or None depending on the model."""
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple)) else {int(value)}


def eos_ids(lm: LoadedModel) -> set[int]:
    """Tokens that end a generation: the tokenizer's and the generation config's."""
    return {lm.tokenizer.eos_token_id} | _ids(getattr(lm.model.generation_config, "eos_token_id", None))


def prompt_ids(lm: LoadedModel, prompt: str, max_new_tokens: int) -> list[int]:
    """The prompt's tokens, after checking that it and ``max_new_tokens`` fit the model's (capped) context."""
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValidationError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")
    ids = token_ids(lm.tokenizer, prompt)
    from steering.engine.modelfiles import model_context, prompt_token_limit

    limit = prompt_token_limit(model_context(lm))
    if len(ids) + max_new_tokens > limit:
        raise ValidationError(f"the prompt is {len(ids)} tokens long; with {max_new_tokens} new tokens that exceeds "
                              f"the limit of {limit} (the model's context, capped): shorten it")
    return ids


@torch.no_grad()
def generate_stream(
    lm: LoadedModel,
    prompt: str,
    layer: int | None,
    vector: torch.Tensor | None,
    multiplier: float = 0.0,
    max_new_tokens: int = 48,
    mode: str = "answer",
    sample: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
) -> Iterator[str]:
    """Yield the generated text so far after each new token (greedy unless ``sample``)."""
    ids = prompt_ids(lm, prompt, max_new_tokens)
    start = steer_start(len(ids), mode)
    gen = torch.Generator().manual_seed(seed)
    eos = eos_ids(lm)
    out_ids: list[int] = []
    past, step_input, seen = None, torch.tensor([ids], device=lm.device), 0
    for _ in range(max_new_tokens):
        with lm.lock:
            if layer is None or vector is None or multiplier == 0:
                out = lm.model(input_ids=step_input, past_key_values=past, use_cache=True)
            else:
                with steer(lm.blocks[layer], vector, multiplier, start, offset=seen):
                    out = lm.model(input_ids=step_input, past_key_values=past, use_cache=True)
        seen += step_input.shape[1]
        past = out.past_key_values
        logits = out.logits[0, -1].float()
        if sample:
            probs = torch.softmax(logits / max(temperature, 1e-4), dim=-1).cpu()
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        else:
            nxt = int(logits.argmax())
        if nxt in eos:
            break
        out_ids.append(nxt)
        yield lm.tokenizer.decode(out_ids, skip_special_tokens=True)
        step_input = torch.tensor([[nxt]], device=lm.device)


def generate(lm: LoadedModel, prompt: str, layer: int | None, vector, multiplier: float = 0.0, **kw) -> str:
    text = ""
    for text in generate_stream(lm, prompt, layer, vector, multiplier, **kw):
        pass
    return text
