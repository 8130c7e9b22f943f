"""A study's dataset rows against an independent recomputation from its per-example table, and the spurious
shares against direct least squares: an undefined share is NaN with a reason, shown as "undefined", never 1.0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_study import DATASETS, pool, spec_for  # noqa: F401 - pool: the fixture

from steering.analyses.study import stats as study_stats
from steering.analyses.study.compute import load_study, run_study


def test_tables_match_an_independent_recomputation(tiny_llama, pool, tmp_path):
    # Seed 1: the test splits mix A and B (seed 0's happen to be all A, leaving every A/B share undefined).
    study = run_study(spec_for(tiny_llama, datasets=DATASETS + ["humility-persona-demo"], seed=1), tmp_path,
                      models=pool)
    on_disk = pd.read_parquet(study.path / "datasets.parquet")
    ex = pd.read_parquet(study.path / "examples.parquet")
    assert set(ex.columns) >= {"slope", "anti_steerable", "baseline", "pos_is_A", "pos_is_yes", "example_id"}
    pd.testing.assert_frame_equal(on_disk, study_stats.dataset_rows(ex, seed=0))
    assert len(on_disk) == 15 and (on_disk.n == 6).all()
    for row in on_disk.itertuples():
        g = ex[(ex.dataset == row.dataset) & (ex.test_variant == row.test_variant)]
        s = g.slope.to_numpy()
        assert row.median_slope == pytest.approx(np.median(s)) and row.mean_slope == pytest.approx(s.mean())
        assert row.frac_anti == pytest.approx(1 - np.mean(s > 0)) and row.var_slope == pytest.approx(s.var())
        assert (g.anti_steerable == (g.slope <= 0)).all()
        assert row.frac_anti_lo <= row.frac_anti <= row.frac_anti_hi
        a, yes = g.pos_is_A.to_numpy(dtype=float), pd.to_numeric(g.pos_is_yes, errors="coerce").to_numpy(dtype=float)
        a_varies = a.std() > 0
        yes_varies = bool(np.isfinite(yes).all() and yes.std() > 0)
        varies = [f for f, ok in ((a, a_varies), (yes, yes_varies)) if ok]
        if not varies:  # e.g. a persona split whose positive answers are all "(A) Yes": nothing to explain with
            assert np.isnan([row.share_ab, row.share_yes, row.share_unexplained]).all()
            assert "no factor varies" in row.share_why
            continue
        assert row.share_unexplained == pytest.approx(1 - _direct_r2(s, varies))
        r2_a = _direct_r2(s, [a]) if a_varies else 0.0
        if a_varies:
            assert row.share_ab == pytest.approx(r2_a)
        else:  # e.g. a persona split with every positive answer under (A): undefined, not 0
            assert np.isnan(row.share_ab) and "A/B share undefined: every positive answer has the same" in row.share_why
        if yes_varies:
            assert row.share_yes == pytest.approx(_direct_r2(s, varies) - r2_a)
        else:  # A/B concepts have no Yes/No answer: undefined, not 0
            assert np.isnan(row.share_yes) and "Yes/No share undefined: no item has" in row.share_why
    assert (on_disk.share_why != "").any() and on_disk.share_ab.notna().any()  # undefined and defined shares occur
    # the stored slopes are the runs' own
    cell = study.meta["cells"][0]
    run = pd.read_parquet(tmp_path / cell["run_dir"] / "steerability.parquet")
    mine = ex[(ex.dataset == cell["dataset"]) & (ex.test_variant == cell["test_variant"])]
    assert np.allclose(run.slope.to_numpy(), mine.slope.to_numpy())


def _direct_r2(y, cols):
    X = np.column_stack([np.ones(len(y))] + cols)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return 1 - ((y - X @ beta) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_spurious_shares_against_a_direct_least_squares_fit():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 40).astype(float)
    yes = rng.integers(0, 2, 40).astype(float)
    y = 1.5 * a - 0.7 * yes + rng.normal(0, 0.5, 40)
    ab, sy, rest, why = study_stats.spurious_shares(y, a, yes)
    assert ab == pytest.approx(_direct_r2(y, [a])) and ab > 0.3
    assert ab + sy == pytest.approx(_direct_r2(y, [a, yes])) and sy > 0.05
    assert rest == pytest.approx(1 - _direct_r2(y, [a, yes])) and why == ""
    ab, sy, rest, why = study_stats.spurious_shares(y, a, np.full(40, np.nan))  # an A/B dataset: no Yes/No factor
    assert ab == pytest.approx(_direct_r2(y, [a])) and rest == pytest.approx(1 - ab)
    assert np.isnan(sy) and why == "Yes/No share undefined: no item has a Yes/No answer"
    # pos_is_A constant (every positive answer under A): the A/B share is undefined, Yes/No alone explains
    ab, sy, rest, why = study_stats.spurious_shares(y, np.ones(40), yes)
    assert np.isnan(ab) and "A/B share undefined: every positive answer has the same letter" in why
    assert sy == pytest.approx(_direct_r2(y, [yes])) and rest == pytest.approx(1 - sy)


@pytest.mark.parametrize("slopes, pos_is_A, pos_is_yes, reason", [
    ([0.3] * 6, [1, 0] * 3, [np.nan] * 6, "the slopes do not vary"),
    ([0.1, 0.5, 0.2, 0.9], [1] * 4, [np.nan] * 4, "no factor varies"),
    ([0.1, 0.5, 0.2, 0.9], [1] * 4, [1, 1, np.nan, 0], "not every item has a Yes/No answer"),
    ([0.1, 0.5], [1, 0], [np.nan] * 2, "2 item(s), at least 3 needed"),
])
def test_undefined_shares_are_missing_with_a_reason_not_one(slopes, pos_is_A, pos_is_yes, reason):
    """The old code turned these into share_unexplained = 1.0 (and share_yes = 0)."""
    *shares, why = study_stats.spurious_shares(slopes, pos_is_A, pos_is_yes)
    assert all(np.isnan(v) for v in shares) and reason in why
    assert study_stats.share_text(shares[2], 9) == "undefined"
    rows = study_stats.dataset_rows(pd.DataFrame({
        "model": "m", "dataset": "d", "train_variant": "BASE", "test_variant": "BASE", "layer": 1,
        "example_id": [f"e{i}" for i in range(len(slopes))], "slope": slopes, "anti_steerable": False,
        "baseline": 0.0, "pos_is_A": [bool(v) for v in pos_is_A],
        "pos_is_yes": pd.array([None if np.isnan(v) else bool(v) for v in pos_is_yes], dtype="boolean")}))
    assert rows.share_unexplained.isna().all() and reason in rows.share_why.iloc[0]
    from steering.analyses.study.figures import spurious_bars

    notes = [a.text for a in spurious_bars(rows).layout.annotations]
    assert notes == [f"undefined ({rows.share_why.iloc[0]})"]  # an empty bar says why


def test_a_study_stored_before_undefined_shares_is_recomputed_on_load(tiny_llama, pool, tmp_path):
    study = run_study(spec_for(tiny_llama, variants="id"), tmp_path, models=pool)
    old = study.datasets.drop(columns="share_why")
    old["share_ab"], old["share_yes"], old["share_unexplained"] = 0.0, 0.0, 1.0  # what the old code stored
    old.to_parquet(study.path / "datasets.parquet")
    again = load_study(tmp_path, "s").datasets
    pd.testing.assert_frame_equal(again, study.datasets)
    assert again.share_unexplained.isna().all()  # seed 0's test splits are all (A) and A/B-only: nothing varies
