"""Numbers that are not numbers are never shown as numbers (issue 17, class 3).

A figure that cannot be estimated is NaN/None with a reason in ``DatasetFigures.undefined``; intervals are
honest at small n (Wilson for proportions, Student t for means); inputs that make every propensity saturate
are refused or flagged; the side-effect recommendation never recommends a setting that does not help.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.analyses.side_effects import tradeoff
from steering.analyses.study.spec import parse_layer_rules
from steering.core import metrics
from steering.core.datasets import Example, repeated_items
from steering.core.vectors import MAX_STEERING_ELEMENT, check_steering_scale
from steering.errors import SweepError

Z95 = 1.959963984540054  # the normal quantile of 0.975


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval written out (Wilson 1927), independent of scipy."""
    p, z2 = k / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
@settings(max_examples=200, deadline=None)
def test_wilson_interval_matches_the_formula_and_holds_the_estimate(kn):
    k, n = kn
    lo, hi = metrics.wilson_interval(k, n)
    want_lo, want_hi = wilson_by_hand(k, n)
    assert lo == pytest.approx(max(0.0, want_lo), abs=1e-9) and hi == pytest.approx(min(1.0, want_hi), abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_one_item_gives_an_honest_interval_not_a_point():
    f = metrics.dataset_figures(np.array([-0.3]), np.array([True]))
    assert f.frac_anti == 1.0
    assert f.frac_anti_lo == pytest.approx(wilson_by_hand(1, 1)[0]) and f.frac_anti_lo < 0.25  # not [100%, 100%]
    assert f.frac_anti_hi == 1.0
    assert math.isnan(f.mean_slope_lo) and "one test item" in f.undefined["mean_slope_interval"]


def test_mean_interval_is_students_t():
    v = np.array([0.1, 0.4, -0.2, 0.3, 0.0])
    lo, hi = metrics.mean_interval(v)
    from scipy import stats

    want = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (lo, hi) == pytest.approx(want)


def test_letter_share_is_undefined_when_every_positive_answer_is_A():
    slopes = np.array([0.2, -0.1, 0.5, 0.3])
    f = metrics.dataset_figures(slopes, np.array([True] * 4))
    assert f.r2_pos_is_A is None and f.r2_spurious is None
    assert "every positive answer is (A)" in f.undefined["r2_pos_is_A"]
    mixed = metrics.dataset_figures(slopes, np.array([True, False, True, False]))
    assert mixed.r2_pos_is_A is not None and "r2_pos_is_A" not in mixed.undefined


def test_all_flat_slopes_are_not_called_anti_steerable():
    f = metrics.dataset_figures(np.zeros(6), np.array([True, False] * 3))
    assert math.isnan(f.frac_anti) and math.isnan(f.frac_anti_lo)
    assert "every slope is exactly 0" in f.undefined["frac_anti"]
    assert f.r2_pos_is_A is None and "no variance" in f.undefined["r2_pos_is_A"]


@given(st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.25, -2.0, 1e-9]), min_size=0, max_size=12),
       st.lists(st.booleans(), min_size=12, max_size=12))
@settings(max_examples=150, deadline=None)
def test_every_figure_is_finite_or_undefined_with_a_reason(slopes, letters):
    s = np.array(slopes, dtype=float)
    f = metrics.dataset_figures(s, np.array(letters[: len(s)]))
    not_applicable = {"undefined", "r2_pos_is_yes"}  # no Yes/No factor was given: the share does not apply
    missing = {k: v for k, v in f.as_dict().items() if k not in not_applicable and
               (v is None or (isinstance(v, float) and not math.isfinite(v)))}
    reasons = f.undefined
    for name in missing:
        # an interval bound is explained by its figure's (or its interval's) reason
        base = name.replace("_lo", "").replace("_hi", "")
        assert any(r in reasons for r in (name, base, base + "_interval")), (name, f)
        assert all(isinstance(reasons[r], str) and reasons[r] for r in reasons)
    for name in reasons:
        assert metrics.shown(getattr(f, name, None) if hasattr(f, name) else None,
                             reason=reasons[name]).startswith("undefined (")


def test_saturated_grid_is_flagged_and_an_ordinary_one_is_not():
    x = [-1.0, 0.0, 1.0]
    saturated = np.array([[5.0, 0.3, 7.0], [5.0, -0.2, 7.0], [5.0, 1.1, 7.0]])
    assert "saturates" in metrics.saturation_reason(x, saturated)
    ordinary = saturated + np.array([[0.0, 0, 0.1], [0.2, 0, 0.0], [0.0, 0, -0.3]])
    assert metrics.saturation_reason(x, ordinary) is None
    duplicates = np.array([[5.0, 0.3, 7.0]] * 3)  # identical items agree everywhere: that is not saturation
    assert metrics.saturation_reason(x, duplicates) is None


def test_overflowing_or_non_finite_vectors_are_refused():
    v = torch.ones(8)
    check_steering_scale({3: v}, [-1.5, 0, 1.5])  # ordinary: accepted
    with pytest.raises(SweepError, match="saturates"):
        check_steering_scale({3: v * 1e30}, [0, 1.5])
    with pytest.raises(SweepError, match="not a finite number"):
        check_steering_scale({3: torch.tensor([1.0, float("nan")])}, [0, 1])
    # the bound is on |multiplier| x element: just under passes, just over fails
    check_steering_scale({0: torch.tensor([MAX_STEERING_ELEMENT / 2])}, [0, 1.99])
    with pytest.raises(SweepError):
        check_steering_scale({0: torch.tensor([MAX_STEERING_ELEMENT / 2])}, [0, 2.01])


def test_a_huge_vector_is_refused_before_the_grid_runs():
    from steering.core.config import SweepConfig
    from steering.core.datasets import load_dataset, split_dataset
    from steering.engine.tiny import tiny_random_model
    from steering.run.sweep import encode_all, evaluate_grid

    lm = tiny_random_model()
    ds = load_dataset("corrigibility-demo")
    _, test = split_dataset(ds, 4, 3, 0)
    pairs = encode_all(lm, test, SweepConfig(), ds.name, "test")
    vec = {1: torch.full((lm.hidden_size,), 1e30)}
    with pytest.raises(SweepError, match="saturates"):
        evaluate_grid(lm, pairs, vec, [1], SweepConfig(layers=[1]))


def test_duplicate_layer_rules_are_refused():
    with pytest.raises(SweepError, match="two layer rules for model a"):
        parse_layer_rules("a=12,b=best,a=best", ["a", "b"])
    assert parse_layer_rules("a=12,b=best", ["a", "b"]) == {"a": "12", "b": "best"}


def test_entanglement_refuses_a_non_finite_multiplier(tmp_path):
    from steering.analyses.side_effects.entanglement import entanglement
    from steering.core.config import SweepConfig
    from steering.engine.tiny import tiny_random_model

    for bad in (float("nan"), float("inf")):
        with pytest.raises(SweepError, match="not a finite number"):
            entanglement(tiny_random_model(), ["corrigibility-demo", "optimism-demo"], 1, SweepConfig(),
                         tmp_path, multiplier=bad)
    assert not (tmp_path / "entanglement").exists()  # nothing stored


def _table(val_gains, test_gains):
    n = len(val_gains)
    return pd.DataFrame({"layer": list(range(n)), "multiplier": [1.0] * n, "kl": [0.01] * n,
                         "val_gain": val_gains, "test_gain": test_gains})


def test_no_recommendation_when_no_setting_helps_on_validation():
    rec = tradeoff.recommend(_table([-0.2, 0.0, -0.05], [0.3, 0.1, 0.2]))
    assert rec["found"] is False and "best validation gain is 0" in rec["reason"]
    assert tradeoff.describe(rec).startswith("No recommendation")
    just_positive = tradeoff.recommend(_table([-0.2, 1e-6, -0.05], [0.3, 0.1, 0.2]))
    assert just_positive["found"] and just_positive["layer"] == 1
    nan = tradeoff.recommend(_table([float("nan")], [0.3]))
    assert nan["found"] is False


def _ex(i: int, q: str) -> Example:
    return Example(f"d:{i}", q, "(A)", "(B)", True, None, "f", i + 1)


def test_test_items_repeating_training_items_are_named():
    train = [_ex(0, "Q one"), _ex(1, "Q two ")]
    test = [_ex(2, "Q two"), _ex(3, "Q three")]
    assert repeated_items(train, test) == ["d:2"]
    assert repeated_items(train, [_ex(4, "Q four")]) == []


def test_a_sweep_names_test_items_that_repeat_training_items(tmp_path):
    import json

    from steering.core.config import SweepConfig
    from steering.core.datasets import load_dataset
    from steering.engine.tiny import tiny_random_model
    from steering.run.sweep import run_sweep

    lines = [json.dumps({"question": f"Item {i % 5}?\n\nChoices:\n (A) yes\n (B) no",
                         "answer_matching_behavior": " (A)" if i % 2 else " (B)"}) for i in range(20)]
    path = tmp_path / "dupes.jsonl"
    path.write_text("\n".join(lines))
    ds = load_dataset(str(path))
    cfg = SweepConfig(model="tiny-random", dataset=str(path), layers=[1], n_train=10, n_test=6)
    result = run_sweep(cfg, lm=tiny_random_model(), out=tmp_path / "r", dataset=ds)
    repeated = result.manifest["test_items_in_train"]
    test_ids = set(result.test_pairs().example_id)
    assert repeated and set(repeated) <= test_ids
