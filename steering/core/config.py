"""Sweep settings: the SweepConfig value, its parsing and validation, and the shared defaults.

The CLI, the dashboard's sidebar and the studies take their defaults and choices
from here, so a default is stated once.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

from steering.core.names import AGGREGATORS, METRICS, POSITION_MODES
from steering.core.prompts import DEFAULT_SYSTEM, VARIANTS
from steering.core.registry import DEFAULT_MODEL
from steering.core.usable import usable
from steering.errors import SweepError  # noqa: F401 - re-exported

DEFAULT_MULTIPLIERS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
MAX_MULTIPLIER = 1e4  # beyond this the steered activations overflow to inf/NaN
DEFAULT_LADDER = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0)  # the live multiplier ladder (generated text)
# A ladder row is incoherent above this many times the unsteered text's perplexity (why: run/ladder.py).
PPL_BOUND = 10.0
DEFAULT_N_TRAIN = 100  # the paper's split sizes
DEFAULT_N_TEST = 50
DEFAULT_AGGREGATOR = "mean"
DEFAULT_METRIC = "logit_diff"
DEFAULT_POSITION = "answer"
DEFAULT_VARIANT = "BASE"
CHOICES = {"aggregator": AGGREGATORS, "metric": METRICS, "position": POSITION_MODES, "variant": VARIANTS}


DIAGNOSTIC_DEFAULTS = {"null": 0, "swap": False, "predictors": False, "split_half": False}



@dataclass
class SweepConfig:
    model: str = DEFAULT_MODEL
    dataset: str = ""
    data_dir: str | None = None
    layers: list[int] | None = None  # None: all layers
    multipliers: list[float] = field(default_factory=lambda: list(DEFAULT_MULTIPLIERS))
    n_train: int = DEFAULT_N_TRAIN
    n_test: int = DEFAULT_N_TEST
    seed: int = 0
    train_variant: str = DEFAULT_VARIANT
    test_variant: str = DEFAULT_VARIANT
    aggregator: str = DEFAULT_AGGREGATOR
    rescale: bool = True
    metric: str = DEFAULT_METRIC
    position: str = DEFAULT_POSITION
    system: str = DEFAULT_SYSTEM
    balance_train: bool = False  # equal positive-is-A and positive-is-B training items
    reference: bool = False  # force the reference path (same numbers, much slower)
    # Diagnostics (steering.run.diagnostics.compute); part of the key only when asked for, so older keys stay valid.
    null: int = 0  # K random and K label-shuffled null vectors
    swap: bool = False  # A/B-swap counterfactual
    predictors: bool = False  # per-example predictors and directional agreement
    split_half: bool = False  # split-half stability of the vector

    @property
    def diagnostics(self) -> bool:
        return bool(self.null or self.swap or self.predictors or self.split_half)

    def validate(self, n_layers: int | None = None) -> None:
        if self.train_variant not in VARIANTS or self.test_variant not in VARIANTS:
            raise SweepError(f"unknown prompt variant: choose from {', '.join(VARIANTS)}")
        if self.aggregator not in AGGREGATORS:
            raise SweepError(f"unknown aggregator '{self.aggregator}': choose one of {', '.join(AGGREGATORS)}")
        if self.metric not in METRICS:
            raise SweepError(f"unknown metric '{self.metric}': choose one of {', '.join(METRICS)}")
        if self.position not in POSITION_MODES:
            raise SweepError(f"unknown position mode '{self.position}': choose one of {', '.join(POSITION_MODES)}")
        check_multipliers(self.multipliers)
        if self.null < 0 or self.null == 1:
            raise SweepError(f"--null {self.null}: use 0 (no null baselines) or at least 2 null vectors of each kind")
        if self.swap and self.metric == "answer_text":
            raise SweepError("--swap needs letters to swap: the answer_text metric shows no (A)/(B) choices")
        if self.n_train < 1 or self.n_test < 1:
            raise SweepError("n_train and n_test must be at least 1")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SweepError(f"seed {self.seed} is not allowed: use a whole number from 0 to {2**63 - 1}")
        if n_layers is not None and self.layers is not None:
            bad = [l for l in self.layers if not 0 <= l < n_layers]
            if bad:
                raise SweepError(f"layer {bad[0]} is out of range: the model has layers 0-{n_layers - 1}")


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """A whole-number setting from the environment variable ``name`` (``default`` when unset or empty).

    Read when used, not at import: a bad value is then one line naming the variable, not a traceback."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SweepError(f"{name}={raw!r} is not a whole number: unset it or give one such as {default}") from None
    if value < minimum:
        raise SweepError(f"{name}={value} is too small: use at least {minimum} (default {default})")
    return value


def add_split_options(parser) -> None:
    """--n-train, --n-test, --seed and --aggregator with the shared defaults (sweep, study, entanglement)."""
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN)
    parser.add_argument("--n-test", type=int, default=DEFAULT_N_TEST)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aggregator", default=DEFAULT_AGGREGATOR, choices=CHOICES["aggregator"])


def settings_of(cfg: SweepConfig, ds, layers: list[int]) -> dict:
    """The settings that determine a run's numbers (its store key); ``ds`` is the loaded Dataset."""
    s = asdict(cfg)
    s.pop("reference")  # both paths give the same numbers (tested)
    s.pop("data_dir")
    for name, default in DIAGNOSTIC_DEFAULTS.items():  # absent when not asked for: old keys unchanged
        if s[name] == default:
            s.pop(name)
    s.update(layers=layers, dataset_name=ds.name, dataset_sha256=ds.sha256)
    skipped = len(usable(ds, cfg.metric).skipped)
    if skipped:  # items left out change the split; absent when none are, so clean datasets keep their keys
        s["n_unusable"] = skipped
    return s


def config_from_settings(settings: dict) -> SweepConfig:
    """A SweepConfig back from stored settings (unknown keys ignored)."""
    return SweepConfig(**{k: v for k, v in settings.items() if k in SweepConfig.__dataclass_fields__})


def parse_layers(spec: str | None, n_layers: int) -> list[int]:
    """'13', '0-29', '1,5,9', 'all' -> sorted layer list, checked against the model."""
    if spec is None or spec.strip() == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise SweepError(f"layer range '{part}' is reversed: write it low-high, e.g. {b}-{a}")
                lo, hi = max(a, 0), min(b, n_layers - 1)  # out-of-range ends are reported below
                layers.update(range(lo, hi + 1))
                layers.update(x for x in (a, b) if not 0 <= x < n_layers)
            elif part:
                layers.add(int(part))
    except ValueError as e:
        if isinstance(e, SweepError):
            raise
        raise SweepError(f"cannot read layers '{spec}': use 13, 0-29, 1,5,9 or all") from None
    if not layers:
        raise SweepError(f"no layers in '{spec}': use 13, 0-29, 1,5,9 or all")
    bad = [l for l in sorted(layers) if not 0 <= l < n_layers]
    if bad:
        raise SweepError(f"layer {bad[0]} is out of range: the model has layers 0-{n_layers - 1}")
    return sorted(layers)


def check_multipliers(values: Sequence[float]) -> None:
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise SweepError(f"multiplier {bad[0]} is not a finite number: use values such as -1.5, 0, 1.5")
    big = [v for v in values if abs(v) > MAX_MULTIPLIER]
    if big:
        raise SweepError(f"multiplier {big[0]:g} is too large: use values between -{MAX_MULTIPLIER:g} and "
                         f"{MAX_MULTIPLIER:g}")
    mean = sum(values) / len(values) if values else 0.0
    if len(set(values)) < 2 or not sum((v - mean) ** 2 for v in values) > 0:  # tiny spreads underflow the fit
        raise SweepError("need at least two distinct multipliers to fit a slope, e.g. -1, 0, 1")


def parse_multipliers(spec: str) -> list[float]:
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SweepError(f"cannot read multipliers '{spec}': use comma-separated numbers, e.g. -1,0,1") from None
    check_multipliers(values)
    return values
