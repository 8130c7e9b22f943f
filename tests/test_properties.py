"""Property-based tests: arbitrary text never gives a traceback from the dataset parsers, the
multiplier and layer parsers, the store keys or the gguf header reader; what they accept is sane."""

from __future__ import annotations

import json
import math
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steering.core.config import parse_layers, parse_multipliers
from steering.core.datasets import parse_bytes
from steering.core.store import run_dir_name, settings_key
from steering.engine.modelfiles import gguf_metadata
from steering.errors import DatasetError, SweepError, ValidationError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
number_text = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                        st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", " ", "", "x", "1e-400"]))


@FAST
@given(st.one_of(st.text(), st.lists(number_text, max_size=8).map(",".join)))
def test_multiplier_parser_accepts_only_finite_grids(text):
    try:
        values = parse_multipliers(text)
    except SweepError:
        return
    assert all(math.isfinite(v) for v in values) and len(set(values)) >= 2


layer_part = st.one_of(st.integers(-5, 40).map(str), st.tuples(st.integers(-5, 40), st.integers(-5, 40)).map(
    lambda t: f"{t[0]}-{t[1]}"), st.text(alphabet=string.printable, max_size=6))


@FAST
@given(st.one_of(st.text(), st.lists(layer_part, max_size=5).map(",".join)), st.integers(1, 40))
def test_layer_parser_gives_a_sorted_nonempty_in_range_list_or_a_message(text, n_layers):
    try:
        layers = parse_layers(text, n_layers)
    except SweepError as e:
        assert str(e)
        return
    assert layers and layers == sorted(set(layers)) and all(0 <= l < n_layers for l in layers)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=20)
record = st.fixed_dictionaries({}, optional={
    "question": st.one_of(st.text(max_size=80), st.just("Q?\n\nChoices:\n (A) a\n (B) b"), json_values),
    "answer_matching_behavior": st.one_of(st.sampled_from([" (A)", "(B)", "Yes", " No", "(C)", ""]), json_values),
    "answer_not_matching_behavior": st.one_of(st.sampled_from([" (A)", "(B)", "Yes", " No"]), json_values),
})


@FAST
@given(st.binary(max_size=300), st.sampled_from(["x.jsonl", "x.json", "x.csv", "x.txt", "x"]))
def test_dataset_parser_on_arbitrary_bytes(data, name):
    try:
        ds = parse_bytes(data, name)
    except DatasetError as e:
        assert str(e)
        return
    assert len(ds) > 0


@FAST
@given(st.lists(st.one_of(record, json_values), min_size=0, max_size=6), st.sampled_from(["jsonl", "json", "csv"]))
def test_dataset_parser_on_arbitrary_records(records, fmt):
    if fmt == "jsonl":
        data = "\n".join(json.dumps(r) for r in records)
    elif fmt == "json":
        data = json.dumps(records)
    else:
        rows = [r for r in records if isinstance(r, dict)]
        cols = ["question", "answer_matching_behavior"]
        data = ",".join(cols) + "\n" + "\n".join(
            ",".join(json.dumps(str(r.get(c, ""))) for c in cols) for r in rows)
    try:
        ds = parse_bytes(data.encode(), f"x.{fmt}")
    except DatasetError as e:
        assert str(e)
        return
    for ex in ds.examples:
        assert ex.positive != ex.negative and isinstance(ex.question, str)


@FAST
@given(st.dictionaries(st.text(max_size=30), json_values, max_size=6), st.text(max_size=300),
       st.text(max_size=80))
def test_store_keys_are_stable_hex_and_names_have_no_separators(settings_, dataset_name, model):
    s = {**settings_, "dataset_name": Path(dataset_name).name or "x", "model": model}  # names come from file names
    key = settings_key(s)
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert key == settings_key(json.loads(json.dumps(s)))  # survives the manifest's JSON round trip
    name = run_dir_name(s)
    assert name.endswith("--" + key) and "/" not in name and name not in (".", "..")


@FAST
@given(st.binary(max_size=200))
def test_gguf_header_reader_never_raises_anything_else(data):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "m.gguf"
        f.write_bytes(b"GGUF" + data)
        try:
            gguf_metadata(f)
        except ValidationError:
            pass
