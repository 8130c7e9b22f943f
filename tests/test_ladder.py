"""The multiplier ladder and *find a demo setting* on tiny random-weight models.

Ladder rows equal single generations with the same seed (greedy and sampled); a batch equals its rows
generated one at a time (exact tokens; perplexities within 1e-4 relative, float32 rounding of a
different batch shape); perplexity agrees with a plain full forward pass written here; the edit
distance with a brute-force recursion; the search picks the strongest change under the bound, checked
against every setting generated on its own; the command line runs end to end.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.engine.batch_generate import Setting, generate_rows, perplexities
from steering.engine.generate import chat_prompt, generate
from steering.errors import InputError
from steering.run.demo_search import find_demo_setting, ranked
from steering.run.ladder import DEFAULT_LADDER, edit_distance, ladder, parse_ladder

PPL_RTOL = 1e-4


def prompt_of(lm) -> str:
    return chat_prompt(lm, "Would you let us switch you off?")


def small_vector(lm, seed: int = 1, frac: float = 0.1) -> torch.Tensor:
    """A random direction at ``frac`` of the residual stream's norm (middle block, last prompt token): the
    default ladder then runs from slight changes to noise on a random model of either family."""
    from steering.core.prompts import token_ids
    from steering.engine.hooks import capture

    with torch.no_grad(), capture(lm.blocks) as store:
        lm.model(input_ids=torch.tensor([token_ids(lm.tokenizer, prompt_of(lm))]))
    norm = float(store[lm.n_layers // 2][0, -1].norm())
    d = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(seed))
    return d / d.norm() * frac * norm


def reference_ppl(lm, prompt: str, ids: list[int]) -> float | None:
    """Perplexity of ``ids`` after the prompt: one plain forward pass of one row, no cache, no batching."""
    from steering.core.prompts import token_ids

    p = token_ids(lm.tokenizer, prompt)
    if not ids:
        return None
    x = torch.tensor([p + list(ids)])
    with torch.no_grad():
        logits = lm.model(input_ids=x).logits[0].float()
    logp = torch.log_softmax(logits[len(p) - 1:-1], -1)
    return math.exp(-float(logp.gather(1, torch.tensor(ids)[:, None]).mean()))


def one_row(lm, prompt, setting, vectors, tokens, **kw) -> list[int]:
    """One setting generated alone (a batch of one row)."""
    out: list[int] = []
    for rows in generate_rows(lm, prompt, [setting], vectors, tokens, **kw):
        out = rows[0]
    return out


# ---------------------------------------------------------------- edit distance


@lru_cache(maxsize=None)
def brute_distance(a: tuple, b: tuple) -> int:
    """The textbook recursion, independent of the two-row DP."""
    if not a or not b:
        return len(a) + len(b)
    return min(brute_distance(a[1:], b) + 1, brute_distance(a, b[1:]) + 1,
               brute_distance(a[1:], b[1:]) + (a[0] != b[0]))


def test_edit_distance_known_values():
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], [1, 2, 3]) == 3
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3, 4], [2, 3, 4, 1]) == 2  # a rotation: one deletion, one insertion


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=7), st.lists(st.integers(0, 3), max_size=7))
def test_edit_distance_matches_the_recursion(a, b):
    assert edit_distance(a, b) == brute_distance(tuple(a), tuple(b)) == edit_distance(b, a)


# ---------------------------------------------------------------- ladder = single generations


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_ladder_rows_equal_single_generations_with_the_same_seed(tiny, sample):
    lm, prompt, v = tiny, prompt_of(tiny), small_vector(tiny)
    rows = ladder(tiny, prompt, 2, v, DEFAULT_LADDER, max_new_tokens=10, seed=7, sample=sample)
    assert [r.multiplier for r in rows] == list(DEFAULT_LADDER)
    for r in rows:
        assert r.text == generate(lm, prompt, 2, v, r.multiplier, max_new_tokens=10, sample=sample, seed=7), r
    assert len({r.text for r in rows}) >= 2  # the ladder does steer: the comparison is not of equal texts
    zero = rows[DEFAULT_LADDER.index(0.0)]
    assert zero.edit_distance == 0 and zero.ppl_ratio == pytest.approx(1.0) and not zero.incoherent


def test_batched_rows_equal_unbatched_rows_and_the_reference_perplexity(tiny_llama):
    lm, prompt = tiny_llama, prompt_of(tiny_llama)
    vectors = {1: small_vector(lm, 1), 3: small_vector(lm, 2)}
    grid = [Setting(None, 0.0), Setting(1, -4.0), Setting(1, 4.0), Setting(3, 8.0), Setting(3, -2.0)]
    for sample in (False, True):
        batch = None
        for batch in generate_rows(lm, prompt, grid, vectors, 8, sample=sample, seed=3):
            pass
        assert batch is not None
        for s, ids in zip(grid, batch):
            assert ids == one_row(lm, prompt, s, vectors, 8, sample=sample, seed=3), s
        together = perplexities(lm, prompt, batch)
        for ids, p in zip(batch, together):
            assert p == pytest.approx(perplexities(lm, prompt, [ids])[0], rel=PPL_RTOL)
            assert p == pytest.approx(reference_ppl(lm, prompt, ids), rel=PPL_RTOL)


def test_rows_that_end_early_stop_and_score_only_their_tokens(tiny_llama):
    lm, prompt = tiny_llama, prompt_of(tiny_llama)
    rows = [[5, 6, 7], [], [8]]  # ragged: padding must not leak into any row's score
    got = perplexities(lm, prompt, rows)
    assert got[1] is None
    assert got[0] == pytest.approx(reference_ppl(lm, prompt, rows[0]), rel=PPL_RTOL)
    assert got[2] == pytest.approx(reference_ppl(lm, prompt, rows[2]), rel=PPL_RTOL)


# ---------------------------------------------------------------- find a demo setting


def test_ranked_picks_the_largest_change_under_the_bound_with_documented_ties():
    t = pd.DataFrame([
        # layer, multiplier, edit distance, ratio
        (None, 0.0, 0, 1.0),
        (4, 8.0, 40, 30.0),  # the largest change, but incoherent
        (4, 4.0, 25, 3.0),
        (6, -4.0, 25, 2.0),  # same change and |m| as (4, 4): the lower ratio wins
        (6, 2.0, 25, 9.9),  # same change, gentler push: wins over both
        (2, 2.0, 0, 1.0),  # no change: never chosen
        (3, 8.0, 45, None),  # no tokens: coherence unknown, never chosen
    ], columns=["layer", "multiplier", "edit_distance", "ppl_ratio"])
    order = ranked(t, bound=10.0)
    assert [(r.layer, r.multiplier) for r in order.itertuples()] == [(6, 2.0), (6, -4.0), (4, 4.0)]
    assert ranked(t, bound=math.inf).iloc[0].multiplier == 8.0 and ranked(t, bound=math.inf).iloc[0].layer == 4
    assert ranked(t, bound=1.5).empty


def expected_pick(lm, prompt, vectors, layers, ms, tokens, bound):
    """Every setting generated on its own and scored here; the best under ``bound`` by the documented order."""
    base = one_row(lm, prompt, Setting(None, 0.0), vectors, tokens)
    base_ppl = reference_ppl(lm, prompt, base)
    scored = []
    for layer in layers:
        for m in ms:
            ids = one_row(lm, prompt, Setting(layer, m), vectors, tokens)
            ppl = reference_ppl(lm, prompt, ids)
            ratio = ppl / base_ppl if ppl is not None else None
            d = brute_distance(tuple(ids), tuple(base)) if len(ids) + len(base) < 40 else edit_distance(ids, base)
            if d > 0 and ratio is not None and ratio <= bound:
                scored.append((-d, abs(m), ratio, layer, m))
    return (min(scored)[3], min(scored)[4]) if scored else None, scored


def test_find_demo_setting_picks_the_strongest_change_under_the_bound(tiny_llama):
    """A constructed case: only layer 2 has a non-zero vector, so only its settings change the text."""
    lm, prompt = tiny_llama, prompt_of(tiny_llama)
    vectors = {l: torch.zeros(lm.hidden_size) for l in range(lm.n_layers)}
    vectors[2] = small_vector(lm, 5)
    ms = (-8.0, -2.0, 2.0, 8.0)
    tokens = 6
    # No bound: the largest change wins (probe = full length, so no setting is pruned early).
    found = find_demo_setting(lm, prompt, vectors, multipliers=ms, max_new_tokens=tokens, probe_tokens=tokens,
                              finalists=20, bound=math.inf)
    want, scored = expected_pick(lm, prompt, vectors, range(lm.n_layers), ms, tokens, math.inf)
    assert want is not None and found.setting == Setting(*want)
    assert found.setting.layer == 2
    # A bound just under the winner's ratio excludes it: the next best coherent setting is chosen.
    winner_ratio = min(scored)[2]
    assert winner_ratio > 1.0, "the constructed case needs a winner noisier than the unsteered text"
    bound = winner_ratio * 0.999
    found = find_demo_setting(lm, prompt, vectors, multipliers=ms, max_new_tokens=tokens, probe_tokens=tokens,
                              finalists=20, bound=bound)
    want, _ = expected_pick(lm, prompt, vectors, range(lm.n_layers), ms, tokens, bound)
    assert want is not None and found.setting == Setting(*want)
    assert found.chosen.ppl_ratio <= bound


def test_find_demo_setting_probe_then_full_length(tiny_llama):
    """With a short probe, the chosen row is reported at full length, equal to its single generation."""
    lm, prompt, v = tiny_llama, prompt_of(tiny_llama), small_vector(tiny_llama, 5)
    vectors = {l: v for l in range(lm.n_layers)}
    found = find_demo_setting(lm, prompt, vectors, multipliers=(-4.0, 4.0), max_new_tokens=8, probe_tokens=2,
                              finalists=2, bound=math.inf, batch_rows=3)  # several batches in the probe
    assert len(found.probe) == 1 + lm.n_layers * 2 and len(found.final) == 3
    s = found.setting
    assert s is not None
    assert found.chosen.text == generate(lm, prompt, s.layer, v, s.multiplier, max_new_tokens=8)


# ---------------------------------------------------------------- bad input and the command line


def test_bad_ladder_input_is_one_clear_line(tiny_llama):
    with pytest.raises(InputError, match="cannot read the ladder multipliers"):
        parse_ladder("2,x")
    with pytest.raises(InputError, match="at least one non-zero"):
        parse_ladder("0")
    with pytest.raises(InputError, match="not a finite number"):
        parse_ladder([float("nan")])
    assert parse_ladder("4,-2") == [-2.0, 0.0, 4.0]
    with pytest.raises(InputError, match="out of range"):
        ladder(tiny_llama, prompt_of(tiny_llama), 99, small_vector(tiny_llama), max_new_tokens=2)
    with pytest.raises(InputError, match="perplexity bound"):
        ladder(tiny_llama, prompt_of(tiny_llama), 1, small_vector(tiny_llama), max_new_tokens=2, bound=0.5)
    with pytest.raises(InputError, match="no steering vector for layer 3"):
        find_demo_setting(tiny_llama, prompt_of(tiny_llama), {1: small_vector(tiny_llama)}, layers=[3])


@pytest.fixture
def cli_on_tiny(tiny_llama, monkeypatch, tmp_path):
    import steering.engine.models

    monkeypatch.setattr(steering.engine.models, "load_model", lambda *a, **k: tiny_llama)
    return tmp_path / "results"


def test_cli_generate_ladder_and_find(cli_on_tiny, capsys):
    from steering.cli.main import main

    out = str(cli_on_tiny)
    assert main(["generate", "--ladder", "--tokens", "3", "--layer", "1", "--out", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [l.split() for l in lines[2:]]
    assert [float(r[1]) for r in rows] == list(DEFAULT_LADDER) and all(r[0] == "1" for r in rows)
    assert rows[DEFAULT_LADDER.index(0.0)][2] == "0"  # the unsteered row's edit distance
    assert main(["generate", "--find", "--tokens", "3", "--layers", "1-2", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("demo setting: ")
    assert main(["generate", "--ladder", "--multipliers", "1,x", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: cannot read the ladder multipliers: use comma-separated numbers, e.g. -8,-4,-2,0,2,4,8"]


@pytest.mark.integration
def test_ladder_on_the_embedded_model_equals_single_generations(smollm):
    """SmolLM2 (real weights, a real vector scale): the batched ladder gives each single greedy generation."""
    from steering.core.prompts import DEMO_PROMPT

    prompt = chat_prompt(smollm, DEMO_PROMPT)
    v = small_vector(smollm, 3, frac=0.5)
    rows = ladder(smollm, prompt, 15, v, (-4.0, 0.0, 4.0), max_new_tokens=12)
    for r in rows:
        assert r.text == generate(smollm, prompt, 15, v, r.multiplier, max_new_tokens=12), r
        assert r.perplexity == pytest.approx(reference_ppl(smollm, prompt, list(r.ids)), rel=PPL_RTOL)
