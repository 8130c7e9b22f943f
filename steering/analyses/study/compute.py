"""Studies: many sweeps (models x datasets x variant pairs at one layer per model), gathered into
per-example and per-dataset tables under ``<out>/studies/<name>/``.

Every cell is an ordinary stored run, so the store's reuse and resume apply: running a study again
recomputes nothing that finished, and a vector trained for one test variant serves the others.
Where cells run is the executors' business (``steering.analyses.study.executors``); this module plans and gathers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from steering.analyses.study import executors
from steering.analyses.study import stats as study_stats
from steering.analyses.study.best_layer import choose_best_layer
from steering.analyses.study.spec import StudySpec, fixed_layer
from steering.core import jsonfile
from steering.core.config import SweepConfig
from steering.core.datasets import Dataset, load_dataset
from steering.core.results import SweepResult
from steering.core.store import settings_key
from steering.core.usable import run_split, skipped_line
from steering.engine.models import LoadedModel
from steering.errors import DatasetError, SweepError

STUDY_FILES = ("study.json", "datasets.parquet", "examples.parquet")


@dataclass
class Study:
    path: Path
    spec: StudySpec
    meta: dict  # study.json
    datasets: pd.DataFrame  # a row per model x dataset x variant pair
    examples: pd.DataFrame  # a row per model x dataset x variant pair x example

    @property
    def name(self) -> str:
        return self.spec.name

    def layer(self, model: str) -> int:
        return int(self.meta["layers"][model])

    def dataset_path(self, dataset: str) -> str | None:
        return self.meta.get("dataset_paths", {}).get(dataset)


def studies_root(out: str | Path) -> Path:
    return Path(out) / "studies"


def study_dir(out: str | Path, name: str) -> Path:
    return studies_root(out) / name


def load_study(out: str | Path, name: str) -> Study:
    path = study_dir(out, name)
    if not all((path / f).exists() for f in STUDY_FILES):
        known = ", ".join(s["name"] for s in list_studies(out)) or "none yet"
        raise SweepError(f"no stored study '{name}' under {studies_root(out)} (stored: {known})")
    meta = jsonfile.read(path / "study.json", SweepError)
    spec = _stored_spec(path, meta)
    datasets, examples = pd.read_parquet(path / "datasets.parquet"), pd.read_parquet(path / "examples.parquet")
    if "share_why" not in datasets:  # stored when an undefined share read 1.0 or 0: recompute from the examples
        datasets = study_stats.dataset_rows(examples, seed=spec.seed)
    return Study(path, spec, meta, datasets, examples)


def _stored_spec(path: Path, meta: dict) -> StudySpec:
    try:
        return StudySpec.from_json(meta["spec"])
    except (KeyError, TypeError, AttributeError) as e:  # a study.json that is not one this code wrote
        raise SweepError(f"{path / 'study.json'}: not a study's record ({type(e).__name__}: {e}); "
                         "move the study away or run it again with --replace") from None


def list_studies(out: str | Path) -> list[dict]:
    """Summaries of the complete studies under ``out``, newest first."""
    root = studies_root(out)
    found = []
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and all((d / f).exists() for f in STUDY_FILES):
                meta = jsonfile.read(d / "study.json", SweepError)
                _stored_spec(d, meta)  # a damaged record is named here, not as a KeyError below
                spec = meta["spec"]
                found.append({"name": d.name, "path": str(d), "created": meta.get("created", ""),
                              "models": spec["models"], "n_datasets": len(spec["datasets"]),
                              "n_pairs": len(spec["variants"]), "n_cells": len(meta.get("cells", [])),
                              "layers": meta.get("layers", {})})
    return sorted(found, key=lambda s: s["created"], reverse=True)


def load_datasets(spec: StudySpec) -> dict[str, Dataset]:
    """Every dataset of the spec by its name, checked for the split sizes before any model runs."""
    loaded: dict[str, Dataset] = {}
    for item in spec.datasets:
        ds = load_dataset(item, spec.data_dir)
        if ds.name in loaded and loaded[ds.name].sha256 != ds.sha256:
            raise SweepError(f"two different datasets are both named '{ds.name}': give only one of them")
        run_split(ds, spec.n_train, spec.n_test, spec.seed, spec.balance_train, spec.metric)  # usable items only
        loaded[ds.name] = ds
    return loaded


def resolve_layers(spec: StudySpec, datasets: dict[str, Dataset], pool: dict[str, LoadedModel],
                   progress: Callable[[str, int, int], None] | None = None) -> tuple[dict[str, int], dict]:
    """One layer per model from its rule; ``best`` is chosen on validation halves of the training splits."""
    layers, chosen = {}, {}
    for model in spec.models:
        rule = spec.layer_rules[model]
        lm = executors.get_model(model, pool)
        layer = fixed_layer(rule, lm.n_layers)
        if layer is None:
            cfgs = [spec.config(model, name, (spec.variants[0][0],) * 2, 0) for name in datasets]
            step = (lambda d, t: progress(f"choosing the best layer of {model}", d, t)) if progress else None
            layer, table = choose_best_layer(lm, list(datasets.values()), cfgs, progress=step)
            chosen[model] = table.to_dict(orient="records")
        layers[model] = layer
    return layers, chosen


def plan(spec: StudySpec, datasets: dict[str, Dataset], layers: dict[str, int]) -> list[list[SweepConfig]]:
    """Groups of cells sharing one training: per model, dataset and train variant, its test variants."""
    groups = []
    for model in spec.models:
        for name in datasets:
            by_train: dict[str, list[SweepConfig]] = {}
            for pair in spec.variants:
                by_train.setdefault(pair[0], []).append(spec.config(model, name, pair, layers[model]))
            groups += list(by_train.values())
    return groups


def examples_frame(results: list[SweepResult]) -> pd.DataFrame:
    """A row per cell x example at the cell's layer."""
    parts = []
    for r in results:
        layer = r.config.layers[0]
        s = r.steerability[r.steerability.layer == layer]
        parts.append(s.assign(layer=layer, model=r.manifest["settings"]["model"])[study_stats.EXAMPLE_COLUMNS])
    df = pd.concat(parts, ignore_index=True)
    df["pos_is_yes"] = df.pos_is_yes.astype("boolean")  # None for A/B items
    df["anti_steerable"] = df.anti_steerable.astype(bool)
    return df


def _write(path: Path, meta: dict, frames: dict[str, pd.DataFrame]) -> None:
    """All files in a temporary sibling directory, then one rename (a replaced study is swapped out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        for name, df in frames.items():
            df.to_parquet(tmp / name, index=False)
        (tmp / "study.json").write_text(json.dumps(meta, indent=2, default=str))
        if path.exists():
            old = path.parent / f".old-{path.name}-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cell_notes(manifest: dict) -> dict:
    """What a cell's run left out (unusable items) or served on the reference path, as its study records it."""
    skipped = manifest.get("skipped_items") or []
    return {"n_skipped_items": len(skipped), "skipped_first": skipped_line(skipped) if skipped else "",
            "reference_fallback_items": int(manifest.get("reference_fallback_items") or 0)}


def skipped_lines(meta: dict, model: str | None = None) -> list[str]:
    """One line per model and dataset whose cells skipped unusable items ("<dataset>: skipped N ...")."""
    seen: dict[tuple[str, str], str] = {}
    for c in meta.get("cells", []):
        if c.get("n_skipped_items") and (model is None or c["model"] == model):
            n = c["n_skipped_items"]
            seen.setdefault((c["model"], c["dataset"]), f"{c['dataset']}: skipped {n} unusable item"
                            f"{'s' if n != 1 else ''} (first: {c['skipped_first']})")
    return list(seen.values())


def run_study(spec: StudySpec, out: str | Path = "results", progress: Callable[[str, int, int], None] | None = None,
              executor: str = "local", models: dict[str, LoadedModel] | None = None, replace: bool = False,
              caches=None, **executor_options) -> Study:
    """Run (or resume) a study and store it; a stored study of the same spec is read back as it is."""
    spec.validate()
    path = study_dir(out, spec.name)
    if (path / "study.json").exists():
        meta = jsonfile.read(path / "study.json", SweepError)
        _stored_spec(path, meta)
        stored = meta["spec"]
        if stored == spec.to_json() and all((path / f).exists() for f in STUDY_FILES):
            return load_study(out, spec.name)
        if stored != spec.to_json() and not replace:
            raise SweepError(f"a study named '{spec.name}' exists with other settings: choose another name "
                             "(or replace it)")
    try:
        datasets = load_datasets(spec)
    except DatasetError as e:
        raise SweepError(str(e)) from e
    pool = models if models is not None else {}
    layers, best = resolve_layers(spec, datasets, pool, progress)
    groups = plan(spec, datasets, layers)
    if executor == "local":
        executor_options = {"models": pool, "caches": caches, **executor_options}
    results = [r for g in executors.run_groups(groups, out, datasets, progress, executor, **executor_options)
               for r in g]
    examples = examples_frame(results)
    table = study_stats.dataset_rows(examples, seed=spec.seed)
    cells = [{"model": r.manifest["settings"]["model"], "dataset": r.manifest["settings"]["dataset_name"],
              "train_variant": r.config.train_variant, "test_variant": r.config.test_variant,
              "layer": r.config.layers[0], "run_key": r.manifest["key"], "run_dir": Path(r.run_dir).name,
              "train_key": r.manifest.get("train_key"), "vectors_reused": r.manifest.get("vectors_reused"),
              "seconds": r.manifest.get("seconds"), **cell_notes(r.manifest)} for r in results]
    meta = {"spec": spec.to_json(), "key": settings_key(spec.to_json()), "layers": layers, "best_layer": best,
            "cells": cells, "dataset_paths": {name: ds.path for name, ds in datasets.items()},
            "dataset_sha256": {name: ds.sha256 for name, ds in datasets.items()},
            # the data directory as this process saw it: the dashboard points its sidebar there
            "data_dir_abs": str(Path(spec.data_dir).expanduser().absolute()) if spec.data_dir else "",
            "created": datetime.now(timezone.utc).isoformat(), "executor": executor,
            "versions": results[0].manifest.get("versions", {}) if results else {}}
    _write(path, meta, {"datasets.parquet": table, "examples.parquet": examples})
    return load_study(out, spec.name)
