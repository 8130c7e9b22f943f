"""The store never gets stuck: damaged runs are quarantined and recomputed, concurrent writers
never fail, killed writers leave nothing that is served or that accumulates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steering.core import store
from steering.core.store import Partial, RunWriter, cleanup, find_run, verify_run

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"model": "m", "dataset_name": "d", "layers": [1], "seed": 0}
CFG = dict(dataset="corrigibility-demo", layers=[1], n_train=6, n_test=5)


def write_run(root: Path, settings: dict = SETTINGS) -> Path:
    """A minimal complete run written through RunWriter (the files the store checks)."""
    import torch

    from steering.core.vectors import VectorMeta, save_vectors

    with RunWriter(root, settings) as w:
        for name in ("propensities.parquet", "steerability.parquet", "train.parquet"):
            w.parquet(name, pd.DataFrame({"x": np.arange(5)}))
        save_vectors(w.path("vectors.safetensors"), {1: torch.ones(4)}, VectorMeta(model="m", layers=[1]))
        w.json("manifest.json", {"settings": settings, "key": store.settings_key(settings)})
        return w.commit()


def test_good_run_verifies_and_records_sizes(tmp_path):
    run = write_run(tmp_path)
    assert verify_run(run) is None and find_run(tmp_path, SETTINGS) == run
    sizes = json.loads((run / "manifest.json").read_text())["files"]
    assert sizes["vectors.safetensors"] == (run / "vectors.safetensors").stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


DAMAGE = {
    "truncated parquet": lambda run: _truncate(run / "steerability.parquet"),
    "invalid manifest": lambda run: (run / "manifest.json").write_text("{not json"),
    "garbage safetensors": lambda run: (run / "vectors.safetensors").write_bytes(os.urandom(300)),
    "missing sidecar": lambda run: (run / "vectors.json").unlink(),
    "wrong key": lambda run: (run / "manifest.json").write_text(json.dumps({"settings": {}, "key": "0" * 16})),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_each_kind_of_damage_is_quarantined_with_its_reason(tmp_path, kind):
    run = write_run(tmp_path)
    DAMAGE[kind](run)
    notes = []
    assert find_run(tmp_path, SETTINGS, on_damage=notes.append) is None
    assert not run.exists() and len(notes) == 1 and "quarantine" in notes[0]
    moved = list((tmp_path / store.QUARANTINE).iterdir())
    assert len(moved) == 1 and (moved[0] / "REASON.txt").read_text().strip()
    assert write_run(tmp_path) == run and verify_run(run) is None  # the settings can be stored again


@pytest.mark.parametrize("kind", ["truncated parquet", "garbage safetensors", "missing sidecar"])
def test_damaged_sweep_is_recomputed(tiny_llama, tmp_path, kind, caplog):
    from steering.run.sweep import SweepConfig, run_sweep

    first = run_sweep(SweepConfig(**CFG), lm=tiny_llama, out=tmp_path)
    DAMAGE[kind](first.run_dir)
    again = run_sweep(SweepConfig(**CFG), lm=tiny_llama, out=tmp_path)
    assert not again.cached and np.allclose(again.steerability.slope, first.steerability.slope, atol=1e-6)
    assert verify_run(again.run_dir) is None
    assert "damaged" in caplog.text and len(list((tmp_path / "quarantine").iterdir())) == 1
    assert run_sweep(SweepConfig(**CFG), lm=tiny_llama, out=tmp_path).cached


def test_two_threads_committing_the_same_run_both_succeed(tmp_path):
    errors, results = [], []
    for trial in range(20):
        root = tmp_path / str(trial)
        barrier = threading.Barrier(2)

        def go():
            try:
                import torch

                from steering.core.vectors import VectorMeta, save_vectors

                w = RunWriter(root, SETTINGS)
                for name in ("propensities.parquet", "steerability.parquet", "train.parquet"):
                    w.parquet(name, pd.DataFrame({"x": np.arange(5)}))
                save_vectors(w.path("vectors.safetensors"), {1: torch.ones(4)}, VectorMeta(model="m", layers=[1]))
                w.json("manifest.json", {"settings": SETTINGS, "key": store.settings_key(SETTINGS)})
                barrier.wait()
                results.append(w.commit())
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=go) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert [p.name for p in root.iterdir()] == [store.run_dir_name(SETTINGS)]  # one run, no leftovers
        assert verify_run(root / store.run_dir_name(SETTINGS)) is None
    assert errors == [] and len(results) == 40


def test_two_writers_saving_the_same_batches_never_fail(tmp_path):
    a, b = Partial(tmp_path, SETTINGS), Partial(tmp_path, SETTINGS)
    errors = []

    def go(p: Partial, clear: bool):
        try:
            for i in range(300):
                p.save_batch(i % 5, [0, 1], np.full((2, 1, 3), float(i % 5)))
                if clear and i % 50 == 49 and i < 250:
                    p.clear()  # the other writer stored the run and removed the partial meanwhile
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go, args=(a, False)), threading.Thread(target=go, args=(b, True))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    batches = a.batches()
    assert all((v == n).all() for n, (_, v) in batches.items())
    assert not [f for f in a.dir.iterdir() if ".tmp" in f.name]


def test_two_threads_running_the_same_sweep_give_one_good_run(tiny_llama, tmp_path):
    from steering.run.sweep import SweepConfig, run_sweep

    errors, results = [], []

    def go():
        try:
            results.append(run_sweep(SweepConfig(**CFG), lm=tiny_llama, out=tmp_path))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".vectors")  # .vectors: the training cache
    assert left == [results[0].run_dir.name]
    assert sorted(r.cached for r in results) == [False, True]  # serialised: the second read the first's run
    assert np.allclose(results[0].steerability.slope, results[1].steerability.slope, atol=1e-6)


KILLED_WRITER = """
import sys, os, numpy as np, pandas as pd
from steering.core.store import RunWriter, Partial
settings = {"model": "m", "dataset_name": "d", "layers": [1], "seed": 0}
w = RunWriter(sys.argv[1], settings)
w.parquet("propensities.parquet", pd.DataFrame({"x": [1, 2]}))
Partial(sys.argv[1], settings).save_batch(0, [0], np.zeros((1, 1, 2)))
open(os.path.join(w.tmp, "half.npz"), "wb").write(b"x")
os.kill(os.getpid(), 9)
"""


def test_a_killed_writer_leaves_nothing_served_and_nothing_that_accumulates(tmp_path):
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT)
        assert proc.returncode == -9
    assert find_run(tmp_path, SETTINGS) is None
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1  # each new writer removed the dead one before it...
    cleanup(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # ...and cleanup the last one
    assert Partial(tmp_path, SETTINGS).batches()  # the resumable work is kept
    write_run(tmp_path)
    cleanup(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [store.run_dir_name(SETTINGS)]  # stale partial removed


def test_a_live_writers_temporary_directory_is_kept(tmp_path):
    w = RunWriter(tmp_path, SETTINGS)
    cleanup(tmp_path)
    assert w.tmp.exists()
    w.abort()


def test_resumed_run_records_total_compute_time(tiny_llama, tmp_path):
    from steering.run.sweep import SweepConfig, run_sweep

    cfg = dict(dataset="corrigibility-demo", layers=[0, 2], n_train=8, n_test=20)

    class Stop(Exception):
        pass

    def stop(phase, done, total):
        if phase == "grid" and done > 2:
            raise Stop

    with pytest.raises(Stop):
        run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path, progress=stop)
    partial = next(p for p in tmp_path.iterdir() if p.name.startswith(".partial-"))
    first_attempt = json.loads((partial / "seconds.json").read_text())["seconds"]
    assert first_attempt > 0
    resumed = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path)
    m = resumed.manifest
    assert m["seconds"] >= first_attempt + m["seconds_this_attempt"] - 0.02
    assert m["seconds"] > m["seconds_this_attempt"]


def test_cli_says_in_one_line_that_a_damaged_run_is_recomputed(tiny_llama, tmp_path, monkeypatch, capsys):
    from steering.cli import main as cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: tiny_llama)
    args = ["sweep", "--dataset", "corrigibility-demo", "--layers", "1", "--n-train", "6", "--n-test", "5",
            "--out", str(tmp_path)]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    run = next(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    (run / "manifest.json").write_text("{broken")
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    notes = [l for l in captured.err.splitlines() if l.startswith("note: ")]
    assert len(notes) == 1 and "damaged" in notes[0] and "quarantine" in notes[0]
    assert "from store" not in captured.out and verify_run(run) is None
    table = lambda text: [l for l in text.splitlines() if l.strip().startswith("1 ")]  # noqa: E731
    assert table(captured.out) == table(first)  # the same numbers again
