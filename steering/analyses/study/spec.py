"""What a study is: models x datasets x (train variant, test variant) pairs, a layer rule per model, and
the sweep settings every cell shares. Parsing and expansion only: nothing here runs a model.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from steering.core.config import (
    DEFAULT_AGGREGATOR,
    DEFAULT_METRIC,
    DEFAULT_MULTIPLIERS,
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    SweepConfig,
    check_multipliers,
)
from steering.core.datasets import BUNDLED_DIR, list_datasets
from steering.core.names import AGGREGATORS, METRICS
from steering.core.prompts import VARIANTS
from steering.errors import SweepError

REGISTRY_FILE = BUNDLED_DIR / "paper_datasets.json"  # the project's own list (users have no ../shared)
PRESETS = ("paper-figure1", "paper", "bundled")
ID_PAIR = ("BASE", "BASE")
OOD_PAIRS = tuple(("BASE", v) for v in VARIANTS if v != "BASE")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def paper_datasets(figure1_only: bool = False) -> list[str]:
    """Names of the paper's datasets from the project's registry (``figure1_only``: the 13 of Figure 1)."""
    entries = json.loads(REGISTRY_FILE.read_text())["datasets"]
    return [e["name"] for e in entries if e["figure1"] or not figure1_only]


def expand_datasets(spec: str | list[str], data_dir: str | None) -> list[str]:
    """Preset or comma list -> dataset names/paths, in a stable order without duplicates.

    ``paper-figure1`` is always the 13 names (a missing one is reported when loaded);
    ``paper`` is the paper's datasets that the data directory actually holds.
    """
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not parts:
        raise SweepError("no datasets: give names, paths or a preset (paper-figure1, paper, bundled)")
    out: list[str] = []
    for part in parts:
        if part == "paper-figure1":
            out += paper_datasets(figure1_only=True)
        elif part == "paper":
            present = {i.name for i in list_datasets(data_dir, include_bundled=False)} if data_dir else set()
            found = [n for n in paper_datasets() if n in present]
            if not found:
                raise SweepError(f"preset 'paper': none of the paper's datasets is in {data_dir or '(no --data-dir)'}")
            out += found
        elif part == "bundled":
            out += [i.name for i in list_datasets(None) if i.group == "bundled"]
        else:
            out.append(part)
    return list(dict.fromkeys(out))


def parse_variants(spec: str | list[str]) -> list[tuple[str, str]]:
    """'id', 'ood', 'all' or 'TRAIN:TEST' items (comma-separated) -> (train, test) pairs, ID first."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not parts:
        raise SweepError("no prompt variants: use id, ood, all or TRAIN:TEST")
    pairs: list[tuple[str, str]] = []
    for part in parts:
        if part == "id":
            pairs.append(ID_PAIR)
        elif part == "ood":
            pairs += OOD_PAIRS
        elif part == "all":
            pairs += list(itertools.product(VARIANTS, VARIANTS))
        elif ":" in part:
            a, b = (x.strip().upper() for x in part.split(":", 1))
            if a not in VARIANTS or b not in VARIANTS:
                raise SweepError(f"unknown variant pair '{part}': variants are {', '.join(VARIANTS)}")
            pairs.append((a, b))
        else:
            raise SweepError(f"cannot read variants '{part}': use id, ood, all or TRAIN:TEST (e.g. BASE:SYS_POS)")
    return list(dict.fromkeys(pairs))


def check_layer_rule(rule: str) -> str:
    """An index ('12'), a relative depth in [0, 1] with a decimal point ('0.4'), or 'best'.

    Read by pattern, not by float(): 'nan', 'inf', '1e3' and '12.' are refused here, before any model loads.
    """
    rule = str(rule).strip()
    if rule == "best":
        return rule
    if re.fullmatch(r"\d+", rule):
        return rule
    if re.fullmatch(r"\d*\.\d+", rule):
        if not 0 <= float(rule) <= 1:
            raise SweepError(f"relative depth {rule} must lie in [0, 1]")
        return rule
    if re.fullmatch(r"-\d+(\.\d+)?", rule):
        raise SweepError(f"layer index {rule} must be >= 0")
    raise SweepError(f"cannot read layer rule '{rule}': use an index (12), a relative depth (0.4) or best")


def parse_layer_rules(spec: str, models: list[str]) -> dict[str, str]:
    """'0.4' (every model) or 'smollm2-135m=12,gemma3-270m=best' -> {model: rule}."""
    spec = str(spec).strip()
    if "=" not in spec:
        rule = check_layer_rule(spec)
        return {m: rule for m in models}
    rules = {}
    for part in spec.split(","):
        name, _, rule = part.partition("=")
        if name.strip() not in models:
            raise SweepError(f"layer rule for '{name.strip()}', which is not among the study's models")
        if name.strip() in rules:
            raise SweepError(f"two layer rules for model {name.strip()} ('{rules[name.strip()]}' and "
                             f"'{rule.strip()}'): give one rule per model")
        rules[name.strip()] = check_layer_rule(rule)
    missing = [m for m in models if m not in rules]
    if missing:
        raise SweepError(f"no layer rule for model {missing[0]}: give MODEL=RULE for every model")
    return rules


def fixed_layer(rule: str, n_layers: int) -> int | None:
    """The layer an index or relative-depth rule names (None for 'best', which needs the training data)."""
    if rule == "best":
        return None
    if "." in rule:  # relative depth: 0.4 of a 30-layer model is layer 12
        return min(n_layers - 1, int(round(float(rule) * n_layers)))
    layer = int(rule)
    if layer >= n_layers:
        raise SweepError(f"layer {layer} is out of range: the model has layers 0-{n_layers - 1}")
    return layer


@dataclass
class StudySpec:
    name: str
    models: list[str]
    datasets: list[str]  # names (found in data_dir or bundled) or file paths, presets already expanded
    variants: list[tuple[str, str]]
    layer_rules: dict[str, str]  # model -> rule
    data_dir: str | None = None
    multipliers: list[float] = field(default_factory=lambda: list(DEFAULT_MULTIPLIERS))
    n_train: int = DEFAULT_N_TRAIN
    n_test: int = DEFAULT_N_TEST
    seed: int = 0
    aggregator: str = DEFAULT_AGGREGATOR
    balance_train: bool = False
    metric: str = DEFAULT_METRIC

    def validate(self) -> None:
        if not _NAME.match(self.name or ""):
            raise SweepError(f"bad study name '{self.name}': letters, digits, '.', '_' or '-' (at most 64)")
        if not self.models:
            raise SweepError("no models: give at least one, e.g. smollm2-135m")
        if not self.datasets:
            raise SweepError("no datasets: give names, paths or a preset (paper-figure1, paper, bundled)")
        if not self.variants:
            raise SweepError("no prompt variants: use id, ood, all or TRAIN:TEST")
        for m in self.models:
            check_layer_rule(self.layer_rules.get(m, ""))
        if self.aggregator not in AGGREGATORS:
            raise SweepError(f"unknown aggregator '{self.aggregator}': choose one of {', '.join(AGGREGATORS)}")
        if self.metric not in METRICS:
            raise SweepError(f"unknown metric '{self.metric}': choose one of {', '.join(METRICS)}")
        check_multipliers(self.multipliers)
        if self.n_train < 1 or self.n_test < 1:
            raise SweepError("n_train and n_test must be at least 1")
        if self.data_dir and not Path(self.data_dir).expanduser().is_dir():
            raise SweepError(f"{self.data_dir}: data directory does not exist")

    def config(self, model: str, dataset: str, pair: tuple[str, str], layer: int) -> SweepConfig:
        """The sweep of one cell: everything shared, plus its model, dataset, variants and layer."""
        return SweepConfig(
            model=model,
            dataset=dataset,
            data_dir=self.data_dir,
            layers=[layer],
            multipliers=list(self.multipliers),
            n_train=self.n_train,
            n_test=self.n_test,
            seed=self.seed,
            train_variant=pair[0],
            test_variant=pair[1],
            aggregator=self.aggregator,
            metric=self.metric,
            balance_train=self.balance_train,
        )

    def to_json(self) -> dict:
        d = asdict(self)
        d["variants"] = [list(p) for p in self.variants]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "StudySpec":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["variants"] = [tuple(p) for p in d["variants"]]
        return cls(**d)


def make_spec(
    name: str,
    models: str | list[str],
    datasets: str | list[str],
    variants: str | list[str],
    layer: str = "0.4",
    data_dir: str | None = None,
    **shared,
) -> StudySpec:
    """A validated spec from CLI/form text: presets and variant sets expanded, one layer rule per model."""
    model_list = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    spec = StudySpec(
        name=name,
        models=list(dict.fromkeys(model_list)),
        datasets=expand_datasets(datasets, data_dir),
        variants=parse_variants(variants),
        layer_rules=parse_layer_rules(layer, model_list),
        data_dir=data_dir or None,
        **shared,
    )
    spec.validate()
    return spec
