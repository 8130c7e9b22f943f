"""Time to the first dashboard view, as `make run` starts it (`python -m ui.launch`: the model starts loading
with the server), Home opened in headless Chromium at once. From the server's start, prints the time to:
its health check answering, the page's title, the first paint of Home (title, the sidebar's concept
selector and the compute button, which says "loading the model" until the model is ready), and the
model-ready view (the enabled compute button). Run it twice: the first run on a machine fills the weight
cache, later runs read it; the targets (first paint <= 3 s, model ready <= 5 s) are checked from the
second run on. Opening the page the moment the server answers is the worst case (the page's first run
shares the CPU with the model load); a last start times a visitor who arrives --arrive-after seconds
later (default 10), whose model-ready view is checked against 3 s from the visit.

    .venv/bin/python bench/bench_start.py [--model smollm2-135m] [--repeat 2] [--plain]

Also prints the parts: the imports and the model load alone in a new process; --plain also times one
start with `streamlit run app.py` (nothing loads before the first visit), for comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from bench_common import CHROMIUM, CHROMIUM_ARGS, ROOT, Targets, start_dashboard


def first_view(model: str, browser, plain: bool = False, arrive: float = 0.0) -> tuple[float, float, float, float]:
    """Seconds from the server's start to: its health check answering, the page's title shown, the first
    paint of Home (sidebar and compute button drawn) and the model-ready view (the compute button enabled).
    With ``arrive``, the visitor opens the page that many seconds after the server started, and the last
    three times count from that visit instead."""
    env = dict(os.environ, STEERING_MODEL=model, STEERING_RESULTS=tempfile.mkdtemp())
    t0 = time.perf_counter()
    proc, port = start_dashboard(env, ["-m", "streamlit", "run", "app.py"] if plain else None)
    try:
        healthy = time.perf_counter() - t0
        if arrive:
            time.sleep(max(0.0, arrive - healthy))
            t0 = time.perf_counter()
        page = browser.new_page()
        page.set_default_timeout(300_000)
        page.goto(f"http://127.0.0.1:{port}")
        page.get_by_role("heading", name="Steering-vector reliability").wait_for()
        titled = time.perf_counter() - t0
        page.get_by_text("Concept (A/B dataset)").wait_for()
        page.get_by_role("button", name=re.compile(r"Compute (layer \d+|— loading the model)")).wait_for()
        painted = time.perf_counter() - t0
        page.get_by_role("button", name=re.compile(r"Compute layer \d+")).wait_for()
        shown = time.perf_counter() - t0
        page.close()
        return healthy, titled, painted, shown
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--arrive-after", type=float, default=10.0,
                    help="also time a visit this many seconds after the server started (the model then loaded)")
    ap.add_argument("--plain", action="store_true", help="also time `streamlit run app.py` without the preload")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import streamlit, torch, transformers, plotly"], check=True, cwd=ROOT)
    print(f"importing streamlit, torch, transformers, plotly in a new process: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"from steering.engine.models import load_model; load_model({args.model!r})"],
                   check=True, cwd=ROOT, capture_output=True)
    print(f"a new process that loads {args.model} (imports included): {time.perf_counter() - t:.1f} s")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        targets = Targets()
        for i in range(args.repeat):
            healthy, titled, painted, shown = first_view(args.model, browser)
            print(f"run {i + 1}: server healthy after {healthy:.1f} s, title after {titled:.1f} s, first paint "
                  f"of Home after {painted:.1f} s, model-ready view after {shown:.1f} s")
            if i > 0:  # the targets hold once the weight cache is warm: the first run may fill it
                targets.check(f"run {i + 1}: first paint of Home", painted, 3, higher_is_better=False, unit=" s")
                targets.check(f"run {i + 1}: model-ready view", shown, 5, higher_is_better=False, unit=" s")
        healthy, titled, painted, shown = first_view(args.model, browser, arrive=args.arrive_after)
        print(f"a visitor {args.arrive_after:g} s after the server started: title after {titled:.1f} s, first "
              f"paint after {painted:.1f} s, model-ready view after {shown:.1f} s (from the visit)")
        targets.check(f"visit {args.arrive_after:g} s after start: model-ready view", shown, 3,
                      higher_is_better=False, unit=" s")
        if args.plain:
            healthy, titled, painted, shown = first_view(args.model, browser, plain=True)
            print(f"`streamlit run app.py` (no preload): title after {titled:.1f} s, first paint after "
                  f"{painted:.1f} s, model-ready view after {shown:.1f} s")
        browser.close()
    if args.repeat < 2:
        print("no warm run measured (--repeat 1): the targets are checked from the second run on")
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
