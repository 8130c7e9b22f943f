"""One prompt generated under several steering settings at once: row i of the batch is steered at its own
(layer, multiplier), and every row is scored by the unsteered model in one teacher-forced pass.

The prompt is the same in every row, so no padding is needed. Its tokens before the first steered
position are computed once and their cache is copied to every row (steering cannot change them: the
design's cost model). Sampling uses one generator per row, each seeded with ``seed``, so row i draws
exactly what a single ``generate_stream`` with that seed draws (batched = unbatched), and rows that differ
only in the multiplier share their random numbers: their differences come from the steering, not the dice.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from steering.engine.generate import eos_ids, prompt_ids
from steering.engine.hooks import steer, steer_start
from steering.engine.models import LoadedModel
from steering.errors import ValidationError

MAX_ROWS = 512  # one batch; a search over more settings runs several


@dataclass(frozen=True)
class Setting:
    """Where and how hard one row is steered; layer None (or multiplier 0) is the unsteered model."""

    layer: int | None
    multiplier: float

    @property
    def steered(self) -> bool:
        return self.layer is not None and self.multiplier != 0


def _check(lm: LoadedModel, settings: Sequence[Setting], vectors: Mapping[int, torch.Tensor]) -> None:
    if not settings:
        raise ValidationError("no steering settings to generate: give at least one multiplier")
    if len(settings) > MAX_ROWS:
        raise ValidationError(f"{len(settings)} settings in one batch; at most {MAX_ROWS}")
    for s in settings:
        if not math.isfinite(s.multiplier):
            raise ValidationError(f"multiplier {s.multiplier} is not a finite number")
        if s.layer is not None:
            lm.check_layer(s.layer)
            if s.steered and s.layer not in vectors:
                raise ValidationError(f"no steering vector for layer {s.layer}")


def _shared_prefix(lm: LoadedModel, ids: list[int], length: int, rows: int):
    """The cache of ``ids[:length]`` (one pass), copied to ``rows`` rows; None when nothing is shared."""
    if length <= 0:
        return None
    with lm.lock:
        past = lm.model(input_ids=torch.tensor([ids[:length]], device=lm.device), use_cache=True).past_key_values
    past.batch_repeat_interleave(rows)
    return past


@torch.no_grad()
def generate_rows(
    lm: LoadedModel,
    prompt: str,
    settings: Sequence[Setting],
    vectors: Mapping[int, torch.Tensor],
    max_new_tokens: int = 48,
    mode: str = "answer",
    sample: bool = False,
    seed: int = 0,
    temperature: float = 1.0,
) -> Iterator[list[list[int]]]:
    """Yield every row's generated token ids so far after each decoding step (greedy unless ``sample``).

    A row that produced an end-of-text token stops growing; the stream ends when every row has.
    The model lock is taken per step, as in ``generate_stream``.
    """
    _check(lm, settings, vectors)
    ids = prompt_ids(lm, prompt, max_new_tokens)
    start = steer_start(len(ids), mode)
    rows = len(settings)
    layers = sorted({s.layer for s in settings if s.steered})
    # Per block, each row's multiplier (0 for rows steered elsewhere: adding 0 * v leaves them exact).
    mults = {l: torch.tensor([s.multiplier if s.steered and s.layer == l else 0.0 for s in settings],
                             dtype=torch.float64) for l in layers}
    vecs = {l: vectors[l].to(lm.device, lm.dtype) for l in layers}
    shared = max(min(start, len(ids) - 1), 0)
    past = _shared_prefix(lm, ids, shared, rows)
    eos = eos_ids(lm)
    filler = next(iter(eos - {None}), 0)  # fed to finished rows; never read back
    gens = [torch.Generator().manual_seed(seed) for _ in range(rows)]
    out: list[list[int]] = [[] for _ in range(rows)]
    live = [True] * rows
    step_input, seen = torch.tensor([ids[shared:]] * rows, device=lm.device), shared
    for _ in range(max_new_tokens):
        with lm.lock, ExitStack() as hooks:
            for l in layers:
                hooks.enter_context(steer(lm.blocks[l], vecs[l], mults[l], start, offset=seen))
            result = lm.model(input_ids=step_input, past_key_values=past, use_cache=True)
        seen += step_input.shape[1]
        past = result.past_key_values
        logits = result.logits[:, -1].float()
        nxt = [filler] * rows
        for i in range(rows):
            if not live[i]:
                continue
            if sample:
                probs = torch.softmax(logits[i] / max(temperature, 1e-4), dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=gens[i]))
            else:
                token = int(logits[i].argmax())
            if token in eos:
                live[i] = False
                continue
            out[i].append(token)
            nxt[i] = token
        yield [list(r) for r in out]
        if not any(live):
            return
        step_input = torch.tensor([[t] for t in nxt], device=lm.device)


@torch.no_grad()
def perplexities(lm: LoadedModel, prompt: str, generated: Sequence[Sequence[int]]) -> list[float | None]:
    """exp(mean NLL) of each row's generated tokens given the prompt, under the unsteered model; None for
    a row with no tokens. One teacher-forced pass over all rows (the prompt's cache shared, rows
    right-padded: a causal model never lets a token see the padding after it).

    Scores the token ids as generated (``coherence.perplexity`` re-tokenises the decoded text instead).
    """
    ids = prompt_ids(lm, prompt, max(1, max((len(g) for g in generated), default=1)))
    rows = [list(g) for g in generated]
    width = max((len(g) for g in rows), default=0)
    if not rows or width == 0:
        return [None] * len(rows)
    shared = len(ids) - 1
    past = _shared_prefix(lm, ids, shared, len(rows))
    x = torch.tensor([[ids[-1]] + g + [ids[-1]] * (width - len(g)) for g in rows], device=lm.device)
    with lm.lock:
        logits = lm.model(input_ids=x, past_key_values=past, use_cache=past is not None).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(2, x[:, 1:, None])[..., 0]  # [rows, width]
    out: list[float | None] = []
    for i, g in enumerate(rows):
        out.append(float(math.exp(float(-logp[i, : len(g)].mean()))) if g else None)
    return out
