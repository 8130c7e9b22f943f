"""The one progress/ETA model (steering.core.progress) with a fake clock: known fractions, elapsed times and
ETAs; cached units do not shorten the ETA; a new phase starts a new estimate; the CLI bar draws from it."""

from __future__ import annotations

import io

import pytest

from steering.analyses.study.executors import study_measure
from steering.cli.common import Bar
from steering.core.progress import Progress, format_seconds


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_eta_is_the_measured_rate_from_the_first_report_of_the_phase():
    clock = Clock()
    p = Progress({"grid": "Evaluating the grid"}, clock=clock)
    clock.t += 30  # model loading before the first report is not work of the phase
    first = p.update("grid", 0, 10)
    assert first.eta is None and first.elapsed == 0 and first.fraction == 0
    clock.t += 4
    s = p.update("grid", 2, 10)  # 2 units in 4 s: 8 left take 16 s
    assert s.fraction == pytest.approx(0.2) and s.elapsed == pytest.approx(4) and s.eta == pytest.approx(16)
    assert s.text() == "Evaluating the grid: 2/10 · 4 s · about 16 s left"
    clock.t += 12
    s = p.update("grid", 5, 10)  # 5 units in 16 s: 5 left take 16 s
    assert s.eta == pytest.approx(16) and s.elapsed == pytest.approx(16)
    clock.t += 1
    s = p.update("grid", 10, 10)
    assert s.eta == 0 and s.text() == "Evaluating the grid: 10/10 · 17 s"


def test_a_new_phase_starts_a_new_estimate():
    clock = Clock()
    p = Progress(clock=clock)
    p.update("train", 0, 4)
    clock.t += 100
    assert p.update("train", 4, 4).new_stage is False
    s = p.update("test", 0, 8)  # the slow training says nothing about encoding
    assert s.new_stage and s.eta is None and s.elapsed == 0 and s.text() == "test: 0/8 · 0 s"
    clock.t += 2
    assert p.update("test", 4, 8).eta == pytest.approx(2)


def test_cached_units_do_not_make_the_eta_absurd():
    """Three of six study cells are stored (instant); the fourth takes 60 s: 2 more cells take 120 s.

    From the elapsed time over the fraction done it would read 60 s / (4/6) * (2/6) = 30 s.
    """
    clock = Clock()
    p = Progress(measure=study_measure, clock=clock)
    for k in (1, 2, 3):
        s = p.update(f"cell {k}/6 · a BASE->BASE · stored", 1, 1)
        assert s.eta is None  # nothing computed yet: no estimate
    assert s.fraction == pytest.approx(0.5) and s.stage == "study"
    p.update("cell 4/6 · a BASE->BASE · train", 0, 5)
    clock.t += 60
    s = p.update("cell 4/6 · a BASE->BASE · grid", 5, 5)
    assert s.fraction == pytest.approx(4 / 6) and s.eta == pytest.approx(120)
    assert not s.new_stage and s.elapsed == pytest.approx(60)
    s = p.update("cell 5/6 · a BASE->BASE · stored", 1, 1)  # a stored cell later on: a free jump
    assert s.fraction == pytest.approx(5 / 6) and s.eta == pytest.approx(60)


def test_labels_fall_back_to_the_phase_prefix_and_the_phase():
    p = Progress({"mc": "Capability set"}, clock=Clock())
    assert p.update("mc:grid", 1, 2).label == "Capability set"
    assert p.update("other", 1, 2).label == "other"


@pytest.mark.parametrize("seconds, words",
                         [(0, "0 s"), (59.4, "59 s"), (75, "1 min 15 s"), (3600 + 5 * 60, "1 h 05 min")])
def test_format_seconds(seconds, words):
    assert format_seconds(seconds) == words


def test_cli_bar_draws_the_model_one_line_per_phase():
    clock = Clock()
    out = io.StringIO()
    bar = Bar(out, progress=Progress(clock=clock))
    bar("train", 0, 4)
    clock.t += 3
    bar("train", 1, 4)  # 1 unit in 3 s: 3 left take 9 s
    bar("grid", 0, 2)
    bar.close()
    lines = out.getvalue().split("\n")
    assert len(lines) == 3 and lines[2] == ""  # two phases, two lines
    assert lines[0].rsplit("\r", 1)[-1] == "[#######.......................]  25% train: 1/4 · 3 s · about 9 s left"
    assert lines[1].rsplit("\r", 1)[-1].strip() == "[..............................]   0% grid: 0/2 · 0 s"
