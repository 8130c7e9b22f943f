"""Interaction times in a real browser, as a person demoing meets them: the dashboard started as `make run`
starts it (`python -m ui.launch`), one headless Chromium session, the default concept and layer.

    .venv/bin/python bench/bench_ui.py [--model smollm2-135m] [--walks 2] [--shots DIR]

It computes the sidebar layer once (its time is printed, without a target: that is a computation), then
clicks through the pages on that stored run: every page switch, a step of the Steerability page's
multiplier slider (to a value off the sweep grid and back onto it), and opening Inspect examples. Each
interaction is timed from the click until the app has finished its script run with the page's own
content shown (a slider step: until the figure for the new value is drawn), and printed beside its
target; a miss makes the bench exit 1. Every walk is checked: the first one (each page's first visit,
which fills its memos) is what a demo meets.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench_common import CHROMIUM, CHROMIUM_ARGS, Targets, start_dashboard

PAGE_SWITCH_S, SLIDER_S, INSPECT_S, REFINED_S = 0.5, 0.2, 1.0, 1.0
# Streamlit marks its root with the script's state; an observer notes that a run began after the action, so
# a check made before the rerun has started cannot pass for its end.
WATCH = """() => {
  const app = document.querySelector('[data-testid=stApp]');
  window.__ran = false;
  if (window.__watch) window.__watch.disconnect();
  window.__watch = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') === 'running') window.__ran = true;
  });
  window.__watch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
IDLE = ("() => window.__ran && document.querySelector('[data-testid=stApp]')"
        ".getAttribute('data-test-script-state') === 'notRunning'")
# (sidebar label, the page's title, what shows once that page has drawn on a computed run)
PAGES = [
    ("Steerability", "Steerability", "Propensity at a chosen multiplier"),
    ("Layer sweep", "Layer sweep", re.compile(r"Sweep all \d+ layers")),
    ("Inspect examples", "Inspect examples", "Propensity of this example"),
    ("Live steering", "Live steering", "Multiplier ladder"),
    ("Report card", "Report card", "Verdict."),
    ("Diagnostics", "Diagnostics", re.compile(r"Compute diagnostics for layer \d+")),
    ("Export", "Export", "Reproduce with the backend"),
    ("Side effects", "Side effects", "Compute side effects"),
    ("Home", "Steering-vector reliability", "headline figures"),
]


def _settle(page, shown, title: str | None = None, idle: bool = True) -> None:
    """Wait for the page ``title``, for ``shown`` (text or pattern) and (``idle``) for the script run's end."""
    if title is not None:
        page.get_by_role("heading", name=title, exact=True).wait_for()
    page.get_by_text(shown).first.wait_for()
    if idle:
        page.wait_for_function(IDLE)


def _timed(action, page, shown, title: str | None = None, idle: bool = True) -> float:
    """Seconds from ``action`` until ``shown`` is on the page and (``idle``) the script run it caused ended."""
    page.evaluate(WATCH)
    t = time.perf_counter()
    action()
    _settle(page, shown, title, idle)
    return time.perf_counter() - t


def _switch(page, label: str, title: str, shown) -> float:
    link = page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True)
    return _timed(link.click, page, shown, title)


def _slider_step(page, key: str, value: str) -> float:
    """Seconds from a key press on the multiplier slider until the figure for ``value`` is drawn."""
    thumb = page.get_by_role("slider", name=re.compile("Multiplier"))
    thumb.focus()
    return _timed(lambda: thumb.press(key), page, f"Propensity at multiplier {value} vs unsteered", idle=False)


def walk(page, targets: Targets, shots: Path | None, n: int) -> None:
    def report(name: str, seconds: float, target: float) -> None:
        targets.check(f"walk {n}: {name}", seconds, target, higher_is_better=False, unit=" s")

    for label, title, shown in PAGES:
        if label == "Inspect examples":  # the page draws from the stored run; P(A)/P(B) follow in the same run
            t = time.perf_counter()
            _timed(page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click, page, shown,
                   title, idle=False)
            page.locator(".token-view").wait_for()
            drawn = time.perf_counter() - t
            _settle(page, "P(A) and P(B) vs multiplier")
            report("opening Inspect examples (the item's tokens and stored curve drawn)", drawn, INSPECT_S)
            report("opening Inspect examples (its P(A)/P(B) curve too, computed after the page drew)",
                   time.perf_counter() - t, INSPECT_S)
            continue
        seconds = _switch(page, label, title, shown)
        report(f"page switch to {label}", seconds, PAGE_SWITCH_S)
        if shots is not None and n == 1:
            page.screenshot(path=str(shots / f"ui_{label.replace(' ', '_').lower()}.png"), full_page=True)
        if label == "Steerability":
            # 1.0 -> 1.1 (off the grid: an estimate at once, then refined live) -> 1.0 (on the grid)
            t = time.perf_counter()
            off = _slider_step(page, "ArrowRight", "1.1")
            page.get_by_text("Computed live from the cached prompt states.").wait_for()
            page.wait_for_function(IDLE)
            refined = time.perf_counter() - t
            back = _slider_step(page, "ArrowLeft", "1")
            page.wait_for_function(IDLE)
            report("slider step off the grid (interpolated figure)", off, SLIDER_S)
            report("slider step off the grid (refined figure, run ended)", refined, REFINED_S)
            report("slider step back onto the grid (stored figure)", back, SLIDER_S)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--walks", type=int, default=2)
    ap.add_argument("--shots", help="folder for one screenshot per page of the first walk")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    env = dict(os.environ, STEERING_MODEL=args.model, STEERING_RESULTS=tempfile.mkdtemp())
    env.pop("STEERING_DATA_DIR", None)
    proc, port = start_dashboard(env)
    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    targets = Targets()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 1200}).new_page()
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}")
            compute = page.get_by_role("button", name=re.compile(r"Compute layer \d+"))
            compute.wait_for()
            page.wait_for_function(IDLE.replace("window.__ran && ", ""))
            print(f"{args.model}, default concept and layer; load average {os.getloadavg()[0]:.2f}")
            print(f"first compute (train, encode, the multiplier grid; not an interaction): "
                  f"{_timed(compute.click, page, 'headline figures'):.1f} s")
            for n in range(1, args.walks + 1):
                print(f"walk {n}:")
                walk(page, targets, shots, n)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
