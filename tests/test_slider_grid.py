"""The Steerability slider without waiting: every slider step computed in one grid call (equal to the
one-value slider path and, on the sweep grid, to the stored propensities), and the instant estimate in
between: linear interpolation of the stored grid (known values; numpy's interp inside the grid)."""

from __future__ import annotations

import numpy as np
import pytest

from steering.engine import fast
from steering.run.live import interpolate, live_propensities, slider_grid

TOL = 1e-4


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    from steering.run.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(dataset="corrigibility-demo", layers=[2], n_train=8, n_test=6)
    return run_sweep(cfg, lm=tiny_llama, out=tmp_path_factory.mktemp("results"))


def test_every_slider_step_equals_the_one_value_path_and_the_stored_grid(tiny_llama, run):
    steps = [-3.0, -1.5, -0.2, 0.0, 0.7, 1.0, 2.3]
    caches = fast.CacheStore()
    got = slider_grid(tiny_llama, run, 2, steps, caches)  # [example, step], stored example order
    assert got.shape == (6, len(steps))
    for k, m in enumerate(steps):
        one = live_propensities(tiny_llama, run, 2, m, caches)
        assert np.abs(got[:, k] - one).max() < TOL, m
    stored = run.propensities[run.propensities.layer == 2]
    order = list(run.test_pairs().example_id)
    for k, m in enumerate(steps):
        rows = stored[np.isclose(stored.multiplier, m)]
        if len(rows):
            expect = rows.set_index("example_id").propensity.reindex(order).to_numpy()
            assert np.abs(got[:, k] - expect).max() < TOL, m


def test_interpolation_known_values_and_numpy():
    grid = [-1.0, 0.0, 2.0]
    values = np.array([[0.0, 1.0, 5.0], [3.0, 3.0, 3.0]])
    assert interpolate(grid, values, 1.0) == pytest.approx([3.0, 3.0])  # halfway from 1 to 5
    assert interpolate(grid, values, 4.0) == pytest.approx([9.0, 3.0])  # the end segment's slope (2 per unit)
    assert interpolate(grid, values, -2.0) == pytest.approx([-1.0, 3.0])
    assert interpolate([2.0, -1.0, 0.0], values[:, [2, 0, 1]], 1.0) == pytest.approx([3.0, 3.0])  # any grid order
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 7))
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    for m in (-1.3, -0.01, 0.26, 1.49):
        assert interpolate(x, y, m) == pytest.approx([np.interp(m, x, row) for row in y])


def test_slider_neighbours_stay_in_range():
    from ui.runs import SLIDER, neighbours

    assert SLIDER == (-3.0, 3.0, 0.1)
    assert neighbours(1.0) == [0.9, 1.1]
    assert neighbours(3.0) == [2.9] and neighbours(-3.0, 2) == [-2.9, -2.8]
