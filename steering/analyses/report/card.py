"""The report card from the stored parts: one row per criterion (its numbers, their sources, the threshold
and a mark), a one-sentence verdict naming the deciding criteria, and the five worst inputs.

A part that is not stored makes its rows "missing" (with what to compute); a number that cannot be
estimated is "undefined" with the reason. Neither is ever shown as a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from steering.analyses.report import criteria as cr
from steering.analyses.report.parts import Parts
from steering.analyses.report.rows import RowSet, setting_of
from steering.core.metrics import anti_steerable

NAMES = {"steers": "steers at all", "chance": "better than chance", "reliable": "reliable per input",
         "letter": "not the answer letter", "stable": "stable", "generalises": "generalises",
         "beats": "beats asking", "affordable": "affordable"}


@dataclass
class Row:
    key: str
    name: str
    mark: str  # criteria.GREEN | AMBER | RED | MISSING | UNDEFINED
    summary: str  # the numbers in words, or "missing: ..." / "undefined (why)"
    threshold: str  # how the mark is decided, with the thresholds' values
    numbers: dict = field(default_factory=dict)  # name -> value (None when undefined)
    sources: dict = field(default_factory=dict)  # name -> the stored file/column or manifest entry it came from
    missing: list = field(default_factory=list)  # parts (parts.LABELS keys) this row waits for


@dataclass
class Card:
    model: str
    dataset: str
    layer: int
    metric: str
    settings: dict
    rows: list[Row]
    verdict: str
    worst: list[dict]  # the five most anti-steerable inputs (letter-free where available)
    worst_by: str  # the column they are ranked by
    setting: dict  # the (layer, multiplier) the shift-based rows use, and why
    missing: list[str]  # parts still to compute
    thresholds: dict
    origin: dict  # part -> store | computed
    seconds: dict  # part -> seconds computed now
    run_dir: str | None

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def lines(self) -> list[str]:
        """One line per criterion (the CLI)."""
        width = max(len(r.name) for r in self.rows)
        return [f"[{r.mark.upper():<9}] {r.name:<{width}}  {r.summary}  ({r.threshold})" for r in self.rows]

    def to_json(self) -> dict:
        return _clean(asdict(self))


def _clean(obj):
    """NaN and inf become None (JSON has no NaN): undefined is never written as a number."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def verdict(rows: list[Row], setting: dict, layer: int) -> str:
    """One sentence that names the deciding criteria."""
    by = {m: [r.name for r in rows if r.mark == m] for m in (cr.RED, cr.AMBER, cr.UNDEFINED, cr.MISSING)}
    missing = f"; not yet computed: {', '.join(by[cr.MISSING])}" if by[cr.MISSING] else ""
    where = f"layer {layer}" + (f", multiplier {setting['multiplier']:g}" if setting.get("recommended") else "")
    if by[cr.RED]:
        return f"Do not trust this vector at {where}: it fails {_join(by[cr.RED])}{missing}."
    if by[cr.MISSING]:
        return (f"Not decided yet: {_join(by[cr.MISSING])} {'is' if len(by[cr.MISSING]) == 1 else 'are'} missing; "
                f"nothing computed so far fails.")
    doubtful = by[cr.AMBER] + [f"{n} (undefined)" for n in by[cr.UNDEFINED]]
    if doubtful:
        return f"Use with care at {where}: {_join(doubtful)} {'is' if len(doubtful) == 1 else 'are'} doubtful, " \
               f"the rest passes."
    return f"Trust it at {where}: every criterion passes."


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def worst_inputs(parts: Parts, n: int = 5) -> tuple[list[dict], str]:
    """The n most anti-steerable inputs, ranked by the letter-free slope where the run has one."""
    if parts.run is None:
        return [], ""
    s = parts.run.steerability
    s = s[s.layer == parts.layer]
    by = "slope_letter_free" if "slope_letter_free" in s else "slope"
    questions = {e.example_id: e.question for e in parts.dataset.examples}
    keep = [c for c in ("example_id", "slope", "slope_letter_free", "slope_swapped", "letter_driven",
                        "null_z_random", "positive", "negative") if c in s]
    out = []
    for r in s.sort_values(by, kind="stable").head(n)[keep].to_dict(orient="records"):
        q = " ".join(questions.get(r["example_id"], "").split())
        r["question"] = q[:200] + ("…" if len(q) > 200 else "")
        r["anti_steerable"] = bool(anti_steerable([r[by]])[0])
        out.append(r)
    return out, by


def build(parts: Parts, th: cr.Thresholds | None = None) -> Card:
    th = th or cr.Thresholds()
    rs = RowSet(parts, th)
    rows = []
    for key, name in NAMES.items():
        mark, summary, threshold, numbers, sources, missing = getattr(rs, key)()
        rows.append(Row(key, name, mark, summary, threshold, numbers, sources, missing))
    setting = setting_of(parts, th)
    worst, by = worst_inputs(parts)
    cfg = parts.cfg
    settings = {"model": cfg.model, "dataset": parts.dataset.name, "layer": parts.layer, "metric": cfg.metric,
                "aggregator": cfg.aggregator, "n_train": cfg.n_train, "n_test": cfg.n_test, "seed": cfg.seed,
                "multipliers": list(cfg.multipliers), "train_variant": cfg.train_variant,
                "test_variant": cfg.test_variant, "balance_train": cfg.balance_train}
    return Card(model=cfg.model, dataset=parts.dataset.name, layer=parts.layer, metric=cfg.metric, settings=settings,
                rows=rows, verdict=verdict(rows, setting, parts.layer), worst=worst, worst_by=by, setting=setting,
                missing=parts.missing(), thresholds=th.as_dict(), origin=dict(parts.origin),
                seconds=dict(parts.seconds), run_dir=str(parts.run.run_dir) if parts.run is not None else None)
