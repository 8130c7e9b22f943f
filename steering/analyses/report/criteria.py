"""The card's thresholds (one place, each with its source) and its marking rules, as pure functions.

A number *at* a threshold counts as reaching it: green when value >= the green threshold (or <= for
lower-is-better numbers); red when it is strictly beyond the red threshold; amber in between. The one
exception is "the interval excludes 0", which is strict by its meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence

import numpy as np

from steering.analyses.side_effects.tradeoff import DEFAULT_KL_BUDGET
from steering.core import metrics
from steering.errors import InputError

GREEN, AMBER, RED = "green", "amber", "red"
MISSING, UNDEFINED = "missing", "undefined"  # not computed yet; cannot be estimated (with a reason)
ORDER = {GREEN: 0, AMBER: 1, UNDEFINED: 1, RED: 2}


def _t(default: float, label: str, source: str) -> float:
    return field(default=default, metadata={"label": label, "source": source})


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the card. Override any: ``Thresholds(anti_green=0.1)`` or ``with_overrides``."""

    level: float = _t(0.95, "confidence level of every interval",
                      "convention: 95% intervals, as everywhere in this project (Wilson, t)")
    beyond_green: float = _t(0.5, "better than chance: share of items beyond their random null band (green at least)",
                             "project choice: most items should move more than under random directions of the "
                             "vector's norm (the null band, z > 1.96)")
    anti_green: float = _t(0.20, "reliable per input: anti-steerable fraction (green at most)",
                           "project choice: four in five inputs move the right way. Tan et al. 2024 found a large "
                           "fraction anti-steerable for many concepts")
    anti_red: float = _t(0.40, "reliable per input: anti-steerable fraction (red above)",
                         "project choice: near the worst concepts of Tan et al. 2024, where close to half of the "
                         "inputs move the wrong way")
    letter_green: float = _t(0.10, "not the answer letter: letter-driven share (green at most)",
                             "project choice: the A/B swap flips at most one slope in ten (Tan et al. 2024: the "
                             "answer letter explains much of the variance of slopes)")
    letter_red: float = _t(0.30, "not the answer letter: letter-driven share (red above)",
                           "project choice: beyond this the vector is largely a letter vector")
    split_cos_green: float = _t(0.90, "stable: cosine of the split-half vectors (green at least)",
                                "project choice: two halves of the training split give nearly the same direction")
    split_cos_red: float = _t(0.70, "stable: cosine of the split-half vectors (red below)",
                              "project choice")
    split_rho_green: float = _t(0.70, "stable: Spearman of the split-half per-item slopes (green at least)",
                                "convention: rho >= 0.7 is a strong rank correlation")
    split_rho_red: float = _t(0.40, "stable: Spearman of the split-half per-item slopes (red below)",
                              "convention: rho < 0.4 is weak")
    ood_green: float = _t(0.50, "generalises: OOD / ID median steerability, every variant (green at least)",
                          "project choice: a prompt change keeps at least half the in-distribution steerability "
                          "(Tan et al. 2024: steerability often drops out of distribution)")
    ood_red: float = _t(0.20, "generalises: OOD / ID median steerability, worst variant (red below)",
                        "project choice: below a fifth the vector barely works under that prompt")
    beats_green: float = _t(0.50, "beats asking: share of items steering moves more than asking (green at least)",
                            "AxBench (Wu et al. 2025) found prompting beats steering on most concepts: green when "
                            "steering wins on at least half the items")
    beats_red: float = _t(0.25, "beats asking: share of items steering moves more than asking (red below)",
                          "project choice: asking wins on three items in four")
    kl_budget: float = _t(DEFAULT_KL_BUDGET, "affordable: KL budget of the recommended setting (nats/token)",
                          "the side effects' default budget (steering.analyses.side_effects.tradeoff)")
    ppl_green: float = _t(1.10, "affordable: perplexity ratio on neutral text (green at most)",
                          "project choice: neutral text at most 10% more surprising ('A Sober Look at Steering "
                          "Vectors': steering degrades the model)")
    ppl_red: float = _t(1.50, "affordable: perplexity ratio on neutral text (red above)", "project choice")
    mc_drop_green: float = _t(0.05, "affordable: capability accuracy lost (green at most)",
                              "project choice: at most 5 points on the unrelated multiple-choice set")
    mc_drop_red: float = _t(0.15, "affordable: capability accuracy lost (red above)", "project choice")

    def __post_init__(self) -> None:
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise InputError(f"threshold {f.name} must be a finite number")
        if not 0 < self.level < 1:
            raise InputError(f"threshold level must lie between 0 and 1, got {self.level}")
        for lo, hi in (("anti_green", "anti_red"), ("letter_green", "letter_red"), ("ppl_green", "ppl_red"),
                       ("mc_drop_green", "mc_drop_red")):
            if getattr(self, lo) > getattr(self, hi):
                raise InputError(f"threshold {lo} ({getattr(self, lo)}) must not exceed {hi} ({getattr(self, hi)})")
        for hi, lo in (("split_cos_green", "split_cos_red"), ("split_rho_green", "split_rho_red"),
                       ("ood_green", "ood_red"), ("beats_green", "beats_red")):
            if getattr(self, hi) < getattr(self, lo):
                raise InputError(f"threshold {hi} ({getattr(self, hi)}) must not be below {lo} ({getattr(self, lo)})")

    def with_overrides(self, values: Mapping[str, float]) -> "Thresholds":
        known = {f.name for f in fields(self)}
        bad = [k for k in values if k not in known]
        if bad:
            raise InputError(f"unknown threshold '{bad[0]}': choose from {', '.join(sorted(known))}")
        return replace(self, **{k: float(v) for k, v in values.items()})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def threshold_table() -> list[dict]:
    """name, default, label and source of every threshold (README, CLI --help, the page)."""
    return [{"name": f.name, "default": f.default, **f.metadata} for f in fields(Thresholds)]


def parse_overrides(items: Sequence[str]) -> dict[str, float]:
    """['anti_green=0.1', ...] -> {name: value}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"cannot read threshold '{item}': write NAME=VALUE, e.g. anti_green=0.1") from None
    return out


# ---------------------------------------------------------------- intervals


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of the proportion k/n (``metrics.wilson_interval``); None for n = 0."""
    return metrics.wilson_interval(k, n, level) if n > 0 else None


def mean_interval(values, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, lo, hi) of the finite values with the t interval of ``metrics.mean_interval``; lo/hi None with
    fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), None, None
    if len(v) < 2:
        return float(v.mean()), None, None
    lo, hi = metrics.mean_interval(v, level)
    return float(v.mean()), lo, hi


# ---------------------------------------------------------------- marks


def higher_better(value: float, green: float, red: float) -> str:
    return GREEN if value >= green else RED if value < red else AMBER


def lower_better(value: float, green: float, red: float) -> str:
    return GREEN if value <= green else RED if value > red else AMBER


def worst(*marks: str) -> str:
    return max(marks, key=lambda m: ORDER[m])


def mark_steers(mean: float, lo: float | None) -> str:
    """Green: the interval of the letter-free mean slope lies above 0; red: the mean is <= 0; else amber."""
    if lo is not None and lo > 0:
        return GREEN
    return RED if mean <= 0 else AMBER


def mark_chance(mean: float, random_hi: float, shuffled_hi: float, beyond: float, th: Thresholds) -> str:
    """Red: the mean slope is inside (or below) the random null range; green: above both null ranges and
    enough items beyond their random null band; amber otherwise."""
    if mean <= random_hi:
        return RED
    return GREEN if mean > shuffled_hi and beyond >= th.beyond_green else AMBER


def mark_reliable(anti_given: float, anti_free: float | None, th: Thresholds) -> str:
    """The worse of the as-given and the letter-free anti-steerable fraction."""
    marks = [lower_better(anti_given, th.anti_green, th.anti_red)]
    if anti_free is not None:
        marks.append(lower_better(anti_free, th.anti_green, th.anti_red))
    return worst(*marks)


def mark_letter(share: float, th: Thresholds) -> str:
    return lower_better(share, th.letter_green, th.letter_red)


def mark_stable(cosine: float, rho: float, th: Thresholds) -> str:
    return worst(higher_better(cosine, th.split_cos_green, th.split_cos_red),
                 higher_better(rho, th.split_rho_green, th.split_rho_red))


def mark_generalises(ratios: Mapping[str, float], th: Thresholds) -> str:
    """On the worst variant's OOD / ID ratio."""
    return higher_better(min(ratios.values()), th.ood_green, th.ood_red)


def mark_beats(share: float, th: Thresholds) -> str:
    return higher_better(share, th.beats_green, th.beats_red)


def mark_affordable(found: bool, ppl_ratio: float, mc_drop: float, th: Thresholds) -> str:
    """Red without a setting inside the KL budget; else the worse of perplexity ratio and capability lost."""
    if not found:
        return RED
    return worst(lower_better(ppl_ratio, th.ppl_green, th.ppl_red),
                 lower_better(mc_drop, th.mc_drop_green, th.mc_drop_red))
