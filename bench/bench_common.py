"""What the benchmarks share: where the real datasets are, skipping cleanly when they are not there, and
checking each measured figure against its stated target (a miss makes the bench, so `make bench`, exit 1)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STEERING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def start_dashboard(env: dict, launch: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """The dashboard started on a free loopback port (``launch``: the module and arguments before Streamlit's
    options; default ``-m ui.launch`` as `make run`), once its health check answers: (process, port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = ["--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none"]
    proc = subprocess.Popen([sys.executable, *(launch or ["-m", "ui.launch"]), *opts], cwd=ROOT,
                            env={**env, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {proc.returncode} before answering") from None
            time.sleep(0.05)


def add_data_dir(ap: argparse.ArgumentParser) -> None:
    """--data-dir, defaulting to $STEERING_SHARED_DATASETS or ../shared/datasets beside the repository."""
    ap.add_argument("--data-dir", default=os.environ.get("STEERING_SHARED_DATASETS", str(SHARED_DATASETS)))


def missing(data_dir: str) -> bool:
    """True (and says so) when the shared datasets are absent, as on a user's machine."""
    if Path(data_dir).is_dir():
        return False
    print(f"skipped: shared datasets not found at {data_dir}")
    return True


class Targets:
    """The figures a bench checks against their stated targets; ``exit_code()`` is 1 when any missed."""

    def __init__(self) -> None:
        self.misses: list[str] = []

    def check(self, name: str, value: float, target: float, higher_is_better: bool, unit: str = "") -> bool:
        """Print ``name: value (target >= or <= target) OK|MISS`` and record a miss; a NaN value misses."""
        ok = value >= target if higher_is_better else value <= target  # a NaN compares False: a miss
        print(f"{name}: {value:.2f}{unit} (target {'>=' if higher_is_better else '<='} {target:g}{unit}) "
              f"{'OK' if ok else 'MISS'}")
        if not ok:
            self.misses.append(name)
        return ok

    def exit_code(self) -> int:
        if self.misses:
            print(f"missed {len(self.misses)} target(s): {', '.join(self.misses)}")
            return 1
        return 0
