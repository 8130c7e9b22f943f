"""One bad item never stops everything (issue 17, class 4).

Unusable items (no (A)/(B) choices block under any metric; an empty option, two equal options under the
letter-free metric) are skipped, counted and named in the manifest; the split draws from the usable items
only, exactly as if the file had never held the others; too few usable items is one line. Where the fast
path cannot serve an item (longer than a sliding window), that item is evaluated on the reference path
and the manifest counts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steering.cli import main as cli
from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset, parse_bytes, split_dataset
from steering.core.scoring import METRICS
from steering.core.usable import run_split, usable
from steering.errors import DatasetError
from steering.run import sweep

KINDS = ("ok", "no_block", "empty", "same")
# Independent of the code under test: which metrics cannot use each kind, and a word of its reason.
UNUSABLE_UNDER = {"ok": set(), "no_block": set(METRICS), "empty": {"answer_text"}, "same": {"answer_text"}}
REASON_WORDS = {"no_block": "no (A)/(B) choices block", "empty": "has no text", "same": "same text"}


def item(kind: str, k: int, words: int = 0) -> dict:
    """A two-option item of ``kind``; ``words`` pads the question (a long prompt)."""
    pad = "filler " * words
    question = {
        "ok": f"{pad}Question {k}: which do you prefer?\n\nChoices:\n (A) the plan number {k}\n (B) another plan {k}",
        "no_block": f"{pad}Question {k}: which do you prefer? Answer with a letter.",
        "empty": f"{pad}Question {k}: which do you prefer?\n\nChoices:\n (A)\n (B) another plan {k}",
        "same": f"{pad}Question {k}: which do you prefer?\n\nChoices:\n (A) plan {k}\n (B) plan {k}",
    }[kind]
    a = k % 2 == 0
    return {"question": question, "answer_matching_behavior": " (A)" if a else " (B)",
            "answer_not_matching_behavior": " (B)" if a else " (A)"}


def jsonl(items: list[dict]) -> bytes:
    return "\n".join(json.dumps(i) for i in items).encode()


def expected_skips(name: str, kinds: list[str], metric: str) -> set[str]:
    return {f"{name}:{i}" for i, kind in enumerate(kinds) if metric in UNUSABLE_UNDER[kind]}


# ---------------------------------------------------------------- the definition and the split (no model)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=24), metric=st.sampled_from(METRICS),
       n_train=st.integers(1, 12), n_test=st.integers(1, 12), seed=st.integers(0, 5), balance=st.booleans())
def test_split_is_the_split_of_a_file_without_the_unusable_items(kinds, metric, n_train, n_test, seed, balance):
    items = [item(kind, k) for k, kind in enumerate(kinds)]
    ds = parse_bytes(jsonl(items), "gen.jsonl")
    pool = usable(ds, metric)
    expected = expected_skips("gen", kinds, metric)
    assert {s.example_id for s in pool.skipped} == expected
    for s in pool.skipped:
        assert REASON_WORDS[kinds[int(s.example_id.split(":")[1])]] in s.reason
    # The reference: a file that never held the unusable items, split by the plain seeded split.
    kept = [i for k, i in enumerate(items) if f"gen:{k}" not in expected]
    try:
        ref = split_dataset(parse_bytes(jsonl(kept), "gen.jsonl"), n_train, n_test, seed, balance) if kept else None
    except DatasetError:
        ref = None
    try:
        got = run_split(ds, n_train, n_test, seed, balance, metric)
    except DatasetError as e:
        assert ref is None, f"refused although the usable items allow it: {e}"
        msg = str(e)
        assert "\n" not in msg
        if expected:  # names how many are usable and why the others are not
            assert f"only {len(kept)} of its {len(items)} items are usable under the {metric} metric" in msg
            assert all(REASON_WORDS[kinds[int(i.split(":")[1])]] in msg for i in expected)
        return
    assert ref is not None
    questions = lambda exs: [e.question for e in exs]  # noqa: E731 - ids differ: the reference file is renumbered
    assert questions(got.train) == questions(ref[0]) and questions(got.test) == questions(ref[1])
    chosen = {e.example_id for e in got.train + got.test}
    assert not chosen & expected and len(chosen) == n_train + n_test


def test_clean_dataset_keeps_its_split_and_key():
    """Every item usable: the same split and the same store key as before the rule existed."""
    from steering.core.config import settings_of

    ds = load_dataset("corrigibility-demo")
    for metric in METRICS:
        assert usable(ds, metric).dataset is ds and not usable(ds, metric).skipped
        got = run_split(ds, 10, 8, 4, False, metric)
        assert (got.train, got.test) == split_dataset(ds, 10, 8, 4)
        assert "n_unusable" not in settings_of(SweepConfig(metric=metric), ds, [1])


def test_fixed_split_counts_usable_items_per_side():
    """A source's own train/test split (CAA) keeps its sides: unusable items leave the side they were on."""
    import dataclasses

    kinds = ["ok"] * 6 + ["empty", "ok", "ok", "same", "ok", "ok"]
    ds = parse_bytes(jsonl([item(k_, i) for i, k_ in enumerate(kinds)]), "gen.jsonl")
    ds = dataclasses.replace(ds, fixed_split=(6, 6))
    split = run_split(ds, 6, 4, 0, False, "answer_text")
    assert {e.example_id for e in split.train} == {f"gen:{i}" for i in range(6)}
    assert {e.example_id for e in split.test} == {"gen:7", "gen:8", "gen:10", "gen:11"}
    with pytest.raises(DatasetError, match="only 10 of its 12 items are usable"):
        run_split(ds, 6, 5, 0, False, "answer_text")


# ---------------------------------------------------------------- runs on the tiny model

MIXED = ["ok", "no_block", "ok", "ok", "empty", "ok", "ok", "same", "ok", "ok", "ok"]


def small_cfg(**kw) -> SweepConfig:
    return SweepConfig(model="tiny-random", layers=[1], multipliers=[-1.0, 0.0, 1.0], n_train=4, n_test=4, seed=2,
                       **kw)


@pytest.mark.parametrize("metric", METRICS)
def test_a_run_skips_and_names_unusable_items_and_evaluates_the_rest(tiny_llama, tmp_path, metric):
    skips = expected_skips("gen", MIXED, metric)
    mixed, clean = tmp_path / "mixed" / "gen.jsonl", tmp_path / "clean" / "gen.jsonl"  # clean: never held them
    for path in (mixed, clean):
        path.parent.mkdir()
        path.write_bytes(jsonl([item(k, i) for i, k in enumerate(MIXED) if path == mixed or f"gen:{i}" not in skips]))
    got = sweep.run_sweep(small_cfg(metric=metric, dataset=str(mixed)), lm=tiny_llama, out=tmp_path / "a")
    ref = sweep.run_sweep(small_cfg(metric=metric, dataset=str(clean)), lm=tiny_llama, out=tmp_path / "b")
    m = got.manifest
    assert m["n_skipped_items"] == len(skips) and {s["id"] for s in m["skipped_items"]} == skips
    assert all(REASON_WORDS[MIXED[int(s["id"].split(":")[1])]] in s["reason"] for s in m["skipped_items"])
    assert not set(got.steerability.example_id) & skips and got.steerability.example_id.nunique() == 4
    # The usable items are evaluated exactly as in a file that never held the others.
    assert np.isfinite(got.propensities.propensity).all()
    assert np.allclose(got.propensities.propensity.to_numpy(), ref.propensities.propensity.to_numpy(), atol=1e-5)
    assert ref.manifest["n_skipped_items"] == 0 and m["reference_fallback_items"] == 0


def test_too_few_usable_items_is_one_line_before_any_model(tmp_path, capsys):
    data = tmp_path / "gen.jsonl"
    data.write_bytes(jsonl([item(k, i) for i, k in enumerate(MIXED)]))  # 8 of 11 usable under answer_text
    base = ["--dataset", str(data), "--metric", "answer_text", "--n-train", "5", "--n-test", "4",
            "--model", "no-such-model"]  # the error must come before the model is even looked up
    for argv in (["sweep", *base, "--out", str(tmp_path / "r")],
                 ["study", "--name", "s", "--models", "tiny-random", "--datasets", str(data), "--metric",
                  "answer_text", "--n-train", "5", "--n-test", "4", "--layer", "1", "--out", str(tmp_path / "r")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        assert "only 8 of its 11 items are usable under the answer_text metric" in err[0]
        assert "1: no (A)/(B) choices block" in err[0] and "has no text" in err[0] and "same text" in err[0]
        assert not [f for f in (tmp_path / "r").rglob("*") if f.is_file()]  # nothing stored (a lock's folder may stay)


def test_a_study_cell_with_a_bad_item_completes_and_says_so(tmp_path, capsys):
    """The issue's case: one item with empty option texts under answer_text no longer stops the study."""
    data = tmp_path / "webgpt.jsonl"
    kinds = ["ok"] * 4 + ["empty"] + ["ok"] * 4  # 8 of 9 usable: the old split would take the bad item 8 in 9
    data.write_bytes(jsonl([item(k, i) for i, k in enumerate(kinds)]))
    argv = ["study", "--name", "w", "--models", "tiny-random", "--datasets", f"{data},corrigibility-demo",
            "--variants", "id", "--layer", "1", "--metric", "answer_text", "--n-train", "4", "--n-test", "4",
            "--multipliers=-1,0,1", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "webgpt: skipped 1 unusable item (first: webgpt:4: option (A) has no text to compare)" in out
    from steering.analyses.study.compute import load_study

    cells = {c["dataset"]: c for c in load_study(tmp_path / "r", "w").meta["cells"]}
    assert cells["webgpt"]["n_skipped_items"] == 1 and cells["corrigibility-demo"]["n_skipped_items"] == 0


# ---------------------------------------------------------------- fast path -> reference path, per item


def _windowed(arch: str, window: int):
    """A fresh tiny model whose config declares a sliding window (Llama ignores it in its own attention,
    Gemma 3 honours it): the fast path reads the config and must not serve prompts longer than it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from steering.engine.models import wrap_model
    from steering.engine.tiny import smollm2_tokenizer, tiny_random_model

    if arch == "llama":
        lm = tiny_random_model()
        lm.model.config.sliding_window = window
        return lm
    tok = smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=window,
                           layer_types=["sliding_attention"] * 3 + ["full_attention"])
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20)
    return wrap_model(model, tok, "tiny-gemma3-window")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_items_longer_than_the_sliding_window_fall_back_to_the_reference_path(tmp_path, arch):
    from steering.engine import fast

    long_ids = {1, 4, 6, 9}  # by construction: these questions are padded far past the window
    items = [item("ok", k, words=60 if k in long_ids else 0) for k in range(10)]
    data = tmp_path / "gen.jsonl"
    data.write_bytes(jsonl(items))
    ds = load_dataset(str(data))
    probe = _windowed("llama", 10_000)
    pairs = sweep.encode_all(probe, list(ds.examples), small_cfg(), ds.name, "test")
    single = [len(p.prompt_ids) - 1 + 2 * (1 + max(len(p.pos_ids), len(p.neg_ids))) for p in pairs]
    short = max(s for k, s in enumerate(single) if k not in long_ids)
    assert min(s for k, s in enumerate(single) if k in long_ids) > short + 1
    # One token more than the longest short item: each short item fits alone, two multiplier replicas do not.
    lm = _windowed(arch, short + 1)
    cfg = SweepConfig(model=lm.name, dataset=str(data), layers=[1, 2], multipliers=[-1.0, 0.0, 0.5, 1.0],
                      n_train=5, n_test=5, seed=1)
    assert sweep.use_fast(lm, cfg)
    got = sweep.compute_run(cfg, lm, ds, out=None)
    ref = sweep.compute_run(SweepConfig(**{**cfg.__dict__, "reference": True}), lm, ds, out=None)
    split = sweep.split_of(cfg, ds)
    n_long = {r: sum(int(e.example_id.split(":")[1]) in long_ids for e in getattr(split, r)) for r in ("train", "test")}
    assert n_long["train"] and n_long["test"]  # both splits hold long items (seed chosen so)
    assert got.manifest["reference_fallback_items"] == n_long["train"] + n_long["test"]
    assert got.manifest["reference_fallback_by_split"] == n_long
    assert got.manifest["path"] == "fast" and ref.manifest["reference_fallback_items"] == 0
    # Stated tolerance: float32, relative 1e-4 (the fast path's own agreement with the reference is ~1e-6 here).
    for layer in (1, 2):
        assert torch.allclose(got.vectors[layer], ref.vectors[layer], rtol=1e-4, atol=1e-5)
    a = got.frames["propensities.parquet"].propensity.to_numpy()
    b = ref.frames["propensities.parquet"].propensity.to_numpy()
    assert np.isfinite(a).all() and np.allclose(a, b, rtol=1e-4, atol=1e-4)
    cache = fast.build_cache(lm, sweep.encode_test_split(lm, cfg, ds, split).pairs)
    assert len(cache.fallback) == n_long["test"]


def test_the_dashboard_names_the_skipped_items(tmp_path, monkeypatch):
    """The Steerability page's provenance warns which items were left out and why; the sidebar bounds the
    split sizes by the usable items."""
    from streamlit.testing.v1 import AppTest

    data = tmp_path / "data" / "gen.jsonl"
    data.parent.mkdir()
    data.write_bytes(jsonl([item(k, i) for i, k in enumerate(MIXED)]))  # 8 of 11 usable under answer_text
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STEERING_DATA_DIR", str(data.parent))
    monkeypatch.delenv("STEERING_DEMO", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages/1_Steerability.py"),
                           default_timeout=180)
    for k, v in {"dataset": str(data), "metric": "answer_text", "n_train": 4, "n_test": 4}.items():
        at.session_state[f"s_{k}"] = v
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    n_train, n_test = (at.sidebar.number_input(key=k) for k in ("w_n_train", "w_n_test"))
    assert n_train.max == 7 and n_test.max == 4  # 8 usable items: at most 7 + 1, or 4 + 4 with 4 train
    at.button(key="compute_layer").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Skipped 3 unusable items (first: gen:1: no (A)/(B) choices block") for w in warnings), \
        warnings
