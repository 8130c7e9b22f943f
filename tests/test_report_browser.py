"""The HTML report in a real browser with the network off: headless Chromium (Playwright) opens report.html
from disk, every request other than the file itself is recorded and refused, and every figure must draw."""

from __future__ import annotations

import re

import pytest
from test_browser import ARGS, CHROMIUM, SHARED_SCREENS
from test_report import ds, full, lm  # noqa: F401 - module fixtures: the card's parts on the tiny model

from steering.analyses.report import html as report_html
from steering.analyses.report.card import build
from steering.analyses.report.figures import card_figures

pytestmark = pytest.mark.browser


def test_html_report_opens_offline_and_draws_every_figure(full, tmp_path):  # noqa: F811
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    parts, _ = full
    card = build(parts)
    figures = card_figures(parts, card)
    assert len(figures) == 4
    _, html_path = report_html.write(card, figures, tmp_path)
    outside = []

    def refuse(route):
        if not route.request.url.startswith("file://"):
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1800})
            context.route("**/*", refuse)
            page = context.new_page()
            page.goto(html_path.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(figures)}",
                                   timeout=60_000)
            drawn = page.locator(".js-plotly-plot").count()
            titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
            body = page.inner_text("body")
            if SHARED_SCREENS:
                SHARED_SCREENS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHARED_SCREENS / "report_html.png"), full_page=True)
        finally:
            browser.close()
    assert outside == []  # no request left the file
    assert drawn == len(figures)
    assert any("against asking" in t for t in titles) and any("null" in t for t in titles)
    assert card.verdict in body and all(r.name in body and r.summary in body for r in card.rows)
    assert not re.search(r"\bnan\b", body, re.I)
