"""Diagnostics (issue 8) on tiny random-weight models: null vectors, A/B swap, answer_text, split-half, predictors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steering.cli.main import main
from steering.core.config import SweepConfig, settings_of
from steering.core.datasets import Example, load_dataset
from steering.core.swap import encode_for_metric, option_texts, question_without_choices, swap_example
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.hooks import capture
from steering.engine.multivector import grid_many, reference_many
from steering.errors import SweepError
from steering.run.diagnostics import stats as diag_stats
from steering.run.diagnostics.compute import random_vectors, shuffled_vectors, split_half_vectors

TOL = 1e-4  # fast vs reference on float32 tiny models (as test_engine)


def demo_pairs(lm, n=4, metric="logit_diff", swapped=False):
    ds = load_dataset("corrigibility-demo")
    exs = [swap_example(e) if swapped else e for e in ds.examples[:n]]
    return [encode_for_metric(lm.tokenizer, e, "BASE", ds.name, metric=metric) for e in exs]


# ---------------------------------------------------------------- null vectors


def test_random_vectors_have_the_vectors_norm_and_are_seeded():
    v = torch.randn(64) * 7
    r = random_vectors(v, 8, seed=3)
    assert r.shape == (8, 64)
    assert torch.allclose(r.norm(dim=1), torch.full((8,), float(v.norm())), rtol=1e-5)
    assert torch.equal(r, random_vectors(v, 8, seed=3)) and not torch.equal(r, random_vectors(v, 8, seed=4))
    cos = (r @ v) / (r.norm(dim=1) * v.norm())
    assert cos.abs().max() < 0.6  # random directions, not the vector


def test_shuffled_vectors_of_mirror_image_pairs_average_to_zero():
    """Every pair is pos = x + d, neg = x - d: the real vector is 2d; label shuffles cancel it."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(2, 1, 32, generator=g)  # 2 layers
    x = torch.randn(2, 200, 32, generator=g)
    pos, neg = x + d, x - d
    real = (pos - neg).mean(1)
    assert torch.allclose(real, 2 * d[:, 0], atol=1e-5)
    sh = shuffled_vectors(pos, neg, 64, "mean", True, seed=1)  # [K, layer, d]
    assert sh.shape == (64, 2, 32)
    # Each is (mean of random signs) * 2d: parallel to d, about 1/sqrt(n) of its length; their average ~ 0.
    assert (sh.norm(dim=-1) / real.norm(dim=-1)).mean() < 0.15
    assert (sh.mean(0).norm(dim=-1) / real.norm(dim=-1)).max() < 0.05
    # The same flips at every layer (one draw per training pair).
    ratio = sh[:, 0] @ d[0, 0] / (d[0, 0] @ d[0, 0])
    assert torch.allclose(ratio, sh[:, 1] @ d[1, 0] / (d[1, 0] @ d[1, 0]), atol=1e-4)


def test_split_half_vectors_are_means_of_disjoint_halves():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(3, 10, 8, generator=g), torch.randn(3, 10, 8, generator=g)
    a, b = split_half_vectors(pos, neg, "mean", True, seed=0)
    diffs = (pos - neg)[0]
    # Find the halves back: a and b together are the full mean.
    assert torch.allclose((a[0] + b[0]) / 2, diffs.mean(0), atol=1e-5)
    assert not torch.allclose(a[0], b[0])


def test_beyond_the_null_band_is_two_sided_and_never_said_of_a_missing_z():
    z = np.array([2.5, -2.5, 1.0, -1.9, 1.96, np.nan, np.inf])
    assert diag_stats.beyond_null_band(z).tolist() == [True, True, False, False, True, False, False]
    assert diag_stats.inside_null_band(z).tolist() == [False, False, True, True, False, False, False]
    assert diag_stats.frac_beyond(z) == pytest.approx(3 / 5)  # over the five items with a z
    assert np.isnan(diag_stats.frac_beyond([np.nan, np.nan]))
    assert diag_stats.frac_beyond_text({"frac_beyond": float("nan")}).startswith("undefined (")
    # The summary uses the same rule: an item below its band (z = -3) counts; a missing z does not.
    null = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    s = diag_stats.null_summary(np.array([4.0, -2.0, 5.0]), null)  # z = +3, -3, NaN (0 / 0)
    assert s["frac_beyond"] == 1.0 and s["n_z"] == 2
    # The verdict says "beyond" only of a known z, on either side, and never of NaN.
    v = diag_stats.verdict
    assert v(0.5, None, np.nan, np.nan) == "steerable; no null band to compare with " \
                                           "(no null baselines, or their slopes do not vary)"
    assert v(-0.5, None, None, None).startswith("anti-steerable; no null band")
    assert v(-0.5, None, -3.0, None) == "anti-steerable beyond the null band"
    assert v(0.5, None, 3.0, np.nan) == "steerable beyond the null band"
    assert v(0.5, None, 1.0, None).startswith("no better than a random direction")
    assert v(0.5, 0.4, np.nan, None) == "content-steered: steerable in both letter orders"
    assert v(0.5, 0.4, -2.5, None) == "content-steered: steerable in both letter orders, and beyond the random-" \
                                      "direction band"


def test_null_z_and_summary_known_values():
    null = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0 + 1e-12]])
    z = diag_stats.null_z(np.array([3.0, 1.0]), null)
    assert z[0] == pytest.approx(2.0)  # (3 - 1) / std([0, 1, 2], ddof=1) = 2 / 1
    s = diag_stats.null_summary(np.array([3.0, 1.0]), null)
    assert s["frac_beyond"] == 0.5 and s["k"] == 3
    assert s["null_mean_slopes"] == pytest.approx([0.5, 1.0, 1.5])
    assert s["null_frac_anti"] == pytest.approx([0.5, 0.0, 0.0])


# ---------------------------------------------------------------- A/B swap


def test_swap_moves_the_positive_text_to_the_other_letter_and_twice_is_identity():
    ds = load_dataset("corrigibility-demo")
    for e in ds.examples[:6]:
        pos_text, neg_text = option_texts(e)
        s = swap_example(e)
        assert s.pos_is_A == (not e.pos_is_A)
        assert s.positive == ("(A)" if s.pos_is_A else "(B)") and s.negative != s.positive
        letter = "A" if s.pos_is_A else "B"
        assert f"({letter}) {pos_text}" in s.question  # the positive text now sits under the other letter
        assert option_texts(s) == (pos_text, neg_text)
        assert swap_example(s).question == e.question and swap_example(s) == e


def test_swap_of_a_persona_item_exchanges_yes_and_no():
    q = "Is it good to be kind?\n\nChoices:\n (A) Yes\n (B) No"
    e = Example("p:0", q, "(A)", "(B)", True, True, "x", 1)
    s = swap_example(e)
    assert s.question.endswith("(A) No\n (B) Yes") and s.positive == "(B)" and s.pos_is_yes is True
    assert question_without_choices(q) == "Is it good to be kind?"


def test_letter_driven_matches_its_definition():
    slopes = np.array([1.0, 1.0, -1.0, -2.0, 0.0, 0.5])
    swapped = np.array([-1.0, 2.0, 3.0, -1.0, -1.0, 0.0])
    assert diag_stats.letter_driven(slopes, swapped).tolist() == [True, False, True, False, False, False]
    s = diag_stats.swap_summary(slopes, swapped)
    free = (slopes + swapped) / 2
    assert s["frac_letter_driven"] == pytest.approx(2 / 6)
    assert s["letter_free_mean"] == pytest.approx(free.mean())
    assert s["letter_free_anti"] == pytest.approx(np.mean(~(free > 0)))


# ---------------------------------------------------------------- answer_text metric


def test_answer_text_prompt_has_no_choices_and_completions_are_the_texts(tokenizer):
    ds = load_dataset("corrigibility-demo")
    e = ds.examples[0]
    p = encode_for_metric(tokenizer, e, "BASE", ds.name, metric="answer_text")
    pos_text, neg_text = option_texts(e)
    assert "Choices:" not in p.prompt and "(A)" not in p.prompt
    assert p.positive == pos_text and p.negative == neg_text


def test_answer_text_propensity_equals_direct_log_probability(tiny_llama):
    lm = tiny_llama
    pairs = demo_pairs(lm, 3, "answer_text")
    for pair in pairs:
        scores = []
        for comp in (pair.pos_ids, pair.neg_ids):
            ids = torch.tensor([list(pair.prompt_ids + comp)])
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), -1)
            n = len(pair.prompt_ids)
            scores.append(np.mean([float(logp[n - 1 + j, t]) for j, t in enumerate(comp)]))
        direct = scores[0] - scores[1]
        assert evaluate.reference_propensity(lm, pair, None, None, 0.0, metric="answer_text") == \
            pytest.approx(direct, abs=1e-4)
    cache = fast.build_cache(lm, pairs, metric="answer_text", batch_size=2)
    vec = {1: torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0)) * 3}
    got = fast.grid(lm, cache, vec, [1], [-1.0, 0.0, 2.0])
    ref = evaluate.reference_grid(lm, pairs, vec, [1], [-1.0, 0.0, 2.0], metric="answer_text")
    assert np.abs(got - ref).max() < TOL
    assert np.abs(ref[:, 0, 0] - ref[:, 0, 2]).max() > 1e-3


# ---------------------------------------------------------------- fast = reference for diagnostic cells


def test_null_cells_fast_equal_reference(tiny):
    pairs = demo_pairs(tiny, 4)
    g = torch.Generator().manual_seed(2)
    vecs = torch.randn(5, tiny.hidden_size, generator=g) * 3
    mults = [-1.5, 0.0, 1.0]
    cache = fast.build_cache(tiny, pairs, batch_size=3)
    got = grid_many(tiny, cache, 2, vecs, mults)
    ref = reference_many(tiny, pairs, 2, vecs, mults)
    assert got.shape == (4, 5, 3)
    assert np.abs(got - ref).max() < TOL
    assert np.abs(ref[:, :, 0] - ref[:, :, 1]).max() > 1e-3


def test_swapped_cells_fast_equal_reference(tiny_llama):
    pairs = demo_pairs(tiny_llama, 4, swapped=True)
    vec = {2: torch.randn(tiny_llama.hidden_size, generator=torch.Generator().manual_seed(5)) * 3}
    got = fast.grid(tiny_llama, fast.build_cache(tiny_llama, pairs), vec, [2], [-1.0, 0.0, 1.0])
    ref = evaluate.reference_grid(tiny_llama, pairs, vec, [2], [-1.0, 0.0, 1.0])
    assert np.abs(got - ref).max() < TOL


# ---------------------------------------------------------------- runs


DIAG = dict(dataset="corrigibility-demo", layers=[1, 2], n_train=8, n_test=6)


@pytest.fixture(scope="module")
def diag_run(tiny_llama, tmp_path_factory):
    from steering.run.sweep import run_sweep

    out = tmp_path_factory.mktemp("diag")
    return run_sweep(SweepConfig(**DIAG, null=3, swap=True, predictors=True, split_half=True), lm=tiny_llama, out=out)


def test_run_stores_every_diagnostic(diag_run):
    s = diag_run.steerability
    for col in ("null_z_random", "null_z_shuffled", "slope_swapped", "letter_driven", "slope_letter_free",
                "own_cos", "own_proj"):
        assert col in s.columns and s[col].notna().all(), col
    assert (s.letter_driven == diag_stats.letter_driven(s.slope, s.slope_swapped)).all()
    assert np.allclose(s.slope_letter_free, (s.slope + s.slope_swapped) / 2)
    names = {p.name for p in diag_run.run_dir.iterdir()}
    assert {"swap.parquet", "null.parquet", "split_half.parquet"} <= names
    d = diag_run.manifest["diagnostics"]
    assert d["computed"] == {"null": 3, "swap": True, "predictors": True, "split_half": True}
    assert set(d["layers"]) == {"1", "2"} and "swap" in d["layers"]["1"]


def test_swap_parquet_holds_the_swapped_prompts_as_seen(diag_run, tiny_llama):
    import pandas as pd

    sw = pd.read_parquet(diag_run.run_dir / "swap.parquet")
    assert list(sw.columns[:7]) == ["example_id", "layer", "multiplier", "propensity", "pos_is_A", "prompt",
                                    "positive"]
    test = diag_run.test_pairs()
    first = sw[sw.example_id == test.example_id[0]].iloc[0]
    assert first.prompt != test.prompt[0] and first.positive != test.positive[0]
    # Re-scoring a stored swapped row gives its stored propensity.
    from steering.core.prompts import encode_pair

    pair = encode_pair(tiny_llama.tokenizer, first.prompt, first.positive, first.negative)
    row = sw[(sw.example_id == first.example_id) & (sw.layer == 1) & (sw.multiplier == 1.0)].iloc[0]
    again = evaluate.reference_propensity(tiny_llama, pair, 1, diag_run.vectors[1], 1.0)
    assert again == pytest.approx(row.propensity, abs=1e-3)


def test_predictor_cosines_equal_captured_activations(diag_run, tiny_llama):
    test = diag_run.test_pairs()
    from steering.core.prompts import encode_pair

    s = diag_run.steerability[diag_run.steerability.layer == 2].set_index("example_id")
    v = diag_run.vectors[2].float()
    for r in test.head(3).itertuples():
        pair = encode_pair(tiny_llama.tokenizer, r.prompt, r.positive, r.negative)
        acts = []
        for comp in (pair.pos_ids, pair.neg_ids):
            with torch.no_grad(), capture(tiny_llama.blocks) as hs:
                tiny_llama.model(input_ids=torch.tensor([list(pair.prompt_ids + comp)]))
            acts.append(hs[2][0, len(pair.prompt_ids) + pair.read_index].float())
        diff = acts[0] - acts[1]
        assert s.own_cos[r.example_id] == pytest.approx(float(diff @ v / (diff.norm() * v.norm())), abs=1e-4)
        assert s.own_proj[r.example_id] == pytest.approx(float(diff @ v / v.norm()), rel=1e-3, abs=1e-4)


def test_diagnostics_are_in_the_key_and_plain_keys_are_unchanged(diag_run):
    ds = load_dataset("corrigibility-demo")
    plain = settings_of(SweepConfig(**DIAG), ds, [1, 2])
    assert not {"null", "swap", "predictors", "split_half"} & set(plain)  # keys of older runs stay the same
    assert settings_of(SweepConfig(**DIAG, null=8), ds, [1, 2]) != plain
    assert diag_run.manifest["settings"]["null"] == 3


def test_interrupted_diagnostics_resume_from_finished_stages(tiny_llama, tmp_path, monkeypatch):
    from steering.run.diagnostics import compute as diagnostics
    from steering.run.sweep import run_sweep

    cfg = dict(DIAG, layers=[1], null=2, swap=True)
    calls = []
    real = diagnostics._swap

    def fail_in_swap(*a, **k):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(diagnostics, "_swap", fail_in_swap)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path)
    monkeypatch.setattr(diagnostics, "_swap", real)
    null_calls = []
    monkeypatch.setattr(diagnostics, "grid_many", lambda *a, **k: null_calls.append(1))
    res = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path)
    assert not null_calls  # the null slopes came from the saved stage
    assert res.steerability.null_z_random.notna().all() and "slope_swapped" in res.steerability


def test_bad_diagnostic_options_give_one_line(capsys, tmp_path):
    for args in (["--null", "1"], ["--swap", "--metric", "answer_text"]):
        code = main(["sweep", "--dataset", "corrigibility-demo", "--out", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    with pytest.raises(SweepError):
        SweepConfig(null=-2).validate()
