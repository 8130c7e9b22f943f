"""Issue 10's bad inputs through the dashboard (AppTest, tiny random model): each is an in-page message,
never a traceback, and what was computed before is kept; a damaged stored run is quarantined and
computed again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_app
from streamlit.testing.v1 import AppTest
from test_app import app_env  # noqa: F401 - the shared autouse fixture (tiny model, temporary store)

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 10, 8
DEFAULT_GRID = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]


def item(i: int, question: str | None = None) -> dict:
    return {"question": (question or f"Q{i}?") + "\n\nChoices:\n (A) yes\n (B) no",
            "answer_matching_behavior": " (A)" if i % 2 else " (B)"}


def new_app(**state) -> AppTest:
    return test_app.new_app(**{"n_train": N_TRAIN, "n_test": N_TEST, **state})  # this file's smaller split


def computed() -> AppTest:
    at = new_app()
    at.button(key="compute_layer").click().run()
    assert not at.exception and not at.error
    return at


def headline(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def all_errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


@pytest.mark.parametrize("text", ["nan, 0, 1", "inf, 0, 1", "0, 1, 1e309", "nan, nan", "-inf, 0", "1", "1, x"])
def test_bad_multipliers_are_messages_and_results_are_kept(text):
    at = computed()
    before = headline(at)
    at.sidebar.text_input(key="w_multipliers").set_value(text).run()
    assert not at.exception
    assert "multiplier" in all_errors(at)
    assert at.session_state["s_multipliers"] == DEFAULT_GRID
    assert headline(at) == before  # the figures shown are still those of the stored run


def test_negative_seed_forced_into_state_is_a_message():
    at = new_app(seed=-1)
    at.button(key="compute_layer").click().run()
    assert not at.exception
    assert "seed -1" in all_errors(at)


def test_deeply_nested_file_in_the_data_directory_does_not_break_the_page(tmp_path, monkeypatch):
    d = tmp_path / "data"
    d.mkdir()
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (d / "fine.jsonl").write_text("\n".join(json.dumps(item(i)) for i in range(30)))
    monkeypatch.setenv("STEERING_DATA_DIR", str(d))
    at = new_app()
    assert not at.exception and not at.error
    options = at.sidebar.selectbox(key="w_dataset").options
    assert any("fine" in o for o in options) and not any(o.startswith("deep") for o in options)
    at.switch_page("pages/1_Steerability.py").run()
    assert not at.exception


def test_deeply_nested_upload_is_rejected():
    at = computed()
    before = headline(at)
    at.sidebar.file_uploader(key="w_upload").set_value(("deep.json", b"[" * 100000 + b"]" * 100000,
                                                         "application/json")).run()
    assert not at.exception
    assert any("nested too deeply" in e.value for e in at.sidebar.error)
    assert headline(at) == before


def test_megabyte_question_names_the_item():
    items = [item(i) for i in range(24)]
    items[3] = item(3, "word " * 200_000)
    data = "\n".join(json.dumps(i) for i in items).encode()
    at = new_app()
    at.sidebar.file_uploader(key="w_upload").set_value(("long.jsonl", data, "application/json")).run()
    assert not at.exception
    at.session_state["s_n_train"], at.session_state["s_n_test"] = 12, 12
    at.run()
    at.button(key="compute_layer").click().run()
    assert not at.exception
    assert "item long:3 is" in all_errors(at) and "tokens long" in all_errors(at)


@pytest.mark.parametrize("content,words", [(b"GGUF\x03\x00\x00\x00" + b"\x01" * 20, "cannot load model"),
                                            (b"garbage", "cannot load model")])
def test_damaged_model_file_is_a_sidebar_message(tmp_path, content, words):
    f = tmp_path / "m.gguf"
    f.write_bytes(content)
    at = new_app(model=str(f))
    assert not at.exception
    assert words in "\n".join(e.value for e in at.sidebar.error)


def test_offline_model_id_fails_at_once(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    at = new_app(model="no-such-org/no-such-model")
    assert not at.exception and time.time() - t0 < 30
    assert "not in the local Hugging Face cache" in "\n".join(e.value for e in at.sidebar.error)


@pytest.mark.parametrize("damage", ["steerability.parquet", "manifest.json", "vectors.safetensors", "vectors.json"])
def test_damaged_stored_run_is_quarantined_and_can_be_computed_again(app_env, damage):
    at = computed()
    run = next(p for p in app_env.iterdir() if not p.name.startswith("."))
    f = run / damage
    if damage == "vectors.json":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    fresh = new_app()  # another session: the store is asked again
    assert not fresh.exception
    assert any("damaged" in w.value and "quarantine" in w.value for w in fresh.warning)
    assert (app_env / "quarantine").is_dir() and not run.exists()
    fresh.button(key="compute_layer").click().run()
    assert not fresh.exception and not fresh.error
    assert headline(fresh)["Mean steerability"] == headline(at)["Mean steerability"]


def test_huge_free_prompt_on_the_live_page_is_a_message():
    at = computed()
    at.switch_page("pages/4_Live_steering.py").run()
    at.text_area(key="w_live_text").set_value("word " * 5000).run()
    at.button(key="live_generate").click().run()
    assert not at.exception
    assert "tokens long" in all_errors(at) and "limit of 2048" in all_errors(at)
