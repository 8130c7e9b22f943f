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
from steering.core.config import SweepConfig
from steering.core.damage import Damaged, describe, log, report, require_types
from steering.core.datasets import Dataset, load_dataset
from steering.core.files import name_lock
from steering.core.results import SweepResult
from steering.core.store import settings_key
from steering.core.usable import run_split, skipped_line
from steering.engine.models import LoadedModel
from steering.errors import DatasetError, StoreError, SweepError

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


DATASET_COLUMNS = study_stats.CELL + ["n", "mean_slope", "median_slope", "frac_anti", "frac_anti_lo",
                                     "frac_anti_hi", "share_ab", "share_yes", "share_unexplained"]
EXAMPLE_COLUMNS = study_stats.EXAMPLE_COLUMNS
NUMERIC = {"layer", "n", "mean_slope", "median_slope", "frac_anti", "frac_anti_lo", "frac_anti_hi", "share_ab",
           "share_yes", "share_unexplained", "slope", "baseline"}  # a table whose numbers are text is damaged


def _check_meta(meta) -> dict:
    """study.json's content, its shape checked (``Damaged`` names what is wrong)."""
    require_types(meta, {"spec": dict, "layers": dict, "cells": list}, "study.json")
    spec = meta["spec"]
    require_types(spec, {"name": str, "models": list, "datasets": list, "variants": list, "layer_rules": dict},
                  "study.json spec")
    if not all(isinstance(m, str) for m in spec["models"] + spec["datasets"]) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in spec["variants"]):
        raise Damaged("study.json spec: models, datasets or variants have the wrong types")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in meta["layers"].values()) \
            or set(meta["layers"]) != set(spec["models"]):
        raise Damaged("study.json: 'layers' is not one integer per model")
    if not isinstance(meta.get("dataset_paths", {}), dict) or not isinstance(meta.get("created", ""), str):
        raise Damaged("study.json: 'dataset_paths' or 'created' has the wrong type")
    try:
        StudySpec.from_json(spec)
    except (TypeError, ValueError, KeyError) as e:
        raise Damaged(f"study.json spec does not read ({type(e).__name__})") from None
    return meta


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / "study.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Damaged(f"study.json does not parse ({type(e).__name__})") from None
    return _check_meta(meta)


def study_problem(path: Path) -> tuple[str, str] | None:
    """(file, what is wrong) when the stored study at ``path`` cannot be served; None when it can. Cheap:
    study.json read and checked, the tables' schemas (not their rows) read."""
    import pyarrow.parquet as pq

    for name in STUDY_FILES:
        if not (path / name).is_file():
            return name, f"{name} is missing"
    try:
        _read_meta(path)
    except Damaged as e:
        return "study.json", str(e)
    except OSError as e:
        return "study.json", f"study.json is unreadable ({e.strerror or type(e).__name__})"
    for name, columns in (("datasets.parquet", DATASET_COLUMNS), ("examples.parquet", EXAMPLE_COLUMNS)):
        try:
            schema = pq.read_schema(path / name)
        except Exception as e:  # noqa: BLE001 - truncated, garbage: any failure to parse is damage
            return name, f"{name} does not parse ({type(e).__name__})"
        missing = [c for c in columns if c not in schema.names]
        if missing:
            return name, f"{name} lacks column(s) {', '.join(missing[:4])}"
        wrong = [c for c in columns if c in NUMERIC and not _is_number(schema.field(c).type)]
        if wrong:
            return name, f"{name}: column(s) {', '.join(wrong[:4])} do not hold numbers"
    return None


def _is_number(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _damaged_message(out: str | Path, name: str, problem: tuple[str, str]) -> str:
    return (f"stored study '{name}' is damaged: {studies_root(out) / name / problem[0]}: {problem[1]}; run the "
            "study again (its stored cells are reused) and the damaged one is moved to quarantine/")


def load_study(out: str | Path, name: str) -> Study:
    path = study_dir(out, name)
    if not path.is_dir():
        known = ", ".join(s["name"] for s in list_studies(out)) or "none yet"
        raise SweepError(f"no stored study '{name}' under {studies_root(out)} (stored: {known})")
    problem = study_problem(path)
    if problem is None:
        reading, tables = "study.json", {}
        try:
            meta = _read_meta(path)
            for reading in ("datasets.parquet", "examples.parquet"):
                tables[reading] = pd.read_parquet(path / reading)
            spec, datasets = StudySpec.from_json(meta["spec"]), tables["datasets.parquet"]
            if "share_why" not in datasets:  # stored when an undefined share read 1.0 or 0: recompute them
                datasets = study_stats.dataset_rows(tables["examples.parquet"], seed=spec.seed)
            return Study(path, spec, meta, datasets, tables["examples.parquet"])
        except Exception as e:  # noqa: BLE001 - rows that do not read: damage the cheap check missed
            problem = (reading, describe(e))
    raise StoreError(_damaged_message(out, name, problem))


def scan_studies(out: str | Path) -> tuple[list[dict], list[dict]]:
    """(summaries of the servable studies under ``out``, newest first; the damaged ones as
    {"name", "path", "file", "reason", "message"}). A damaged study never hides the others."""
    root = studies_root(out)
    found, damaged = [], []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            problem = study_problem(d)
            meta = None
            if problem is None:
                try:
                    meta = _read_meta(d)
                except (Damaged, OSError) as e:  # replaced between the check and this read
                    problem = ("study.json", str(e))
            if problem is not None:
                damaged.append({"name": d.name, "path": str(d), "file": problem[0], "reason": problem[1],
                                "message": _damaged_message(out, d.name, problem)})
                continue
            spec = meta["spec"]
            found.append({"name": d.name, "path": str(d), "created": meta.get("created", ""),
                          "models": spec["models"], "n_datasets": len(spec["datasets"]),
                          "n_pairs": len(spec["variants"]), "n_cells": len(meta.get("cells", [])),
                          "layers": meta.get("layers", {})})
    return sorted(found, key=lambda s: s["created"], reverse=True), damaged


def list_studies(out: str | Path) -> list[dict]:
    """Summaries of the complete, readable studies under ``out``, newest first (``scan_studies`` also
    names the damaged ones)."""
    return scan_studies(out)[0]


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
            old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}-", dir=path.parent))  # unique per writer
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

    def waiting() -> None:
        log.warning(f"another process is writing study '{spec.name}'; waiting for it to finish")
        if progress:
            progress(f"waiting for another writer of study '{spec.name}'", 0, 1)

    # One writer per study name: a second one waits, then finds the first one's study (identical: served;
    # other settings: refused unless replace). Released when the block ends, or the process dies.
    with name_lock(studies_root(out), spec.name, on_wait=waiting):
        if path.exists():
            problem = study_problem(path)
            if problem is not None:  # its spec may be unreadable: keep it aside and compute this one
                report(out, path, problem[1], "stored study", after="the study is computed again")
            else:
                stored = _read_meta(path)["spec"]
                if stored == spec.to_json():
                    return load_study(out, spec.name)
                if not replace:
                    raise SweepError(f"a study named '{spec.name}' exists with other settings: choose another "
                                     "name, or replace it (--replace)")
        return _compute(spec, out, path, progress, executor, models, caches, **executor_options)


def _compute(spec: StudySpec, out: str | Path, path: Path, progress, executor: str,
             models: dict[str, LoadedModel] | None, caches, **executor_options) -> Study:
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
