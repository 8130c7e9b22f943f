"""The benches' target check (bench/bench_common.py): a figure that misses its target makes the bench exit 1.

The benches themselves are too slow for the test suite; their check and exit code are tested here.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "bench_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value, target, higher, ok", [
    (2.4, 2.5, False, True), (2.5, 2.5, False, True), (2.51, 2.5, False, False),  # at most
    (3.2, 3, True, True), (3.0, 3, True, True), (2.99, 3, True, False),  # at least
    (float("nan"), 2.5, False, False), (float("nan"), 3, True, False),  # an unmeasured figure never passes
    (float("inf"), 3, True, True), (float("inf"), 2.5, False, False),
])
def test_check(bench_common, capsys, value, target, higher, ok):
    t = bench_common.Targets()
    assert t.check("ratio", value, target, higher_is_better=higher, unit="x") is ok
    line = capsys.readouterr().out.strip()
    assert line.startswith("ratio: ") and line.endswith(" OK" if ok else " MISS")
    assert f"(target {'>=' if higher else '<='} {target:g}x)" in line
    assert t.misses == ([] if ok else ["ratio"]) and t.exit_code() == (0 if ok else 1)


def test_one_miss_among_several_fails_and_is_named(bench_common, capsys):
    t = bench_common.Targets()
    t.check("a", 1.0, 2.0, higher_is_better=False)
    t.check("b", 9.0, 2.0, higher_is_better=False)
    t.check("c", 5.0, 3.0, higher_is_better=True)
    assert t.exit_code() == 1 and t.misses == ["b"]
    assert capsys.readouterr().out.strip().splitlines()[-1] == "missed 1 target(s): b"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_runs_every_bench_and_fails_if_one_did(tmp_path):
    """The Makefile's bench recipe, with stand-in benches (the real ones take minutes)."""
    fail, ok = tmp_path / "fail.py", tmp_path / "ok.py"
    fail.write_text("import sys; print('first ran'); sys.exit(1)\n")
    ok.write_text("print('second ran')\n")
    run = lambda benches: subprocess.run(  # noqa: E731
        ["make", "-s", "-o", "setup", "bench", f"BENCHES={benches}", f"BIN={Path(sys.executable).parent}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    r = run(f"{fail} {ok}")
    assert r.returncode != 0 and "first ran" in r.stdout and "second ran" in r.stdout  # both ran
    assert f"bench failed: {fail}" in r.stdout
    r = run(str(ok))
    assert r.returncode == 0 and "second ran" in r.stdout

