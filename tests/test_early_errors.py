"""Errors come early (issue 17, class 4): what can be checked before a model loads is checked then."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.analyses.study.spec import check_layer_rule, fixed_layer
from steering.core.store import READABLE_BYTES, run_dir_name
from steering.errors import SweepError

RULE_TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "1e3", "12.", ".5", "0.4", "1.0", "best", "-1", "007", " 3 ", "0x1f"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-5, 500).map(str),
)


@given(RULE_TEXT, st.integers(1, 64))
@settings(max_examples=400, deadline=None)
def test_a_layer_rule_is_refused_up_front_or_names_a_usable_layer(text, n_layers):
    try:
        rule = check_layer_rule(text)
    except SweepError:
        return  # refused before any model is loaded: the point
    try:
        layer = fixed_layer(rule, n_layers)  # the only later failure allowed: out of range for this model
    except SweepError as e:
        assert "out of range" in str(e)
        return
    assert layer is None if rule == "best" else 0 <= layer < n_layers


@pytest.mark.parametrize("text", ["nan", "inf", "1e3", "12.", "0x1f", ""])
def test_texts_that_float_reads_are_not_layer_rules(text):
    with pytest.raises(SweepError):
        check_layer_rule(text)


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=80))
@settings(max_examples=200, deadline=None)
def test_run_directory_names_fit_every_file_system(dataset_name, model):
    name = run_dir_name({"dataset_name": dataset_name, "model": model, "seed": 0})
    assert len((".partial-" + name).encode()) <= 255
    readable = name.rsplit("--", 1)[0]
    assert len(readable.encode()) <= READABLE_BYTES + 1  # +1: the "~" marking a cut
