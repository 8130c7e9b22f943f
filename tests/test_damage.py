"""A damaged stored file never breaks the rest: a fuzzer over every kind of stored file (run tables,
vectors and manifest, diagnostics, the vector store, studies, side-effect and entanglement tables) x
every kind of damage (truncated, empty, garbage, wrong schema, wrong types) asserts that the file is
quarantined with a note naming it and recomputed to the same numbers (a study: listed as damaged, one
line naming the file, recomputed when run again), and that every other stored result stays listed and
usable. Imported vector files with damage are one line (an InputError), never an internal error."""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from steering.analyses.side_effects import compute as side
from steering.analyses.side_effects.entanglement import entanglement
from steering.analyses.study.compute import load_study, run_study, scan_studies
from steering.analyses.study.spec import make_spec
from steering.cli import main as cli
from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset
from steering.core.results import load_run
from steering.core.store import QUARANTINE, verify_run
from steering.core.vectors import VectorMeta, save_vectors
from steering.engine.tiny import tiny_random_model
from steering.errors import InputError, StoreError
from steering.interop.controlvec import read_vectors, write_gguf
from steering.run import sweep

SMALL = dict(n_train=6, n_test=5)
RUN_A = dict(dataset="corrigibility-demo", layers=[1], null=2, **SMALL)  # with diagnostics (null.parquet)
RUN_B = dict(dataset="optimism-demo", layers=[1], **SMALL)
SIDE = dict(n_texts=1, text_tokens=8, n_mc=4)
ENT = ["corrigibility-demo", "optimism-demo"]


def _spec(name: str, dataset: str):
    return make_spec(name, "tiny-random", dataset, "id", "1", **SMALL)


@dataclass
class Store:
    out: Path
    lm: object
    a: object  # SweepResult of RUN_A
    b: object  # SweepResult of RUN_B
    b_layer2: pd.DataFrame  # RUN_B at layer 2, computed in another store (the vector-store reference)
    side: pd.DataFrame
    ent: pd.DataFrame
    study: pd.DataFrame  # the "broken" study's dataset table


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Store:
    """One of everything the project stores, computed once; each case damages a copy."""
    lm = tiny_random_model()
    out = tmp_path_factory.mktemp("pristine")
    a = sweep.run_sweep(SweepConfig(**RUN_A), lm=lm, out=out)
    b = sweep.run_sweep(SweepConfig(**RUN_B), lm=lm, out=out)
    other = tmp_path_factory.mktemp("reference")
    b2 = sweep.run_sweep(SweepConfig(**{**RUN_B, "layers": [2]}), lm=lm, out=other).steerability
    df, _, _ = side.ensure(lm, b, load_dataset("optimism-demo"), side.SideEffectsConfig(**SIDE), out)
    ent = entanglement(lm, ENT, 1, SweepConfig(**SMALL), out)
    pool = {lm.name: lm}
    study = run_study(_spec("broken", "corrigibility-demo"), out, models=pool).datasets
    run_study(_spec("keep", "optimism-demo"), out, models=pool)
    return Store(out, lm, a, b, b2, df, ent, study)


# ---------------------------------------------------------------- damage kinds


def _other_type(value):
    """A JSON value of another type than ``value``."""
    if isinstance(value, bool) or value is None:
        return [value]
    if isinstance(value, (int, float)):
        return f"{value}"
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, list):
        return 7
    return ["not", "an", "object"]


def _parquet(path: Path, df: pd.DataFrame) -> None:
    df.to_parquet(path, index=False)


def _safetensors(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))


def _wrong_types(path: Path) -> None:
    if path.suffix == ".parquet":
        _parquet(path, pd.read_parquet(path).astype(str))  # every number now text
    elif path.suffix == ".json":
        obj = json.loads(path.read_text())
        path.write_text(json.dumps({k: _other_type(v) for k, v in obj.items()}))
    else:
        from safetensors.torch import load_file

        _safetensors(path, {k: torch.zeros(2, 2, dtype=torch.int64) for k in load_file(str(path))})


def _wrong_schema(path: Path) -> None:
    if path.suffix == ".parquet":
        _parquet(path, pd.DataFrame({"unrelated": [1, 2, 3]}))
    elif path.suffix == ".json":
        path.write_text(json.dumps({"unrelated": 1}))
    else:
        _safetensors(path, {"weird": torch.zeros(3)})


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(random.Random(p.name).randbytes(max(64, p.stat().st_size))),
    "wrong schema": _wrong_schema,
    "wrong types": _wrong_types,
}


# ---------------------------------------------------------------- what each kind of file is and how it is read


def _vector_store(store: Store, out: Path) -> Path:
    ds = load_dataset("optimism-demo")
    return sweep.vector_store_path(out, sweep.train_key(SweepConfig(**RUN_B), ds, store.lm.name))


def _ent_path(out: Path) -> Path:
    return next((out / "entanglement").glob("*.parquet"))


def _run_file(name: str):
    return lambda store, out: out / store.a.run_dir.name / name


FILES: dict[str, Callable[[Store, Path], Path]] = {
    **{f"run {n}": _run_file(n) for n in ("propensities.parquet", "steerability.parquet", "train.parquet",
                                          "test.parquet", "vectors.safetensors", "vectors.json", "manifest.json",
                                          "null.parquet")},
    "vector store tensors": _vector_store,
    "vector store sidecar": lambda store, out: _vector_store(store, out).with_suffix(".json"),
    "study study.json": lambda store, out: out / "studies" / "broken" / "study.json",
    "study datasets.parquet": lambda store, out: out / "studies" / "broken" / "datasets.parquet",
    "study examples.parquet": lambda store, out: out / "studies" / "broken" / "examples.parquet",
    "side-effect table": lambda store, out: out / store.b.run_dir.name / side.FILE,
    "entanglement table": lambda store, out: _ent_path(out),
}


def _quarantined(out: Path) -> list[str]:
    q = out / QUARANTINE
    return [(d / "REASON.txt").read_text() for d in q.iterdir()] if q.is_dir() else []


def _read_again(kind: str, store: Store, out: Path, target: Path, capsys) -> None:
    """Read the damaged kind of file the way the project does, and check it was quarantined and recomputed."""
    lm = store.lm
    if kind.startswith("run "):
        again = sweep.run_sweep(SweepConfig(**RUN_A), lm=lm, out=out)
        assert not again.cached
        assert np.allclose(again.steerability.slope, store.a.steerability.slope, atol=1e-5)
    elif kind.startswith("vector store"):
        again = sweep.run_sweep(SweepConfig(**{**RUN_B, "layers": [2]}), lm=lm, out=out)
        assert again.manifest["vectors_reused"] is False  # trained again, not read from the damaged entry
        assert np.allclose(again.steerability.slope, store.b_layer2.slope, atol=1e-5)
        assert sweep.read_stored_vectors(out, _vector_store(store, out), lm.n_layers, lm.hidden_size) is not None
    elif kind.startswith("study"):
        found, damaged = scan_studies(out)
        assert [s["name"] for s in found] == ["keep"]
        assert [(d["name"], d["file"]) for d in damaged] == [("broken", target.name)]
        with pytest.raises(StoreError) as e:
            load_study(out, "broken")
        assert str(target) in str(e.value) and "\n" not in str(e.value)
        assert cli.main(["studies", "--out", str(out)]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith("keep ") and len(lines) == 2
        assert lines[1].startswith("broken") and "damaged" in lines[1] and target.name in lines[1]
        pd.testing.assert_frame_equal(run_study(_spec("broken", "corrigibility-demo"), out,
                                                models={lm.name: lm}).datasets, store.study)
    elif kind == "side-effect table":
        result = sweep.run_sweep(SweepConfig(**RUN_B), lm=lm, out=out)
        assert result.cached  # the run itself is not damaged by its side-effect table
        df, _, cached = side.ensure(lm, result, load_dataset("optimism-demo"), side.SideEffectsConfig(**SIDE), out)
        assert not cached
        pd.testing.assert_frame_equal(df, store.side, atol=1e-5)
    elif kind == "entanglement table":
        pd.testing.assert_frame_equal(entanglement(lm, ENT, 1, SweepConfig(**SMALL), out), store.ent, atol=1e-5)
    moved = target.parent if kind.startswith(("run ", "study")) else target  # a run or study moves whole
    assert any(r.splitlines()[0] == str(moved) for r in _quarantined(out)), _quarantined(out)


def _runs(out: Path) -> list[str]:
    return sorted(d.name for d in out.iterdir() if d.is_dir() and "--" in d.name and not d.name.startswith("."))


def _rest_usable(store: Store, out: Path) -> None:
    """Every stored result is still there and reads: runs verify and load, both studies load, B is served."""
    for name in _runs(store.out):
        assert verify_run(out / name) is None, name
        load_run(out / name)
    assert sorted(s["name"] for s in scan_studies(out)[0]) == ["broken", "keep"]
    load_study(out, "keep")
    assert sweep.run_sweep(SweepConfig(**RUN_B), lm=store.lm, out=out).cached


@pytest.fixture
def notes():
    """The store's one-line notes (a handler of its own: the CLI turns the logger's propagation off)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("steering.store")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


CASES = [(f, d) for f in FILES for d in DAMAGE]


@pytest.mark.parametrize("kind,damage", CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_damaged_stored_file_is_quarantined_and_recomputed(pristine, tmp_path, kind, damage, notes, capsys):
    out = tmp_path / "results"
    shutil.copytree(pristine.out, out)
    target = FILES[kind](pristine, out)
    before = target.read_bytes()
    DAMAGE[damage](target)
    assert target.read_bytes() != before, "the damage changed nothing"
    _read_again(kind, pristine, out, target, capsys)
    mine = [n for n in notes if "damaged" in n and "quarantine" in n]
    assert len(mine) == 1 and "\n" not in mine[0]
    named = {"run": pristine.a.run_dir.name, "study": target.name, "vector store sidecar":  # the entry, tensors+sidecar
             str(target.with_suffix(".safetensors").relative_to(out))}
    assert named.get(kind.split()[0], named.get(kind, str(target.relative_to(out)))) in mine[0], mine[0]
    _rest_usable(pristine, out)


def test_a_damaged_run_the_cheap_checks_miss_is_recomputed(pristine, tmp_path, notes):
    """Same sizes, wrong content (a column renamed in place): the full read catches it."""
    out = tmp_path / "results"
    shutil.copytree(pristine.out, out)
    path = out / pristine.a.run_dir.name / "steerability.parquet"
    data = path.read_bytes().replace(b"slope", b"slopf")
    path.write_bytes(data)
    again = sweep.run_sweep(SweepConfig(**RUN_A), lm=pristine.lm, out=out)
    assert not again.cached and np.allclose(again.steerability.slope, pristine.a.steerability.slope, atol=1e-5)
    assert len([n for n in notes if "damaged" in n and "steerability.parquet" in n]) == 1


# ---------------------------------------------------------------- imported vector files: one line


@pytest.fixture
def good_files(tmp_path) -> dict[str, Path]:
    vec, _ = save_vectors(tmp_path / "v.safetensors", {1: torch.ones(8), 3: -torch.ones(8)},
                          VectorMeta(model="tiny-random", layers=[1, 3]))
    gguf = write_gguf(tmp_path / "v.gguf", {1: torch.ones(8), 3: -torch.ones(8)}, VectorMeta(model="m", layers=[1, 3]))
    return {"safetensors": vec, "gguf": gguf}


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "internal error" not in err[0], err
    return err[0]


@pytest.mark.parametrize("fmt", ["safetensors", "gguf"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "pickle"])
def test_a_damaged_import_is_one_line(good_files, tmp_path, capsys, fmt, damage):
    path = good_files[fmt]
    if damage == "pickle":
        torch.save({"layer.1": torch.ones(8)}, path)  # a pickle under the name: never unpickled
    else:
        DAMAGE[damage](path)
    with pytest.raises(InputError) as e:
        read_vectors(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert str(path) in _one_line_error(capsys, ["import", str(path)])


@pytest.mark.parametrize("damage", ["not json", "a list", "wrong types", "wrong schema"])
def test_a_damaged_sidecar_is_one_line(good_files, capsys, damage):
    side = good_files["safetensors"].with_suffix(".json")
    if damage == "not json":
        side.write_text("{nope")
    elif damage == "a list":
        side.write_text("[1, 2]")
    elif damage == "wrong types":
        _wrong_types(side)
    else:
        _wrong_schema(side)
    with pytest.raises(InputError) as e:
        read_vectors(good_files["safetensors"])
    assert side.name in str(e.value)
    _one_line_error(capsys, ["import", str(good_files["safetensors"])])


JSON = hs.recursive(hs.none() | hs.booleans() | hs.integers(-3, 40) | hs.floats(allow_nan=False) | hs.text(max_size=5),
                    lambda c: hs.lists(c, max_size=3) | hs.dictionaries(hs.text(max_size=4), c, max_size=3),
                    max_leaves=6)
KEYS = ["model", "layers", "read_position", "aggregator", "rescaled", "norms", "dataset", "dataset_sha256",
        "split", "n_train", "seed", "variant", "hidden_size", "unknown"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sidecar=hs.dictionaries(hs.sampled_from(KEYS), JSON, max_size=8))
def test_any_sidecar_reads_with_the_right_types_or_is_one_line(good_files, sidecar):
    """Property: whatever JSON a sidecar holds, reading it gives a VectorMeta whose fields have their
    declared types, or an InputError naming the sidecar; nothing else escapes."""
    side = good_files["safetensors"].with_suffix(".json")
    side.write_text(json.dumps({"model": "m", "layers": [1, 3], **sidecar}))
    try:
        _, info = read_vectors(good_files["safetensors"])
    except InputError as e:
        assert side.name in str(e) and "\n" not in str(e)
        return
    meta = info["vector_meta"]
    assert isinstance(meta["model"], str) and all(isinstance(x, int) for x in meta["layers"])
    assert isinstance(meta["rescaled"], bool) and isinstance(meta["hidden_size"], int)
    assert all(isinstance(v, (int, float)) for v in meta["norms"].values())


# ---------------------------------------------------------------- the dashboard with one damaged study


@pytest.mark.parametrize("page", ["pages/7_Study_overview.py", "pages/7_Study_generalisation.py",
                                  "pages/7_Study_models.py", "pages/8_Side_effects.py"])
def test_study_pages_with_a_damaged_study_keep_working_and_list_the_rest(pristine, tmp_path, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    results = tmp_path / "results"
    shutil.copytree(pristine.out, results)
    (results / "studies" / "broken" / "study.json").write_text("{truncated")
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(results))
    monkeypatch.delenv("STEERING_DATA_DIR", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.session_state["s_n_train"], at.session_state["s_n_test"] = SMALL["n_train"], SMALL["n_test"]
    at.run()
    at = at.switch_page(page).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    if page.startswith("pages/8"):  # the entanglement section still offers the readable study
        at.radio(key="w_ent_source").set_value("a stored study").run()
        assert not at.exception and at.selectbox(key="w_ent_study").options == ["keep"]
        # 'keep' has one concept: the section says so (about that study, nothing about the damaged one)
        assert [e.value for e in at.error] == ["study 'keep' has fewer than two concepts: entanglement needs at "
                                               "least two"]
        return
    assert at.selectbox(key="w_study").value == "keep" and len(at.selectbox(key="w_study").options) == 1
    notes = [w.value for w in at.warning if "broken" in w.value]
    assert len(notes) == 1 and "study.json" in notes[0] and "\n" not in notes[0]
    if page.endswith("overview.py"):
        name = at.text_input(key="w_form_name").value  # the form to start a new study is there
        assert name and name != "my-study"  # with a default of its own for each visitor
        assert len(at.get("plotly_chart")) == 2  # the readable study's figures
