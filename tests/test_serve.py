"""Safe to serve: localhost by default; the shared-demo mode hides and enforces the data directory and
model choices (no URL or forged session value gets around it); the optional password; a model switch
never unloads a model another session computes with; CSV exports cannot carry formulas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from steering.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
ITEM = {"question": "Q{i}?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)"}


@pytest.fixture
def allowed_dir(tmp_path) -> Path:
    d = tmp_path / "allowed"
    d.mkdir()
    (d / "operator-concept.jsonl").write_text("\n".join(
        json.dumps({**ITEM, "question": ITEM["question"].format(i=i)}) for i in range(30)))
    return d


@pytest.fixture
def demo_env(tmp_path, monkeypatch, allowed_dir):
    monkeypatch.setenv("STEERING_DEMO", "1")
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_ALLOWED_MODELS", "tiny-random")
    monkeypatch.setenv("STEERING_ALLOWED_DATA_DIRS", str(allowed_dir))
    monkeypatch.setenv("STEERING_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("STEERING_DATA_DIR", raising=False)


def app(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["s_n_train"] = 8
    at.session_state["s_n_test"] = 8
    for k, v in state.items():
        at.session_state[f"s_{k}"] = v
    return at


def widget_keys(at: AppTest) -> set[str]:
    keys = set()
    for kind in ("text_input", "selectbox", "number_input", "slider", "checkbox"):
        keys |= {w.key for w in at.get(kind)}
    return keys


def test_makefile_binds_localhost_unless_serving():
    text = (ROOT / "Makefile").read_text()
    run = re.search(r"^run:.*?\n((?:\t.*\n)+)", text, re.M).group(1)
    serve = re.search(r"^serve:.*?\n((?:\t.*\n)+)", text, re.M).group(1)
    assert "--server.address 127.0.0.1" in run and "STEERING_DEMO" not in run
    assert "--server.address 0.0.0.0" in serve and "STEERING_DEMO=1" in serve


def test_demo_mode_has_no_free_text_data_directory_or_model_path(demo_env, allowed_dir):
    at = app().run()
    assert not at.exception and not at.error
    keys = widget_keys(at)
    assert "w_custom_model" not in keys
    assert not [t for t in at.sidebar.text_input if t.key == "w_data_dir"]  # a choice, not free text
    dirs = at.sidebar.selectbox(key="w_data_dir")
    assert list(dirs.options) == ["bundled data only", str(allowed_dir.resolve())]
    assert list(at.sidebar.selectbox(key="w_model").options) == ["tiny-random"]
    dirs.set_value(str(allowed_dir.resolve())).run()
    assert not at.exception
    labels = at.sidebar.selectbox(key="w_dataset").options
    assert any("operator-concept" in o for o in labels)


def test_open_mode_keeps_the_free_text_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("STEERING_DEMO", raising=False)
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(tmp_path / "results"))
    at = app().run()
    assert not at.exception
    assert at.sidebar.text_input(key="w_data_dir") is not None
    assert "w_custom_model" in widget_keys(at)


@pytest.mark.parametrize("forged", [
    {"model": "/etc/passwd.gguf"}, {"model": "someone/else"}, {"model": "smollm2-135m"},
    {"data_dir": "/etc"}, {"data_dir": "/"}, {"dataset": "/etc/hostname.jsonl"},
])
def test_forged_session_state_cannot_reach_other_models_or_directories(demo_env, forged):
    at = app(**forged).run()
    assert not at.exception
    assert at.session_state["s_model"] == "tiny-random"
    assert at.session_state["s_data_dir"] in ("",)
    assert not str(at.session_state["s_dataset"]).startswith("/etc")
    at.run()  # and on the next run too
    assert at.session_state["s_model"] == "tiny-random"


def test_url_query_parameters_are_ignored(demo_env):
    at = app()
    at.query_params["model"] = "/tmp/evil.gguf"
    at.query_params["data_dir"] = "/etc"
    at.run()
    assert not at.exception
    assert at.session_state["s_model"] == "tiny-random" and at.session_state["s_data_dir"] == ""


def test_forged_custom_model_widget_is_ignored(demo_env):
    at = app()
    at.session_state["w_custom_model"] = "/etc/passwd.gguf"
    at.run()
    assert not at.exception
    assert at.session_state["s_model"] == "tiny-random"


def test_password_gate(demo_env):
    at = app()
    at.secrets["password"] = "open sesame"
    at.run()
    assert not at.exception
    assert "w_model" not in widget_keys(at)  # nothing but the form before the password
    at.text_input(key="w_password").input("wrong")
    at.button[0].click().run()
    assert any("Wrong password" in e.value for e in at.error)
    assert "w_model" not in widget_keys(at)
    at.text_input(key="w_password").input("open sesame")
    at.button[0].click().run()
    assert not at.exception
    assert "w_model" in widget_keys(at)


def test_no_password_set_means_no_gate(demo_env):
    at = app().run()
    assert "w_model" in widget_keys(at)


def test_demo_mode_refuses_an_unlisted_model_in_the_backend(demo_env):
    from ui import demo

    with pytest.raises(ModelError, match="not offered"):
        demo.check_model("smollm2-135m")
    demo.check_model("tiny-random")


def test_model_switch_waits_for_another_sessions_computation():
    from ui import resources

    resources.loaded("model-a")
    with resources.busy("model-a"):
        with pytest.raises(ModelError, match="another session is computing"):
            resources.check_switch("model-b")
        resources.check_switch("model-a")  # the same model is fine
    resources.check_switch("model-b")  # once it has finished, switching is allowed


def test_model_switch_refused_in_the_page(tmp_path, monkeypatch):
    from ui import resources

    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("STEERING_DEMO", raising=False)
    resources.loaded("tiny-random")
    with resources.busy("tiny-random"):
        at = app(model="other/model").run()
    assert not at.exception
    assert any("another session is computing" in e.value for e in at.sidebar.error)


def test_csv_export_neutralises_formulas():
    from ui.export import csv_bytes

    df = pd.DataFrame({"prompt": ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "plain"],
                       "slope": [-1.5, 2.0, -0.25, 0.0, 1.0, 3.0]})
    rows = csv_bytes(df).decode().splitlines()
    cells = [r.split(",")[0] for r in rows[1:]]
    assert all(c.startswith(("'", '"\'')) for c in cells[:5]) and cells[5] == "plain"
    assert [r.rsplit(",", 1)[1] for r in rows[1:]] == ["-1.5", "2.0", "-0.25", "0.0", "1.0", "3.0"]  # numbers stay
