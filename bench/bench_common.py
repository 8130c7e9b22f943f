"""What the benchmarks share: where the real datasets are, and skipping cleanly when they are not there."""

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
