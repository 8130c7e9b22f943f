"""The multiplier ladder on Live steering and Inspect (AppTest on the tiny random-weight model): the ladder
draws one column per multiplier with its scores, and *Find a demo setting* sets the Live sliders to the
setting the backend search chooses."""

from __future__ import annotations

from test_app import app_env, assert_clean, computed_app  # noqa: F401 - app_env: autouse fixture

LADDER = [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0]


def live_page(tokens: int = 4):
    at = computed_app()
    at.switch_page("pages/4_Live_steering.py").run()
    at.session_state["s_live_tokens"] = tokens
    at.run()
    assert_clean(at)
    return at


def ladder_columns(at) -> list[str]:
    """The ladder's column headers, in page order."""
    heads = [m.value for m in at.markdown if m.value.startswith("**") and ("unsteered" in m.value or "×" in m.value)]
    return heads


def test_ladder_renders_one_column_per_multiplier_with_scores():
    at = live_page()
    at.button(key="live_ladder").click().run()
    assert_clean(at)
    heads = ladder_columns(at)
    assert len(heads) == len(LADDER), heads
    assert "unsteered" in heads[3] and "×-8" in heads[0] and "×8" in heads[-1]
    captions = [c.value for c in at.caption if "edit distance" in c.value]
    assert len(captions) == len(LADDER)
    assert "edit distance 0 tokens" in captions[3]  # the unsteered row against itself


def test_find_a_demo_setting_sets_the_live_sliders_to_the_search_result(app_env):  # noqa: F811
    from test_app import N_TEST, N_TRAIN

    from steering.core.config import SweepConfig
    from steering.core.datasets import DEFAULT_DATASET, load_dataset
    from steering.core.prompts import DEMO_PROMPT
    from steering.engine.generate import chat_prompt
    from steering.engine.tiny import tiny_random_model
    from steering.run.demo_search import concept_vectors, find_demo_setting

    at = live_page(tokens=4)
    at.button(key="live_find").click().run()
    assert_clean(at)
    # What the backend search picks for the same model, concept vectors, prompt and decoding.
    lm, ds = tiny_random_model(), load_dataset(DEFAULT_DATASET)
    cfg = SweepConfig(model=lm.name, dataset=ds.name, n_train=N_TRAIN, n_test=N_TEST)
    vectors = concept_vectors(lm, ds, cfg, app_env)
    expected = find_demo_setting(lm, chat_prompt(lm, DEMO_PROMPT), vectors, multipliers=LADDER, max_new_tokens=4)
    assert expected.setting is not None, expected.reason
    assert at.slider(key="w_live_layer").value == expected.setting.layer
    assert at.slider(key="w_live_multiplier").value == expected.setting.multiplier
    assert any("Demo setting: layer" in s.value for s in at.success)
    heads = ladder_columns(at)  # the ladder at the chosen layer is drawn at once
    assert len(heads) == len(LADDER)


def test_inspect_shows_a_ladder_for_the_selected_item():
    at = computed_app()
    at.switch_page("pages/3_Inspect_examples.py").run()
    at.session_state["s_inspect_tokens"] = 3
    at.run()
    at.button(key="inspect_ladder").click().run()
    assert_clean(at)
    assert len(ladder_columns(at)) == len(LADDER)
