"""What the benchmarks share: where the real datasets are, skipping cleanly when they are not there, and
checking each measured figure against its stated target (a miss makes the bench, so `make bench`, exit 1)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


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
