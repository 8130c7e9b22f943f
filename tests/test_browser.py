"""The dashboard in a real browser: `streamlit run app.py` driven by headless Chromium (Playwright).

Uses the tiny random-weight model (STEERING_MODEL=tiny-random) and a temporary
results store. Walks every page: compute, move the multiplier slider with the
keyboard, sweep all layers, open an anti-steerable example, generate, export.
Screenshots go to tmp_path/screenshots and are also copied to $STEERING_SCREENS when set.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STEERING_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Optional second copy of the screenshots, for looking at them after the run (STEERING_SCREENS=/tmp/screens).
SHARED_SCREENS = Path(os.environ["STEERING_SCREENS"]) if os.environ.get("STEERING_SCREENS") else None
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not serve within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`) to run browser tests")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    tmp = tmp_path_factory.mktemp("browser")
    port = _free_port()
    env = dict(os.environ, STEERING_MODEL="tiny-random", STEERING_RESULTS=str(tmp / "results"),
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("STEERING_DATA_DIR", None)
    log = tmp / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ui.launch", "--server.port", str(port),  # as `make run` starts it
             "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _new_page(browser, **context):
    # A tall viewport: Streamlit scrolls inside its own container, so this is what a screenshot shows.
    pg = browser.new_context(viewport={"width": 1500, "height": 2200}, **context).new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    return pg


@pytest.fixture(scope="module")
def page(browser):
    return _new_page(browser)


class Shots:
    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        if SHARED_SCREENS:
            SHARED_SCREENS.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if SHARED_SCREENS:
            shutil.copy(path, SHARED_SCREENS / path.name)


def _idle(page) -> None:
    """Wait until the app has finished its script run (no running indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.inner_text("body")


def _go(page, label: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
    _idle(page)


def test_walk_every_page(page, server, tmp_path):
    url, log = server
    shots = Shots(tmp_path / "screenshots")
    page.goto(url)
    page.get_by_role("heading", name="Steering-vector reliability").wait_for()
    compute = page.get_by_role("button", name=re.compile(r"Compute layer \d+"))
    compute.wait_for()  # the sidebar loaded the model
    _no_exception(page)
    shots.take(page, "01_home")

    compute.click()
    page.get_by_text("Mean steerability").first.wait_for()
    _idle(page)
    _no_exception(page)
    assert "95% interval" in page.inner_text("body")
    shots.take(page, "02_home_computed")

    _go(page, "Steerability")
    page.get_by_text("Propensity at a chosen multiplier").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    _no_exception(page)
    shots.take(page, "03_steerability")
    thumb = page.get_by_role("slider", name=re.compile("Multiplier"))
    for target in ("1.1", "1.2", "1.3"):  # 1.0 -> 1.3, off the sweep grid, one key press per rerun
        thumb.focus()  # a rerun may redraw the slider and drop the focus
        thumb.press("ArrowRight")
        page.get_by_text(f"Mean propensity at {target}").wait_for()
        _idle(page)
    page.get_by_text("Computed live from the cached prompt states.").wait_for()
    _idle(page)
    _no_exception(page)
    shots.take(page, "04_steerability_slider")

    _go(page, "Layer sweep")
    page.get_by_role("button", name=re.compile(r"Sweep all \d+ layers")).click()
    page.get_by_text("Largest mean steerability").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()
    _idle(page)
    _no_exception(page)
    shots.take(page, "05_layer_sweep")

    _go(page, "Inspect examples")
    page.get_by_text("Anti-steerable only").click()
    _idle(page)
    page.locator(".token-view").wait_for()
    page.get_by_text("P(A) and P(B) vs multiplier").first.wait_for()
    body = page.inner_text("body")
    assert "anti-steerable" in body and "read token (answer letter)" in body
    _no_exception(page)
    shots.take(page, "06_inspect")

    _go(page, "Live steering")
    page.get_by_role("button", name="Generate", exact=True).click()
    _idle(page)
    page.get_by_text("Steered (layer").wait_for()
    page.get_by_text("distinct-2").first.wait_for()  # coherence beside each generation
    _no_exception(page)
    shots.take(page, "07_live")

    _go(page, "Diagnostics")
    page.get_by_role("button", name=re.compile(r"Compute diagnostics for layer \d+")).click()
    page.get_by_text("Letter-free anti-steerable").wait_for()
    page.locator(".js-plotly-plot").nth(4).wait_for()  # null band, swap, three predictor scatters
    _idle(page)
    _no_exception(page)
    assert "letter-driven" in page.inner_text("body").lower()
    shots.take(page, "09_diagnostics")

    _go(page, "Export")
    page.get_by_text("Reproduce with the backend").wait_for()
    page.get_by_role("button", name="Steerability (CSV)").wait_for()
    _no_exception(page)
    shots.take(page, "08_export")

    _go(page, "Side effects")
    page.get_by_role("button", name="Compute side effects").click()
    page.get_by_text("Trade-off: behaviour gain against side effects").wait_for()
    page.locator(".js-plotly-plot").nth(3).wait_for()
    _idle(page)
    _no_exception(page)
    shots.take(page, "09_side_effects")

    assert "Traceback" not in log.read_text()


def test_dark_theme_and_a_new_session_served_from_the_store(browser, server, tmp_path):
    """A run stored by one session is served to a second browser session (dark colour scheme) from the store:
    no Compute button, and the provenance line says so."""
    url, _ = server
    shots = Shots(tmp_path / "screenshots")
    first = _new_page(browser)
    first.goto(url)
    first.get_by_text("Concept: corrigibility-demo").wait_for()
    _idle(first)
    compute = first.get_by_role("button", name=re.compile(r"Compute layer \d+"))
    if compute.count():  # this test run on its own: the first session stores the run (else test_walk did)
        compute.click()
    first.get_by_text("Mean steerability").first.wait_for()
    _idle(first)
    first.context.close()

    pg = _new_page(browser, color_scheme="dark")
    pg.goto(url)
    pg.get_by_text("Concept: corrigibility-demo").wait_for()
    pg.get_by_text("Mean steerability").first.wait_for()
    _idle(pg)
    assert pg.get_by_role("button", name=re.compile(r"Compute layer \d+")).count() == 0
    assert "served from the results store" in pg.inner_text("body")
    _go(pg, "Steerability")
    pg.locator(".js-plotly-plot").nth(2).wait_for()
    _idle(pg)
    _no_exception(pg)
    shots.take(pg, "09_dark_steerability")
    _go(pg, "Inspect examples")
    pg.locator(".token-view").wait_for()
    pg.get_by_text("P(A) and P(B) vs multiplier").first.wait_for()
    _idle(pg)
    _no_exception(pg)
    shots.take(pg, "10_dark_inspect")
    pg.context.close()
