"""Start-up: the page paints without torch, the model loads in the background, the launcher preloads it.

The paint test runs the app in a fresh interpreter where importing torch or transformers fails: if any
module the title, intro or settings need imported them, the page would raise instead of showing them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ui import resources

ROOT = Path(__file__).resolve().parents[1]

NO_TORCH_APP = r"""
import importlib.abc, importlib.machinery, json, sys, threading, time

class Refuse(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        # Not in find_spec: that runs under the global import lock, which would stall every thread.
        if threading.current_thread().name.startswith("load "):  # ui.resources' loading thread
            time.sleep(6)  # a load that takes a while, as a real one does: the page must not wait to paint
        raise ImportError(f"{module.__name__} refused by the test: the first paint must not need it")

sys.meta_path.insert(0, Refuse())
from streamlit.testing.v1 import AppTest

at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
print(json.dumps({
    "exceptions": [e.value for e in at.exception],
    "titles": [t.value for t in at.title],
    "sidebar_labels": [w.label for w in at.sidebar.selectbox],
    "sidebar_sliders": [w.label for w in at.sidebar.slider],
    "errors": [e.value for e in at.sidebar.error],
    "loaded": [m for m in ("torch", "transformers") if m in sys.modules],
}))
"""


def test_page_and_settings_paint_without_torch(tmp_path):
    env = {"STEERING_MODEL": "smollm2-135m", "STEERING_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", NO_TORCH_APP, str(ROOT / "app.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert shown["exceptions"] == []
    assert shown["titles"] == ["Steering-vector reliability"]
    assert "Concept (A/B dataset)" in shown["sidebar_labels"] and "Aggregator" in shown["sidebar_labels"]
    assert shown["sidebar_sliders"] == ["Layer"]  # the registry's layer count: drawn before the model loads
    assert any("torch" in e for e in shown["errors"])  # the load itself fails, and says why, in the sidebar
    assert shown["loaded"] == []


@pytest.fixture
def slot(monkeypatch):
    """A fresh model slot whose loads are counted and can be held back or made to fail."""
    monkeypatch.setattr(resources, "_slot", {})
    calls: list[str] = []
    gate = threading.Event()
    fail: set[str] = set()

    def load(name):
        calls.append(name)
        gate.wait(10)
        if name in fail:
            raise OSError(f"cannot read {name}")
        return f"model {name}"

    monkeypatch.setattr(resources, "_load", load)
    return calls, gate, fail


def test_load_runs_once_in_the_background(slot):
    calls, gate, _ = slot
    first = resources.start_loading("m")
    assert not first.done() and not resources.ready("m")  # the caller did not wait for it
    assert resources.start_loading("m") is first  # a second visitor shares the load under way
    gate.set()
    assert first.result(5) == "model m" and resources.ready("m")
    assert resources.start_loading("m") is first and calls == ["m"]


def test_failed_load_is_reported_then_retried(slot):
    calls, gate, fail = slot
    fail.add("bad")
    gate.set()
    with pytest.raises(OSError, match="cannot read bad"):
        resources.start_loading("bad").result(5)
    fail.clear()
    assert resources.start_loading("bad").result(5) == "model bad"  # the next visit tries again
    assert calls == ["bad", "bad"]


def test_switching_model_drops_the_old_one(slot):
    calls, gate, _ = slot
    gate.set()
    resources.start_loading("a").result(5)
    resources.start_loading("b").result(5)
    assert list(resources._slot) == ["b"] and not resources.ready("a")


def test_launcher_preloads_then_hands_over_to_streamlit(slot, monkeypatch):
    calls, gate, _ = slot
    import time

    from streamlit.web import cli

    from ui import launch

    seen = {}
    monkeypatch.setattr(cli, "main", lambda: seen.update(argv=list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.setattr(resources, "painted", threading.Event())
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.delenv("STEERING_DEMO", raising=False)
    launch.main(["--server.port", "1234"])
    assert seen["argv"] == ["streamlit", "run", launch.APP, "--server.port", "1234"]
    time.sleep(0.3)
    assert calls == []  # nobody's page has drawn yet: the load waits (PAINT_WAIT_S at most)
    resources.painted.set()  # a visitor's page has drawn its settings
    deadline = time.monotonic() + 5
    while "tiny-random" not in resources._slot and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "tiny-random" in resources._slot  # the launcher started the load, not a visitor
    gate.set()
    assert resources.start_loading("tiny-random").result(5) == "model tiny-random"
    assert calls == ["tiny-random"]  # and it ran once


def test_launcher_preloads_without_a_visitor(slot, monkeypatch):
    calls, gate, _ = slot
    from ui import launch

    monkeypatch.setattr(resources, "painted", threading.Event())
    monkeypatch.setattr(launch, "PAINT_WAIT_S", 0.05)
    monkeypatch.setattr(launch, "WARM", ())
    gate.set()
    launch._preload("tiny-random")  # returns once loaded
    assert calls == ["tiny-random"] and resources.ready("tiny-random")
