"""Bounded work in the shared-demo mode (issue 17, class 1): the bounds of ``ui.limits`` and where the
pages apply them, the process-wide job queue of ``ui.jobs`` (positions, first come first served, a job
whose session ended is dropped) and how a page waits in it, and the fetch registry's path check."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest
from test_demo_policy import ROOT, demo, messages, open_page, world  # noqa: F401 - demo, world: fixtures

from steering.errors import DatasetError, SweepError

# ---------------------------------------------------------------- bounds (ui.limits)


def test_limits_default_env_override_and_bad_values(monkeypatch):
    from ui.limits import BOUNDS, Limits

    for _, (var, _) in BOUNDS.items():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("STEERING_ALLOW_RAY", raising=False)
    assert Limits.from_env() == Limits(**{k: d for k, (_, d) in BOUNDS.items()}, ray=False)
    monkeypatch.setenv("STEERING_DEMO_MAX_CELLS", "3")
    monkeypatch.setenv("STEERING_ALLOW_RAY", "1")
    lim = Limits.from_env()
    assert (lim.cells, lim.ray) == (3, True)
    monkeypatch.setenv("STEERING_DEMO_MAX_ITEMS", "many")
    with pytest.raises(SweepError, match="^STEERING_DEMO_MAX_ITEMS='many' is not a whole number"):
        Limits.from_env()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 500), limit=st.integers(1, 300), bound=st.sampled_from(["cells", "items", "layers",
                                                                                  "multipliers", "concepts"]))
def test_each_bound_refuses_exactly_what_exceeds_it(n, limit, bound):
    from ui.limits import BOUNDS, Limits

    values = {k: 10**6 for k in BOUNDS} | {bound: limit}
    lim = Limits(**values, ray=False)
    calls = {"cells": lambda: lim.check_study(n, 1, 1, 2, "local"), "items": lambda: lim.check_items(1, n),
             "layers": lambda: lim.check_sweep(n, 1, 1, 2), "multipliers": lambda: lim.check_sweep(1, 1, 1, n),
             "concepts": lambda: lim.check_concepts(n)}
    if n <= limit:
        calls[bound]()
    else:
        with pytest.raises(SweepError, match=f"at most {limit} .*{BOUNDS[bound][0]}"):
            calls[bound]()


def test_ray_only_when_the_operator_allows_it():
    from ui.limits import BOUNDS, Limits

    lim = Limits(**{k: 100 for k in BOUNDS}, ray=False)
    with pytest.raises(SweepError, match="ray executor is not offered.*STEERING_ALLOW_RAY=1"):
        lim.check_study(1, 1, 1, 2, "ray")
    Limits(**{k: 100 for k in BOUNDS}, ray=True).check_study(1, 1, 1, 2, "ray")


def test_demo_bounds_apply_in_the_pages(demo, monkeypatch):
    """A full sweep beyond the layer bound, a forged split size and a too-big study are refused in one line;
    nothing is computed."""
    from ui import demo as policy

    monkeypatch.setenv("STEERING_DEMO_MAX_LAYERS", "1")
    results = demo["base"] / "results-bounds"
    monkeypatch.setenv("STEERING_RESULTS", str(results))
    at = open_page("pages/2_Layer_sweep.py")
    at.button(key="sweep_all").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"the number of layers to sweep is {_n_layers()}; this server allows at "
        "most 1 (the operator sets STEERING_DEMO_MAX_LAYERS)"]
    assert not results.exists() or not [p for p in results.iterdir() if p.name != "logs"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["s_n_train"] = 10**9  # a forged value: reset to the concept's default size
    at.run()
    assert at.session_state["s_n_train"] <= 200
    monkeypatch.setenv("STEERING_DEMO_MAX_CELLS", "4")
    assert policy.executors(["local", "ray"]) == ["local"]
    at.switch_page("pages/7_Study_overview.py").run()
    at.text_input(key="w_form_datasets").set_value("bundled")  # 4 concepts x 5 variant pairs = 20 cells
    at.button(key="w_form_run").click().run()
    assert any("cells of this study" in e.value and "at most 4" in e.value for e in at.error)
    assert not (results / "studies").exists()


def _n_layers() -> int:
    from steering.engine.tiny import tiny_random_model

    return tiny_random_model().n_layers


# ---------------------------------------------------------------- the job queue (ui.jobs)


def test_queue_runs_first_come_first_served_and_reports_positions():
    from ui.jobs import JobQueue

    q = JobQueue(slots=1)
    first = q.take()
    q.wait(first)  # nobody ahead: runs at once
    order, seen = [], {}
    started = threading.Barrier(4)

    def job(name: str, delay: float) -> None:
        time.sleep(delay)  # arrive in the order of the delays
        positions = seen.setdefault(name, [])
        with q.slot(on_wait=positions.append, poll=0.01):
            order.append(name)

    threads = [threading.Thread(target=lambda n=n, d=d: (started.wait(), job(n, d)))
               for n, d in (("b", 0.0), ("c", 0.1), ("d", 0.2))]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)
    assert q.snapshot() == (1, 3) and q.ahead(first) == 0
    q.release(first)
    for t in threads:
        t.join(5)
    assert order == ["b", "c", "d"]
    assert seen["b"][0] == 1 and seen["c"][0] == 2 and seen["d"][0] == 3  # jobs ahead when they arrived
    for name in "bcd":
        assert seen[name] == sorted(seen[name], reverse=True)  # a position only ever moves up
    assert q.snapshot() == (0, 0)


def test_a_queued_job_whose_session_ended_is_dropped_and_the_next_moves_up():
    from ui.jobs import JobDropped, JobQueue

    q = JobQueue(slots=1)
    running = q.take()
    q.wait(running)
    alive = {"gone": True}
    gone = q.take(alive=lambda: alive["gone"])
    behind = q.take()
    assert (q.ahead(gone), q.ahead(behind)) == (1, 2)
    alive["gone"] = False  # its tab was closed
    assert q.ahead(behind) == 1 and q.snapshot() == (1, 1)
    with pytest.raises(JobDropped):
        q.wait(gone, poll=0.01)
    q.release(running)
    q.wait(behind, poll=0.01)  # runs now
    assert q.snapshot() == (1, 0)
    broken = q.take(alive=lambda: 1 / 0)  # an owner that cannot be asked counts as gone
    assert q.snapshot() == (1, 0) and q.ahead(broken) == 0


def test_unbounded_queue_never_waits():
    from ui.jobs import JobQueue

    q = JobQueue(slots=None)
    tickets = [q.take() for _ in range(5)]
    for t in tickets:
        q.wait(t, on_wait=lambda n: pytest.fail("waited"))
    assert q.snapshot() == (5, 0)


def test_page_waits_its_turn_with_a_position_and_runs_when_first(demo, monkeypatch):
    import ui.compute

    monkeypatch.setenv("STEERING_RESULTS", str(demo["base"] / "results-queue"))
    shown: list[int] = []
    original = ui.compute.waiting_line
    monkeypatch.setattr(ui.compute, "waiting_line", lambda n: (shown.append(n), original(n))[1])
    other = ui.compute.QUEUE.take()  # another visitor's job, running
    ui.compute.QUEUE.slots = 1
    ui.compute.QUEUE.wait(other)
    threading.Timer(1.5, ui.compute.QUEUE.release, args=(other,)).start()
    at = open_page(None)
    at.button(key="compute_layer").click().run()
    assert not at.exception and not at.error, messages(at)
    assert shown and set(shown) == {1}  # "waiting: 1 job ahead of yours", then it ran
    assert any(m.label == "Anti-steerable" for m in at.metric)
    assert ui.compute.QUEUE.snapshot() == (0, 0)


def test_a_waiting_job_is_dropped_when_its_session_ends(demo, monkeypatch):
    import ui.compute
    import ui.runs

    monkeypatch.setenv("STEERING_RESULTS", str(demo["base"] / "results-drop"))
    ran = []
    monkeypatch.setattr(ui.runs, "run_sweep", lambda *a, **k: ran.append(1))
    other = ui.compute.QUEUE.take()
    ui.compute.QUEUE.slots = 1
    ui.compute.QUEUE.wait(other)
    try:
        at = open_page(None)
        calls = {"n": 0}

        def alive(*session) -> bool:  # the tab closes while the job waits
            calls["n"] += 1
            return calls["n"] < 3

        monkeypatch.setattr(ui.compute, "session_alive", alive)
        at.button(key="compute_layer").click().run()
        assert not at.exception
        assert not ran  # it never ran
        assert ui.compute.QUEUE.snapshot() == (1, 0)  # and left the queue: only the other job remains
    finally:
        ui.compute.QUEUE.release(other)


# ---------------------------------------------------------------- the fetch registry


@pytest.mark.parametrize("path", [".", "a/..", "/etc/xq-file", "../xq-out.json", "a/../../xq-out.json",
                                  "a/../b/c.json"])
def test_a_registry_path_must_be_a_file_inside_the_cache(tmp_path, path):
    from steering.core import sources as S

    reg = tmp_path / "sources.json"
    reg.write_text(json.dumps({"sources": [{"name": "bad", "url": "file:///nonexistent/x.json", "format": "caa",
                                             "sha256": "0" * 64, "path": path}]}))
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DatasetError, match=f"^bad: registry path '{path}' leaves the cache directory"):
        S.fetch("bad", cache, registry=reg)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []
    assert not (tmp_path / "xq-out.json").exists()
    ok = S.destination(S.Source("ok", "file:///x", "caa", "0" * 64, "b/c.json"), cache)
    assert ok == (cache / "b" / "c.json").resolve()


def test_liveness_is_asked_of_the_ticket_owners_session(monkeypatch):
    """Another visitor's thread drops a closed tab's ticket: the check names the owner's session, not the
    session of the thread that happens to ask."""
    import types

    import ui.compute

    connected = {"a"}
    server = types.SimpleNamespace(is_active_session=lambda sid: sid in connected)
    monkeypatch.setattr(ui.compute, "runtime", types.SimpleNamespace(exists=lambda: True, get_instance=lambda: server))
    assert ui.compute.session_alive("a") and not ui.compute.session_alive("b")
    assert ui.compute.session_alive()  # no script context here (a test thread): nothing to ask, so alive
