"""A stored study as report cards: one row of marks per model and concept (its in-distribution cell), read
from the store; which concepts can be trusted on this model. Missing parts stay missing until computed."""

from __future__ import annotations

import pandas as pd

from steering.analyses.report import criteria as cr
from steering.analyses.report.card import NAMES, Card, build
from steering.analyses.report.parts import Parts, find
from steering.analyses.study.compute import Study
from steering.analyses.study.spec import ID_PAIR
from steering.core.datasets import load_dataset
from steering.errors import DatasetError


def concept_parts(study: Study, out, model: str, dataset: str) -> Parts:
    """The stored parts of one concept's card: the study's in-distribution cell settings at its layer."""
    ds = load_dataset(study.dataset_path(dataset) or dataset, study.spec.data_dir)
    base = study.spec.config(model, ds.name, ID_PAIR, study.layer(model))
    return find(base, ds, study.layer(model), out)


def study_cards(study: Study, out, th: cr.Thresholds | None = None) -> list[tuple[str, str, Card | None, str]]:
    """(model, dataset, card or None, note) for every model and concept of the study."""
    found = []
    for model in study.spec.models:
        for dataset in study.meta.get("dataset_paths", {}):
            try:
                found.append((model, dataset, build(concept_parts(study, out, model, dataset), th), ""))
            except DatasetError as e:  # the study's data moved: say so in its row
                found.append((model, dataset, None, f"dataset not readable: {e}"))
    return found


def table(study: Study, out, th: cr.Thresholds | None = None) -> pd.DataFrame:
    """One row per model x concept: a mark per criterion, the number of parts missing, the verdict."""
    rows = []
    for model, dataset, card, note in study_cards(study, out, th):
        row = {"model": model, "dataset": dataset, "layer": study.layer(model)}
        for key, name in NAMES.items():
            row[name] = card.row(key).mark if card is not None else cr.MISSING
        row["missing"] = len(card.missing) if card is not None else None
        row["verdict"] = card.verdict if card is not None else note
        rows.append(row)
    return pd.DataFrame(rows)
