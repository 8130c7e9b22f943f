"""What every command shares: the progress bar on stderr."""

from __future__ import annotations

import sys
import time


class Bar:
    """A small progress bar with ETA on stderr, one line per phase."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.phase, self.t0 = stream, None, 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.time()
        if phase != self.phase:
            if self.phase is not None:
                self.stream.write("\n")
            self.phase, self.t0 = phase, now
        frac = done / max(total, 1)
        eta = (now - self.t0) / frac * (1 - frac) if frac > 0 else 0
        filled = int(30 * frac)
        self.stream.write(f"\r{phase:>5} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                          f"{now - self.t0:5.1f}s elapsed, ETA {eta:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.phase is not None:
            self.stream.write("\n")
            self.stream.flush()
