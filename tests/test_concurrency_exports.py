"""No lost work, continued: imports and exports. A destination that exists is refused in one line
unless ``--force``; two writers racing for one name: one wins, whole, the other is refused; forced
concurrent writes and identical evaluations both succeed (races forced with barriers)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_concurrency import SMALL, WAIT, threads

from steering.cli import main as cli
from steering.core.vectors import VectorMeta, load_vectors, save_vectors
from steering.engine.tiny import tiny_random_model
from steering.errors import ControlVectorError, StoreError
from steering.interop import controlvec
from steering.interop.controlvec import export_gguf, read_vectors, to_safetensors


@pytest.fixture(scope="module")
def lm():
    return tiny_random_model()


@pytest.fixture
def vector_file(tmp_path) -> Path:
    path, _ = save_vectors(tmp_path / "src" / "v.safetensors", {1: torch.arange(8.0), 2: -torch.arange(8.0)},
                           VectorMeta(model="tiny-random", layers=[1, 2]))
    return path


def test_import_to_a_json_destination_is_refused_before_writing(vector_file, tmp_path, capsys):
    with pytest.raises(ControlVectorError, match="same file"):
        to_safetensors(vector_file, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    assert cli.main(["import", str(vector_file), "--to", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and not (tmp_path / "x.json").exists()


def test_import_never_replaces_an_unrelated_sidecar_unless_forced(vector_file, tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text('{"theme": "dark"}')
    assert cli.main(["import", str(vector_file), "--to", str(tmp_path / "settings.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "settings.json exists" in err[0] and "--force" in err[0]
    assert settings.read_text() == '{"theme": "dark"}' and not (tmp_path / "settings.safetensors").exists()
    assert cli.main(["import", str(vector_file), "--to", str(tmp_path / "settings.safetensors"), "--force"]) == 0
    vectors, meta = load_vectors(tmp_path / "settings.safetensors")
    assert meta.layers == [1, 2] and torch.equal(vectors[1], torch.arange(8.0))


def test_two_imports_to_one_destination_one_wins_whole(vector_file, tmp_path, monkeypatch):
    import safetensors.torch

    barrier = threading.Barrier(2, timeout=WAIT)
    real = safetensors.torch.save_file

    def save_then_wait(*args, **kwargs):
        real(*args, **kwargs)
        barrier.wait()  # both checked that the destination was free

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_wait)
    dest = tmp_path / "out" / "v.safetensors"
    errors = threads(lambda: to_safetensors(vector_file, dest), lambda: to_safetensors(vector_file, dest))
    assert sorted(type(e).__name__ for e in errors) == ["NoneType", "StoreError"]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    vectors, meta = load_vectors(dest)
    assert sorted(vectors) == [1, 2] and meta.model == "tiny-random"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["v.json", "v.safetensors"]


@pytest.fixture(scope="module")
def run_dir(lm, tmp_path_factory) -> Path:
    from steering.run.sweep import SweepConfig, run_sweep

    out = tmp_path_factory.mktemp("export_run")
    return run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1, 2], **SMALL), lm=lm, out=out).run_dir


def test_export_gguf_refuses_an_existing_file_unless_forced(run_dir, tmp_path, capsys):
    dest = tmp_path / "cv.gguf"
    dest.write_text("someone else's file")
    assert cli.main(["export", str(run_dir), "--format", "gguf", "--to", str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and dest.read_text() == "someone else's file"
    assert cli.main(["export", str(run_dir), "--format", "gguf", "--to", str(dest), "--force"]) == 0
    assert sorted(read_vectors(dest)[0]) == [1, 2]


def test_two_gguf_exports_at_once(run_dir, tmp_path, monkeypatch):
    barrier = threading.Barrier(2, timeout=WAIT)
    real = controlvec._write_gguf_file

    def write_then_wait(*args):
        real(*args)
        barrier.wait()

    monkeypatch.setattr(controlvec, "_write_gguf_file", write_then_wait)
    dest = tmp_path / "cv.gguf"
    errors = threads(lambda: export_gguf(run_dir, dest), lambda: export_gguf(run_dir, dest))
    assert sorted(type(e).__name__ for e in errors) == ["NoneType", "StoreError"]
    barrier.reset()
    assert threads(lambda: export_gguf(run_dir, dest, force=True), lambda: export_gguf(run_dir, dest, force=True)) \
        == [None, None]
    assert sorted(read_vectors(dest)[0]) == [1, 2] and [p.name for p in tmp_path.iterdir()] == ["cv.gguf"]


@pytest.mark.parametrize("fmt", ["html", "png", "svg"])
def test_figure_exports_never_replace_files_unless_forced(run_dir, tmp_path, monkeypatch, fmt):
    from steering.core.results import load_run
    from steering.interop import static_figures

    # the images themselves need Chromium; what is tested here is where they go
    monkeypatch.setattr(static_figures, "to_images", lambda figs, f: {t: f"<{t}>".encode() for t in figs})
    result = load_run(run_dir)
    dest = tmp_path / ("figs.html" if fmt == "html" else "figs")
    first = static_figures.write_figures(result, 1, fmt, dest)
    before = {p: p.read_bytes() for p in first}
    barrier = threading.Barrier(2, timeout=WAIT)
    errors = threads(*[lambda: (barrier.wait(), static_figures.write_figures(result, 1, fmt, dest))] * 2)
    assert all(isinstance(e, StoreError) for e in errors)
    assert {p: p.read_bytes() for p in first} == before
    assert threads(*[lambda: static_figures.write_figures(result, 1, fmt, dest, force=True)] * 2) == [None, None]
    assert all(p.is_file() and p.stat().st_size > 0 for p in first)
    assert cli.main(["export", str(run_dir), "--format", fmt, "--to", str(dest)]) == 2


def test_two_identical_evaluations_of_an_imported_vector_both_succeed(lm, tmp_path):
    from steering.core.config import SweepConfig
    from steering.core.datasets import load_dataset
    from steering.interop.controlvec import evaluate_vectors

    path, _ = save_vectors(tmp_path / "imp.safetensors", {1: torch.linspace(-1, 1, lm.hidden_size)},
                           VectorMeta(model=lm.name, layers=[1]))
    ds = load_dataset("corrigibility-demo")
    out = tmp_path / "results"
    barrier = threading.Barrier(2, timeout=WAIT)
    results = []

    def go():
        barrier.wait()
        results.append(evaluate_vectors(path, lm, ds, SweepConfig(dataset=ds.name, **SMALL), out=out))

    assert threads(go, go) == [None, None]
    assert sorted(r.cached for r in results) == [False, True]
    assert np.allclose(results[0].steerability.slope, results[1].steerability.slope)
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [results[0].run_dir.name]
