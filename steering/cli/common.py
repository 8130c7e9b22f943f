"""What every command shares: the progress bar on stderr (the numbers come from ``core.progress``)."""

from __future__ import annotations

import sys

from steering.core.progress import Measure, Progress

WIDTH = 30


class Bar:
    """A progress bar with elapsed time and ETA on stderr, one line per stage (a phase, or a whole study)."""

    def __init__(self, stream=None, labels=None, measure: Measure | None = None, progress: Progress | None = None):
        self.stream = stream or sys.stderr  # looked up now: tests and wrappers replace sys.stderr
        self.model = progress or Progress(labels, measure)
        self.open, self.width = False, 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        snap = self.model.update(phase, done, total)
        if snap.new_stage and self.open:
            self.stream.write("\n")
            self.width = 0
        filled = int(WIDTH * snap.fraction)
        line = f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {snap.fraction:4.0%} {snap.text()}"
        self.stream.write(line.ljust(self.width))  # pad over a longer previous line
        self.stream.flush()
        self.open, self.width = True, len(line)

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False
