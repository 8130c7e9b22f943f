"""The multiplier ladder: one prompt at several multipliers on one layer, generated as one batch and
streamed, every row scored by the unsteered model and compared with the unsteered row.

A row is *incoherent* when its perplexity under the unsteered model is above ``PPL_BOUND`` times the
unsteered row's. Why 10: greedy text sits near the model's lowest perplexity (often 1.5-3 for a small
model); fluent text the model would not have picked itself typically scores a few times that, while
broken text (token soup) scores tens to hundreds of times that. The value was set from this reasoning
before any run, not fitted to one; every function takes ``bound``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from steering.core.config import DEFAULT_LADDER, MAX_MULTIPLIER, PPL_BOUND
from steering.engine.batch_generate import Setting, generate_rows, perplexities
from steering.engine.coherence import distinct_2
from steering.engine.models import LoadedModel
from steering.errors import ValidationError

MAX_RUNGS = 16


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two token sequences (insertions, deletions, substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def check_bound(bound: float) -> float:
    if not (math.isfinite(bound) or bound == math.inf) or bound < 1:
        raise ValidationError(f"perplexity bound {bound} must be a number >= 1 (a ratio to the unsteered text's)")
    return float(bound)


def parse_ladder(spec: str | Sequence[float]) -> list[float]:
    """The ladder's multipliers, sorted, with 0 (the unsteered row every other row is compared with) added."""
    if isinstance(spec, str):
        try:
            values = [float(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            # the text is not quoted back: the visitor sees it in the box, and a demo echoes nothing
            raise ValidationError("cannot read the ladder multipliers: use comma-separated numbers, "
                                  "e.g. -8,-4,-2,0,2,4,8") from None
    else:
        values = [float(x) for x in spec]
    bad = [v for v in values if not math.isfinite(v) or abs(v) > MAX_MULTIPLIER]
    if bad:
        raise ValidationError(f"ladder multiplier {bad[0]:g} is not a finite number within ±{MAX_MULTIPLIER:g}")
    values = sorted(set(values) | {0.0})
    if len(values) < 2:
        raise ValidationError("give at least one non-zero ladder multiplier, e.g. -8,-4,-2,0,2,4,8")
    if len(values) > MAX_RUNGS:
        raise ValidationError(f"{len(values)} ladder multipliers; at most {MAX_RUNGS} fit side by side")
    return values


@dataclass(frozen=True)
class Row:
    """One generated row with its scores against the unsteered row."""

    layer: int | None
    multiplier: float
    text: str
    ids: tuple[int, ...]
    perplexity: float | None  # of the generated tokens under the unsteered model; None: no tokens
    ppl_ratio: float | None  # perplexity / the unsteered row's; None when either is undefined
    edit_distance: int  # token edit distance from the unsteered row
    distinct_2: float | None
    incoherent: bool  # ppl_ratio above the bound (False when undefined: an empty row is shown as such)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "multiplier": self.multiplier, "edit_distance": self.edit_distance,
                "perplexity": self.perplexity, "ppl_ratio": self.ppl_ratio, "distinct_2": self.distinct_2,
                "incoherent": self.incoherent, "text": self.text}


def score(lm: LoadedModel, prompt: str, settings: Sequence[Setting], generated: Sequence[Sequence[int]],
          reference: int, bound: float = PPL_BOUND, batch_rows: int = 64) -> list[Row]:
    """Rows for generated token ids: perplexity (batched passes of ``batch_rows``), ratio and edit distance
    to row ``reference`` (the unsteered one), and the incoherent flag."""
    ppl: list[float | None] = []
    for i in range(0, len(generated), batch_rows):
        ppl += perplexities(lm, prompt, generated[i:i + batch_rows])
    ref_ids, ref_ppl = generated[reference], ppl[reference]
    rows = []
    for s, ids, p in zip(settings, generated, ppl):
        ratio = p / ref_ppl if p is not None and ref_ppl is not None else None
        text = lm.tokenizer.decode(list(ids), skip_special_tokens=True)
        rows.append(Row(s.layer, s.multiplier, text, tuple(ids), p, ratio, edit_distance(ids, ref_ids),
                        distinct_2(text), ratio is not None and ratio > bound))
    return rows


@dataclass(frozen=True)
class Update:
    """The ladder so far: after each decoding step the texts; on the last update also the scored rows."""

    step: int
    total: int
    multipliers: list[float]
    texts: list[str]
    rows: list[Row] | None = None


def ladder_stream(lm: LoadedModel, prompt: str, layer: int, vector: torch.Tensor,
                  multipliers: Sequence[float] | str = DEFAULT_LADDER, max_new_tokens: int = 48, seed: int = 0,
                  sample: bool = False, temperature: float = 1.0, mode: str = "answer",
                  bound: float = PPL_BOUND) -> Iterator[Update]:
    """The prompt at every multiplier on ``layer`` as one batched generation, streamed step by step."""
    ms = parse_ladder(multipliers)
    bound = check_bound(bound)
    lm.check_layer(layer)
    settings = [Setting(layer, m) for m in ms]
    generated: list[list[int]] = [[] for _ in ms]
    step = 0
    for step, generated in enumerate(generate_rows(lm, prompt, settings, {layer: vector}, max_new_tokens, mode,
                                                   sample, seed, temperature), start=1):
        yield Update(step, max_new_tokens, ms, [lm.tokenizer.decode(g, skip_special_tokens=True)
                                                for g in generated])
    rows = score(lm, prompt, settings, generated, ms.index(0.0), bound)
    yield Update(step, max_new_tokens, ms, [r.text for r in rows], rows)


def ladder(lm: LoadedModel, prompt: str, layer: int, vector: torch.Tensor,
           multipliers: Sequence[float] | str = DEFAULT_LADDER, max_new_tokens: int = 48, seed: int = 0,
           sample: bool = False, **kw) -> list[Row]:
    """The finished ladder: one row per multiplier (0 included), in increasing multiplier order."""
    last = None
    for last in ladder_stream(lm, prompt, layer, vector, multipliers, max_new_tokens, seed, sample, **kw):
        pass
    assert last is not None and last.rows is not None  # the stream always ends with the scored rows
    return last.rows
