"""Every long computation of the dashboard holds the shared model's busy flag for its whole length
(``ui.compute.run``): while the sweep, diagnostics, side effects, entanglement, a study or a live
generation runs, another session asking for a different model is refused with a message.

The backend function each one calls is wrapped to ask for a switch to "other-model" in the middle of
the computation (as another session's sidebar would, ``ui.resources.check_switch``) and to record the
answer; after the computation the same request is allowed again. How a refusal reads in the other
session's page: tests/test_serve.py::test_model_switch_refused_in_the_page.
"""

from __future__ import annotations

import pytest
from test_app import app_env, assert_clean, computed_app, new_app  # noqa: F401 - app_env: autouse fixture

from steering.errors import ModelError
from ui import resources


def ask_for_a_switch(answers: list[str | None]) -> None:
    try:
        resources.check_switch("other-model")
    except ModelError as e:
        answers.append(str(e))
    else:
        answers.append(None)


def spy(monkeypatch, target, name: str, answers: list) -> None:
    """Replace ``target.name`` by a wrapper that asks for a switch before running it."""
    original = getattr(target, name)

    def wrapped(*args, **kwargs):
        ask_for_a_switch(answers)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


def sweep(monkeypatch, answers):
    import ui.runs

    at = new_app()
    spy(monkeypatch, ui.runs, "run_sweep", answers)
    at.button(key="compute_layer").click().run()
    return at


def diagnostics(monkeypatch, answers):
    import ui.diagnostics

    at = computed_app()
    at.switch_page("pages/6_Diagnostics.py").run()
    spy(monkeypatch, ui.diagnostics, "run_sweep", answers)
    at.button(key="diag_compute").click().run()
    return at


def side_effects(monkeypatch, answers):
    from steering.analyses.side_effects import compute

    at = computed_app()
    at.switch_page("pages/8_Side_effects.py").run()
    spy(monkeypatch, compute, "ensure", answers)
    at.button(key="se_compute").click().run()
    return at


def entanglement(monkeypatch, answers):
    from steering.analyses.side_effects import entanglement as ent

    at = computed_app()
    at.switch_page("pages/8_Side_effects.py").run()
    options = at.multiselect(key="w_ent_concepts").options
    at.multiselect(key="w_ent_concepts").set_value([o for o in options if "demo" in o][:2]).run()
    spy(monkeypatch, ent, "entanglement", answers)
    at.button(key="ent_compute").click().run()
    return at


def study(monkeypatch, answers):
    import ui.studies

    at = new_app()
    at.switch_page("pages/7_Study_overview.py").run()
    at.text_input(key="w_form_name").set_value("busy")
    at.text_input(key="w_form_datasets").set_value("power-seeking-demo")
    at.text_input(key="w_form_layer").set_value("1")
    spy(monkeypatch, ui.studies, "run_study", answers)
    at.button(key="w_form_run").click().run()
    return at


def live_generation(monkeypatch, answers):
    import ui.views

    at = computed_app()
    at.switch_page("pages/4_Live_steering.py").run()
    at.session_state["s_live_tokens"] = 3
    at.run()
    original = ui.views.generate_stream

    def stream(*args, **kwargs):  # a generator: its body (the generation) runs while the page iterates it
        ask_for_a_switch(answers)
        yield from original(*args, **kwargs)

    monkeypatch.setattr(ui.views, "generate_stream", stream)
    at.button(key="live_generate").click().run()
    return at


@pytest.mark.parametrize("computation", [sweep, diagnostics, side_effects, entanglement, study, live_generation],
                         ids=lambda f: f.__name__)
def test_a_model_switch_is_refused_while_it_runs(computation, monkeypatch):
    answers: list[str | None] = []
    at = computation(monkeypatch, answers)
    assert_clean(at)  # the computation itself finished
    assert answers, "the computation never reached the backend"
    for answer in answers:  # live generation: one per text (unsteered, steered)
        assert answer is not None, "a switch to another model was allowed in the middle of the computation"
        assert "another session is computing with tiny-random" in answer and "Try again" in answer
    resources.check_switch("other-model")  # once it has finished, the flag is released
