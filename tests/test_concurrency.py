"""No lost work: every writer (runs, studies, imports, exports, fetch) either serialises two writers of
one name or refuses the second with one line, never replaces a file it did not create unless forced,
and lets identical concurrent work both succeed. Races are forced where possible (barriers, events,
widened windows), every wait is bounded. Imports and exports: test_concurrency_exports.py."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steering.analyses.study import compute as study_compute
from steering.analyses.study.compute import list_studies, load_study, run_study
from steering.analyses.study.spec import make_spec
from steering.cli import main as cli
from steering.core import files, sources
from steering.core.files import mkdir_robust, name_lock, publish
from steering.core.store import Partial
from steering.engine.tiny import tiny_random_model
from steering.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(n_train=6, n_test=5)
WAIT = 60  # seconds: every barrier and event gives up after this (a hang fails the test, never stalls it)


@pytest.fixture(scope="module")
def lm():
    return tiny_random_model()


def threads(*targets) -> list:
    """Run the targets in threads; the exceptions they raised, in order (None where one returned)."""
    errors: list = [None] * len(targets)

    def wrap(i, f):
        try:
            f()
        except BaseException as e:  # noqa: BLE001 - collected for the assertions
            errors[i] = e

    ts = [threading.Thread(target=wrap, args=(i, f)) for i, f in enumerate(targets)]
    [t.start() for t in ts]
    [t.join(WAIT * 3) for t in ts]
    assert not any(t.is_alive() for t in ts), "a writer hung"
    return errors


# ---------------------------------------------------------------- locks and files


def test_a_second_holder_of_a_name_waits_and_a_crashed_holder_releases_it(tmp_path):
    inside, order = threading.Event(), []

    def first():
        with name_lock(tmp_path, "x"):
            inside.set()
            threading.Event().wait(0.3)
            order.append("first done")

    def second():
        inside.wait(WAIT)
        with name_lock(tmp_path, "x", on_wait=lambda: order.append("waited")):
            order.append("second in")

    assert threads(first, second) == [None, None]
    assert order == ["waited", "first done", "second in"]
    # a process killed while holding the lock releases it (the OS drops flock with the process)
    code = ("import os, sys; from steering.core.files import name_lock\n"
            f"with name_lock({str(tmp_path)!r}, 'x'):\n    print('held', flush=True); os.kill(os.getpid(), 9)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, cwd=ROOT)
    assert "held" in p.stdout and p.returncode == -9
    with name_lock(tmp_path, "x", on_wait=lambda: pytest.fail("the dead holder still holds the lock")):
        pass


def test_the_lock_is_reentrant_within_a_thread_and_a_read_only_store_is_not_locked(tmp_path):
    with name_lock(tmp_path, "x") as a, name_lock(tmp_path, "x") as b:
        assert a and b
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with name_lock(ro, "x") as held:
            assert held is False
    finally:
        ro.chmod(0o755)


def test_mkdir_survives_the_directory_vanishing_between_its_mkdir_and_its_check(tmp_path, monkeypatch):
    """The `File exists: .partial-...` failure: mkdir(exist_ok=True) found the folder, another writer
    removed it, and the check that it is a folder failed."""
    target = tmp_path / ".partial-run"
    real = os.mkdir

    def racing_mkdir(path, *args, **kwargs):
        if Path(path) == target and target.is_dir() and not racing_mkdir.done:
            racing_mkdir.done = True
            target.rmdir()  # another writer stored the run and cleared its partial folder
            raise FileExistsError(17, "File exists", str(path))
        return real(path, *args, **kwargs)

    racing_mkdir.done = False
    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    target.mkdir()
    with pytest.raises(FileExistsError):  # what Path.mkdir does: the bug this guards against
        target.mkdir(parents=True, exist_ok=True)
    target.mkdir()
    racing_mkdir.done = False
    assert mkdir_robust(target).is_dir() and racing_mkdir.done
    racing_mkdir.done = False
    Partial(tmp_path, {"model": "m", "dataset_name": "d"}).save_batch(0, [0], np.zeros((1, 1, 2)))


def test_publish_claims_a_name_once_when_two_writers_race(tmp_path):
    dest = tmp_path / "out.bin"
    barrier = threading.Barrier(2, timeout=WAIT)

    def writer(data: bytes):
        def write(tmp: Path):
            tmp.write_bytes(data)
            barrier.wait()  # both passed the existence check: only the link can tell them apart

        return lambda: publish(dest, write)

    errors = threads(writer(b"a" * 100), writer(b"b" * 100))
    assert sorted(type(e).__name__ for e in errors) == ["NoneType", "StoreError"]
    assert dest.read_bytes() in (b"a" * 100, b"b" * 100)
    assert "--force" in str(next(e for e in errors if e))
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left behind


def test_forced_concurrent_writes_both_succeed_and_leave_one_whole_file(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    barrier = threading.Barrier(4, timeout=WAIT)

    def writer(data: bytes):
        def write(tmp: Path):
            tmp.write_bytes(data)
            barrier.wait()

        return lambda: publish(dest, write, force=True)

    datas = [bytes([65 + i]) * 5000 for i in range(4)]
    assert threads(*(writer(d) for d in datas)) == [None] * 4
    assert dest.read_bytes() in datas


# ---------------------------------------------------------------- runs


def test_identical_sweeps_at_once_both_succeed_the_second_reads_the_first(lm, tmp_path, monkeypatch):
    from steering.run import sweep

    cfg = dict(dataset="corrigibility-demo", layers=[1], **SMALL)
    computing, computed = threading.Event(), []
    real = sweep.compute_run

    def slow_compute(*args, **kwargs):
        computing.set()
        threading.Event().wait(0.5)  # the other writer arrives while this one computes
        computed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "compute_run", slow_compute)
    results = []

    def first():
        results.append(sweep.run_sweep(sweep.SweepConfig(**cfg), lm=lm, out=tmp_path))

    def second():
        computing.wait(WAIT)
        results.append(sweep.run_sweep(sweep.SweepConfig(**cfg), lm=lm, out=tmp_path))

    assert threads(first, second) == [None, None]
    assert len(computed) == 1 and [r.cached for r in results] == [False, True]
    assert np.allclose(results[0].steerability.slope, results[1].steerability.slope)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".partial-", ".tmp-", "quarantine"))]


# ---------------------------------------------------------------- studies


def _spec(name: str, datasets: str):
    return make_spec(name, "tiny-random", datasets, "id", "1", **SMALL)


def _race_two_studies(lm, out: Path, monkeypatch, second_spec, replace: bool = False):
    """Start study A; while it computes, start B under the same name (it must wait for A's lock)."""
    waiting, inside = threading.Event(), threading.Event()
    real = study_compute.load_datasets

    class Seen(logging.Handler):
        def emit(self, record):
            if "waiting" in record.getMessage():
                waiting.set()

    handler = Seen()
    logging.getLogger("steering.store").addHandler(handler)

    def slow_load(spec):
        if spec.datasets == ["corrigibility-demo"]:
            inside.set()
            assert waiting.wait(WAIT), "the second writer never waited for the first"
        return real(spec)

    monkeypatch.setattr(study_compute, "load_datasets", slow_load)
    pool = {lm.name: lm}
    try:
        return threads(lambda: run_study(_spec("same", "corrigibility-demo"), out, models=pool),
                       lambda: (inside.wait(WAIT), run_study(second_spec, out, models=pool, replace=replace)))
    finally:
        logging.getLogger("steering.store").removeHandler(handler)


def test_two_studies_of_one_name_with_other_concepts_the_second_is_refused_in_one_line(lm, tmp_path, monkeypatch):
    errors = _race_two_studies(lm, tmp_path, monkeypatch, _spec("same", "optimism-demo"))
    assert errors[0] is None and isinstance(errors[1], InputError)
    assert "exists with other settings" in str(errors[1]) and "\n" not in str(errors[1])
    assert load_study(tmp_path, "same").spec.datasets == ["corrigibility-demo"]  # the first one's work is kept


def test_replace_waits_for_the_writer_then_replaces(lm, tmp_path, monkeypatch):
    errors = _race_two_studies(lm, tmp_path, monkeypatch, _spec("same", "optimism-demo"), replace=True)
    assert errors == [None, None]
    assert load_study(tmp_path, "same").spec.datasets == ["optimism-demo"]
    assert not [p for p in (tmp_path / "studies").iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_two_identical_studies_at_once_both_succeed_with_one_stored(lm, tmp_path, monkeypatch):
    errors = _race_two_studies(lm, tmp_path, monkeypatch, _spec("same", "corrigibility-demo"))
    assert errors == [None, None]
    assert [s["name"] for s in list_studies(tmp_path)] == ["same"]


def _study_cmd(out: Path, name: str, datasets: str) -> list[str]:
    return [sys.executable, "-m", "steering", "study", "--name", name, "--models", "tiny-random", "--datasets",
            datasets, "--variants", "id", "--layer", "1", "--n-train", "6", "--n-test", "5", "--out", str(out)]


def test_study_commands_started_together_lose_nothing(tmp_path):
    """The issue's case: two `study --name same` with other concepts at once (both exited 0, one was lost),
    beside a third study of the same cells under another name (identical runs computed concurrently)."""
    a, b = "corrigibility-demo,optimism-demo", "optimism-demo,power-seeking-demo"
    cmds = [_study_cmd(tmp_path, "same", a), _study_cmd(tmp_path, "same", b), _study_cmd(tmp_path, "other", a)]
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes[2] == 0, outs[2][1][-2000:]
    assert sorted(codes[:2]) == [0, 2], [o[1][-2000:] for o in outs]
    loser = outs[codes.index(2)][1].strip().splitlines()
    assert loser[-1].startswith("error: a study named 'same' exists with other settings")
    assert "internal error" not in outs[codes.index(2)][1]
    stored = load_study(tmp_path, "same")
    winner = (a if codes[0] == 0 else b).split(",")
    assert stored.spec.datasets == winner and f"study directory: {stored.path}" in outs[codes.index(0)][0]
    runs = [p for p in tmp_path.iterdir() if "--tiny-random--" in p.name]
    assert len(runs) == len(set(winner) | set(a.split(",")))  # each concept's cell stored once
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".partial-", ".tmp-"))]
    assert not (tmp_path / "quarantine").exists()
    other = load_study(tmp_path, "other")
    if winner == a.split(","):
        pd.testing.assert_frame_equal(other.datasets, stored.datasets)


# ---------------------------------------------------------------- fetch


def _registry(tmp_path: Path, path: str, data: bytes = b'{"question": "q"}\n') -> tuple[Path, str]:
    src = tmp_path / "upstream.jsonl"
    src.write_bytes(data)
    reg = tmp_path / "sources.json"
    reg.write_text(json.dumps({"sources": [{"name": "s", "url": src.as_uri(), "format": "persona", "path": path,
                                            "sha256": hashlib.sha256(data).hexdigest()}]}))
    return reg, hashlib.sha256(data).hexdigest()


def test_concurrent_fetches_of_one_source_all_succeed(tmp_path, monkeypatch):
    reg, sha = _registry(tmp_path, "group/s.jsonl")
    cache = tmp_path / "cache"
    (cache / "group").mkdir(parents=True)
    (cache / "group" / "s.jsonl").write_text("a stale copy")  # every fetch finds it wrong and replaces it
    real = sources._sha256_file

    def slow_sha(path):
        threading.Event().wait(0.05)  # widens the check-then-delete window
        return real(path)

    monkeypatch.setattr(sources, "_sha256_file", slow_sha)
    barrier = threading.Barrier(6, timeout=WAIT)
    got = []
    errors = threads(*[lambda: (barrier.wait(), got.append(sources.fetch("s", cache, registry=reg)))] * 6)
    assert errors == [None] * 6 and len(set(got)) == 1
    assert real(got[0]) == sha
    assert [p.name for p in got[0].parent.iterdir()] == ["s.jsonl"]  # no temporary download left


@pytest.mark.parametrize("path", [".", "./", "/etc/steering-x.jsonl", "../x.jsonl", "a/../../x.jsonl",
                                  "a/..", "..", "a/./../..//x", ".locks/x.lock", "link/x.jsonl"])
def test_a_registry_path_outside_the_cache_is_refused_in_one_line(tmp_path, path):
    reg, _ = _registry(tmp_path, path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "link").symlink_to(tmp_path)  # a link inside the cache that leads out of it
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as e:
        sources.fetch("s", cache, registry=reg)
    assert "\n" not in str(e.value) and "cache directory" in str(e.value)
    assert cache.is_dir() and sorted(p.name for p in tmp_path.rglob("*")) == listing  # nothing written anywhere


def test_fetch_cli_refuses_a_bad_registry_path_in_one_line(tmp_path, capsys):
    reg, _ = _registry(tmp_path, ".")
    assert cli.main(["fetch", "s", "--registry", str(reg), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: s: registry path '.'")


def test_files_module_has_one_lock_file_per_name(tmp_path):
    a, b = files._lock_file(tmp_path, "a/b"), files._lock_file(tmp_path, "a_b")
    assert a != b and a.parent == b.parent == tmp_path / files.LOCKS


def test_many_holders_in_turn_are_exclusive_and_leave_no_lock_files(tmp_path):
    """Lock files are removed on release; a waiter holding a removed file must notice and retry, so at
    most one holder is ever inside."""
    inside, most, rounds = [0], [0], 40
    guard = threading.Lock()

    def worker():
        for _ in range(rounds):
            with name_lock(tmp_path, "x"):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                threading.Event().wait(0.001)
                with guard:
                    inside[0] -= 1

    assert threads(*[worker] * 6) == [None] * 6
    assert most[0] == 1 and list(tmp_path.iterdir()) == []
