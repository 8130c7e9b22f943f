"""The one progress/ETA model behind the command line's bars and the dashboard's progress bars.

A computation reports ``progress(phase, done, total)``; ``Progress`` turns each report into a
``Snapshot``: the fraction done, the time spent in the current stage and an estimate of the time
left. A *stage* is a phase, or several reports that ``measure`` puts on one scale (a study's cells).

The rate is measured on work only: from the stage's first report on (so loading before it is not
counted), leaving out units reported as *cached* (stored cells, cached prompts), which finish at
once and would otherwise make the estimate absurdly short.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

# measure(phase, done, total) -> (stage, fraction of the stage done, whether this unit came from a cache)
Measure = Callable[[str, int, int], "tuple[str, float, bool]"]


def plain_measure(phase: str, done: int, total: int) -> tuple[str, float, bool]:
    """Each phase is its own stage; the fraction is done / total."""
    return phase, min(max(done / max(total, 1), 0.0), 1.0), False


def format_seconds(seconds: float) -> str:
    """A duration in words: '8 s', '1 min 15 s', '2 h 05 min'."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class Snapshot:
    phase: str
    label: str  # the phase in words
    done: int
    total: int
    stage: str
    fraction: float  # of the stage, 0..1
    elapsed: float  # seconds since the stage's first report
    eta: float | None  # seconds left in the stage; None until some work has been timed
    new_stage: bool  # this report opened a stage

    def text(self) -> str:
        """One line: 'Evaluating the grid: 4/10 · 12 s · about 18 s left'."""
        line = f"{self.label}: {self.done}/{self.total} · {format_seconds(self.elapsed)}"
        if self.eta is not None and self.fraction < 1.0:  # finished: the time spent says it all
            line += f" · about {format_seconds(self.eta)} left"
        return line


class Progress:
    """Feed it ``(phase, done, total)``; it knows elapsed time, fraction and ETA of the current stage.

    ``labels`` maps a phase (or the part of it before ':') to words; ``measure`` places reports on a
    stage's scale (default: each phase is a stage, fraction done / total); ``clock`` is for tests.
    """

    def __init__(self, labels: Mapping[str, str] | None = None, measure: Measure | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.labels, self.measure, self.clock = dict(labels or {}), measure or plain_measure, clock
        self.stage: str | None = None
        self.started = 0.0  # the stage's first report
        self.last: tuple[float, float] | None = None  # (time, fraction) of the previous report
        self.work_time = self.work_done = 0.0  # timed work in the stage: seconds, fraction

    def label(self, phase: str) -> str:
        return self.labels.get(phase) or self.labels.get(phase.split(":")[0]) or phase

    def update(self, phase: str, done: int, total: int) -> Snapshot:
        now = self.clock()
        stage, frac, cached = self.measure(phase, done, total)
        new = stage != self.stage
        if new:
            self.stage, self.started, self.last = stage, now, None
            self.work_time = self.work_done = 0.0
        if self.last is not None and not cached:  # the interval since the previous report was work
            self.work_time += now - self.last[0]
            self.work_done += frac - self.last[1]
        self.last = (now, frac)
        if frac >= 1.0:
            eta: float | None = 0.0
        elif self.work_done > 0:
            eta = (1.0 - frac) * self.work_time / self.work_done
        else:
            eta = None
        return Snapshot(phase, self.label(phase), done, total, stage, frac, now - self.started, eta, new)

    __call__ = update  # a Progress is itself a progress callback
