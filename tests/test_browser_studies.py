"""The study pages in a real browser (headless Chromium against `streamlit run`, tiny random model):
start a study from the Overview form, look at Figure 1 and Generalisation, then open a concept:
Steerability shows the study's stored run (no Compute button). Screenshots as in test_browser.py."""

from __future__ import annotations

import re

import pytest
from test_browser import Shots, _go, _idle, _no_exception, browser, page, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_overview_to_a_concept_to_steerability(page, server, tmp_path):  # noqa: F811
    url, log = server
    shots = Shots(tmp_path / "screenshots")
    page.goto(url)
    page.get_by_role("button", name=re.compile(r"Compute layer \d+")).wait_for()  # the model is loaded
    _go(page, "Study overview")
    page.get_by_text("No study stored yet").wait_for()
    page.get_by_label("Study name").fill("browser-study")
    page.get_by_label("Concepts").fill("corrigibility-demo,optimism-demo,power-seeking-demo")
    page.get_by_role("button", name="Run study").click()
    page.get_by_text("What explains the spread of steerability").wait_for()
    _idle(page)
    _no_exception(page)
    assert "Per-example steerability" in page.inner_text("body")
    shots.take(page, "s1_study_overview")

    _go(page, "Study generalisation")
    page.get_by_text("In distribution vs out of distribution").wait_for()
    page.locator(".js-plotly-plot").nth(3).wait_for()
    _idle(page)
    _no_exception(page)
    shots.take(page, "s2_study_generalisation")

    _go(page, "Study models")
    page.get_by_text("has one model").wait_for()
    _no_exception(page)
    shots.take(page, "s3_study_models")

    _go(page, "Study overview")
    page.get_by_role("button", name="Steerability →").click()
    page.get_by_text("Mean steerability").first.wait_for()
    _idle(page)
    _no_exception(page)
    body = page.inner_text("body")
    assert "Propensity at a chosen multiplier" in body and "from the results store" in body
    assert page.get_by_role("button", name=re.compile(r"Compute layer \d+")).count() == 0
    shots.take(page, "s4_concept_in_steerability")
    assert "Traceback" not in log.read_text()
