"""The reliability report card (issue 18) on the tiny random model: marks at, just above and just below each
threshold; Wilson and t intervals against scipy; the prompting baseline's fast path against the reference
path and against propensities computed one by one; every number on the card against the stored file it
came from; a card with parts missing; the study table; the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from steering.analyses.report import criteria as cr
from steering.analyses.report import prompting
from steering.analyses.report.card import build
from steering.analyses.report.parts import card_config, complete, find, plain_config
from steering.cli.main import main
from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset, split_dataset
from steering.core.swap import encode_for_metric
from steering.engine.reference import reference_propensity
from steering.engine.tiny import tiny_random_model
from steering.errors import InputError, SweepError
from steering.run.sweep import run_sweep

LAYER, N_TRAIN, N_TEST = 2, 16, 12
EPS = 1e-9
ARGS = ["--model", "tiny-random", "--dataset", "corrigibility-demo", "--layer", str(LAYER), "--n-train", str(N_TRAIN),
        "--n-test", str(N_TEST)]


@pytest.fixture(scope="module")
def lm():
    return tiny_random_model()


@pytest.fixture(scope="module")
def ds():
    return load_dataset("corrigibility-demo")


def base_config(lm, ds, **kw) -> SweepConfig:
    return SweepConfig(model=lm.name, dataset=ds.name, n_train=N_TRAIN, n_test=N_TEST, **kw)


@pytest.fixture(scope="module")
def full(lm, ds, tmp_path_factory):
    """Every part of the card computed into a fresh store: (parts, store)."""
    out = tmp_path_factory.mktemp("report")
    parts = complete(find(base_config(lm, ds), ds, LAYER, out), lm, out)
    assert parts.missing() == []
    return parts, out


# ---------------------------------------------------------------- intervals and marks


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (1, 3), (37, 50), (0, 1)])
def test_wilson_interval_matches_scipy(k, n):
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert cr.wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert cr.wilson(0, 0) is None


def test_mean_interval_by_hand():
    m, lo, hi = cr.mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert (m, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert cr.mean_interval([5.0]) == (5.0, None, None)  # an interval from one item is undefined


TH = cr.Thresholds()
G, A, R = cr.GREEN, cr.AMBER, cr.RED


@pytest.mark.parametrize("name,mark,cases", [
    # lower is better: at the green threshold green, just above amber; at the red threshold amber, just above red
    ("anti", lambda v: cr.mark_reliable(v, None, TH), [(TH.anti_green, G), (TH.anti_green + EPS, A),
                                                        (TH.anti_green - EPS, G), (TH.anti_red, A),
                                                        (TH.anti_red + EPS, R), (TH.anti_red - EPS, A)]),
    ("letter", lambda v: cr.mark_letter(v, TH), [(TH.letter_green, G), (TH.letter_green + EPS, A),
                                                (TH.letter_green - EPS, G), (TH.letter_red, A),
                                                (TH.letter_red + EPS, R), (TH.letter_red - EPS, A)]),
    ("ppl", lambda v: cr.mark_affordable(True, v, 0.0, TH), [(TH.ppl_green, G), (TH.ppl_green + EPS, A),
                                                             (TH.ppl_green - EPS, G), (TH.ppl_red, A),
                                                             (TH.ppl_red + EPS, R), (TH.ppl_red - EPS, A)]),
    ("mc_drop", lambda v: cr.mark_affordable(True, 1.0, v, TH), [(TH.mc_drop_green, G), (TH.mc_drop_green + EPS, A),
                                                                 (TH.mc_drop_green - EPS, G), (TH.mc_drop_red, A),
                                                                 (TH.mc_drop_red + EPS, R),
                                                                 (TH.mc_drop_red - EPS, A)]),
    # higher is better: at the green threshold green, just below amber; at the red threshold amber, just below red
    ("cosine", lambda v: cr.mark_stable(v, 1.0, TH), [(TH.split_cos_green, G), (TH.split_cos_green - EPS, A),
                                                      (TH.split_cos_green + EPS, G), (TH.split_cos_red, A),
                                                      (TH.split_cos_red - EPS, R), (TH.split_cos_red + EPS, A)]),
    ("rho", lambda v: cr.mark_stable(1.0, v, TH), [(TH.split_rho_green, G), (TH.split_rho_green - EPS, A),
                                                   (TH.split_rho_green + EPS, G), (TH.split_rho_red, A),
                                                   (TH.split_rho_red - EPS, R), (TH.split_rho_red + EPS, A)]),
    ("ood", lambda v: cr.mark_generalises({"SYS_POS": 1.0, "USER_NEG": v}, TH),
     [(TH.ood_green, G), (TH.ood_green - EPS, A), (TH.ood_green + EPS, G), (TH.ood_red, A), (TH.ood_red - EPS, R),
      (TH.ood_red + EPS, A)]),
    ("beats", lambda v: cr.mark_beats(v, TH), [(TH.beats_green, G), (TH.beats_green - EPS, A),
                                               (TH.beats_green + EPS, G), (TH.beats_red, A),
                                               (TH.beats_red - EPS, R), (TH.beats_red + EPS, A)]),
    ("beyond", lambda v: cr.mark_chance(1.0, 0.5, 0.5, v, TH), [(TH.beyond_green, G), (TH.beyond_green - EPS, A),
                                                                (TH.beyond_green + EPS, G)]),
    # the mean slope against the random null range's top: at it red (inside), just above not red
    ("null", lambda v: cr.mark_chance(v, 0.5, 0.0, 1.0, TH), [(0.5, R), (0.5 + EPS, G), (0.5 - EPS, R)]),
    # the letter-free interval must lie strictly above 0; the mean at 0 is red
    ("steers lo", lambda v: cr.mark_steers(1.0, v), [(0.0, A), (EPS, G), (-EPS, A)]),
    ("steers mean", lambda v: cr.mark_steers(v, -1.0), [(0.0, R), (EPS, A), (-EPS, R)]),
])
def test_each_mark_at_just_above_and_just_below_its_threshold(name, mark, cases):
    for value, expected in cases:
        assert mark(value) == expected, (name, value)


def test_no_affordable_setting_is_red_and_the_worse_of_two_marks_decides():
    assert cr.mark_affordable(False, 1.0, 0.0, TH) == R
    assert cr.mark_reliable(0.0, TH.anti_red + EPS, TH) == R  # as given fine, letter-free bad
    assert cr.mark_stable(1.0, TH.split_rho_red - EPS, TH) == R


def test_thresholds_are_overridable_and_checked():
    th = cr.Thresholds().with_overrides(cr.parse_overrides(["anti_green=0.1", "kl_budget=0.5"]))
    assert (th.anti_green, th.kl_budget, th.anti_red) == (0.1, 0.5, TH.anti_red)
    assert all(t["source"] and t["label"] for t in cr.threshold_table())
    with pytest.raises(InputError, match="unknown threshold 'nope'"):
        cr.Thresholds().with_overrides({"nope": 1})
    with pytest.raises(InputError, match="must not exceed"):
        cr.Thresholds(anti_green=0.5, anti_red=0.4)
    with pytest.raises(InputError, match="NAME=VALUE"):
        cr.parse_overrides(["anti_green"])


# ---------------------------------------------------------------- the prompting baseline


def test_shifts_by_hand():
    base = np.array([[[1.0, 2.0, 4.0]]])  # one item, one layer, multipliers -1, 0, 1
    sys_ = np.array([[[0.0, 5.0, 9.0]]])
    s = prompting.shifts(base, {"SYS_POS": sys_}, [-1.0, 0.0, 1.0])
    assert s["steer"].tolist() == [[[-1.0, 0.0, 2.0]]]
    assert s["ask_sys"].tolist() == [[3.0]]  # 5 - 2
    assert s["both_sys"].tolist() == [[[-2.0, 3.0, 7.0]]]
    with pytest.raises(SweepError, match="include 0"):
        prompting.shifts(base, {}, [-1.0, 0.5, 1.0])


@pytest.mark.parametrize("metric", ["logit_diff", "answer_text"])
def test_prompting_fast_path_equals_reference_path(lm, ds, metric):
    cfg = base_config(lm, ds, multipliers=[-1.0, 0.0, 1.5], metric=metric)
    _, test_ex = split_dataset(ds, N_TRAIN, N_TEST, 0)
    g = np.random.default_rng(0)
    vectors = {l: torch.tensor(g.normal(size=lm.hidden_size), dtype=torch.float32) for l in (1, 3)}
    variants = ["BASE", *prompting.ASK_VARIANTS]
    fast = prompting.grids(lm, ds, cfg, test_ex[:4], vectors, [1, 3], variants)
    ref = prompting.grids(lm, ds, replace(cfg, reference=True), test_ex[:4], vectors, [1, 3], variants)
    for v in variants:
        np.testing.assert_allclose(fast[v], ref[v], rtol=1e-4, atol=1e-4)
    assert not np.allclose(fast["SYS_POS"], fast["BASE"])  # asking does change the propensities


def test_baseline_shifts_equal_propensities_computed_one_by_one(full, lm, ds):
    parts, _ = full
    df = parts.prompting
    run = parts.run
    vector = run.vectors[LAYER]
    _, test_ex = split_dataset(ds, N_TRAIN, N_TEST, 0)
    e = test_ex[3]
    pair = {v: encode_for_metric(lm.tokenizer, e, v, ds.name) for v in ("BASE", "SYS_POS", "USER_POS")}
    p0 = {v: reference_propensity(lm, p, None, None, 0.0) for v, p in pair.items()}
    row = df[(df.example_id == e.example_id) & (df.layer == LAYER) & (df.multiplier == 1.5)].iloc[0]
    assert row.ask_sys == pytest.approx(p0["SYS_POS"] - p0["BASE"], abs=1e-4)
    assert row.ask_user == pytest.approx(p0["USER_POS"] - p0["BASE"], abs=1e-4)
    steered = reference_propensity(lm, pair["BASE"], LAYER, vector, 1.5)
    assert row.steer == pytest.approx(steered - p0["BASE"], abs=1e-4)
    both = reference_propensity(lm, pair["SYS_POS"], LAYER, vector, 1.5)
    assert row.both_sys == pytest.approx(both - p0["BASE"], abs=1e-4)


def test_baseline_is_stored_and_an_interrupted_one_resumes(lm, ds, tmp_path, monkeypatch):
    cfg = plain_config(card_config(base_config(lm, ds), LAYER))
    run = run_sweep(cfg, lm=lm, out=tmp_path, dataset=ds)
    calls = []
    real = prompting.evaluate_grid

    def flaky(lm_, pairs, *a, **k):
        calls.append(pairs[0].prompt)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user leaves during USER_POS
        return real(lm_, pairs, *a, **k)

    monkeypatch.setattr(prompting, "evaluate_grid", flaky)
    with pytest.raises(KeyboardInterrupt):
        prompting.ensure(lm, run, ds, tmp_path)
    assert len(calls) == 2  # BASE came from the run's own grid; SYS_POS finished, USER_POS did not
    df, info, cached = prompting.ensure(lm, run, ds, tmp_path)
    assert len(calls) == 3 and not cached  # only USER_POS again
    assert prompting.ensure(lm, run, ds, tmp_path)[2]  # then from the store
    monkeypatch.setattr(prompting, "evaluate_grid", real)
    fresh = prompting.grids(lm, ds, replace(cfg, multipliers=sorted(cfg.multipliers)),
                            split_dataset(ds, N_TRAIN, N_TEST, 0)[1], run.vectors, [LAYER], prompting.ASK_VARIANTS)
    np.testing.assert_allclose(df.p_user.to_numpy(), fresh["USER_POS"].reshape(-1), atol=1e-5)
    assert not list(tmp_path.glob(".partial-*"))
    assert json.loads((run.run_dir / "manifest.json").read_text())["prompting"]["key"] == info["key"]


# ---------------------------------------------------------------- the card against its sources


def _run_dirs(out: Path) -> dict[str, Path]:
    """Run directories by test variant (plain runs) and 'diag' (the diagnostics run), read from manifests."""
    found = {}
    for m in out.glob("*/manifest.json"):
        s = json.loads(m.read_text())["settings"]
        found["diag" if s.get("null") else s["test_variant"]] = m.parent
    return found


def test_every_number_on_the_card_equals_its_stored_source(full):
    parts, out = full
    card = build(parts, cr.Thresholds(kl_budget=1e9))  # every multiplier affordable: a recommendation exists
    dirs = _run_dirs(out)
    run_dir = dirs["diag"]
    assert card.run_dir == str(run_dir)
    s = pd.read_parquet(run_dir / "steerability.parquet")
    s = s[s.layer == LAYER]
    diag = json.loads((run_dir / "manifest.json").read_text())["diagnostics"]["layers"][str(LAYER)]
    n = len(s)

    x = s.slope_letter_free.to_numpy()
    num = card.row("steers").numbers
    lo, hi = sps.t.interval(0.95, n - 1, loc=x.mean(), scale=sps.sem(x))
    assert (num["mean"], num["lo"], num["hi"]) == pytest.approx((x.mean(), lo, hi))
    assert num["mean_abs_given"] == pytest.approx(s.slope.abs().mean())

    num = card.row("chance").numbers
    for key, (kind, field) in {"mean_slope": ("random", "mean_slope"), "random_lo": ("random", "null_mean_lo"),
                               "random_hi": ("random", "null_mean_hi"), "shuffled_lo": ("shuffled", "null_mean_lo"),
                               "shuffled_hi": ("shuffled", "null_mean_hi"),
                               "beyond_shuffled": ("shuffled", "frac_beyond")}.items():
        assert num[key] == pytest.approx(diag[f"null_{kind}"][field]), key
    z = s.null_z_random.to_numpy(dtype=float)  # beyond the band (|z| > 1.96) on the steered side, finite z only
    known = np.isfinite(z)
    assert num["beyond"] == pytest.approx(np.mean((np.abs(z[known]) > 1.959963984540054) & (z[known] > 0)))

    num = card.row("reliable").numbers
    assert num["anti_given"] == pytest.approx(np.mean(~(s.slope > 0)))
    assert num["anti_free"] == pytest.approx(np.mean(~(s.slope_letter_free > 0)))
    assert num["anti_free"] == pytest.approx(diag["swap"]["letter_free_anti"])
    ci = sps.binomtest(num["anti_given_k"], n).proportion_ci(method="wilson")
    assert (num["anti_given_lo"], num["anti_given_hi"]) == pytest.approx((ci.low, ci.high))

    assert card.row("letter").numbers["letter_driven"] == pytest.approx(diag["swap"]["frac_letter_driven"])

    split = pd.read_parquet(run_dir / "split_half.parquet").set_index("layer").loc[LAYER]
    num = card.row("stable").numbers
    assert (num["cosine"], num["spearman"]) == pytest.approx((split.cosine, split.spearman))

    num = card.row("generalises").numbers
    assert num["id_median"] == pytest.approx(np.median(s.slope))
    for v in ("SYS_POS", "SYS_NEG", "USER_POS", "USER_NEG"):
        ood = pd.read_parquet(dirs[v] / "steerability.parquet")
        assert num[f"median_{v}"] == pytest.approx(ood.slope.median()), v

    side = pd.read_parquet(run_dir / "side_effects.parquet")
    ok = side[side.multiplier > 0]
    best = ok.loc[ok.val_gain.idxmax()]  # the recommendation, chosen on validation gain
    num = card.row("affordable").numbers
    if best.val_gain > 0:
        assert (num["layer"], num["multiplier"]) == (best.layer, best.multiplier)
        for key in ("kl", "ppl_ratio", "mc_drop", "mc_accuracy"):
            assert num[key] == pytest.approx(best[key]), key
    else:  # no setting helps on validation items: no recommendation; shifts are read at the largest multiplier
        assert num == {"found": False}
        best = pd.Series({"layer": LAYER, "multiplier": max(ok.multiplier)})

    base = pd.read_parquet(run_dir / "prompting.parquet")
    g = base[(base.layer == LAYER) & (base.multiplier == best.multiplier)]
    num = card.row("beats").numbers
    assert num["multiplier"] == best.multiplier
    for key, col in {"steer_mean": "steer", "ask_SYS_POS_mean": "ask_sys", "ask_USER_POS_mean": "ask_user",
                     "both_SYS_POS_mean": "both_sys", "both_USER_POS_mean": "both_user"}.items():
        assert num[key] == pytest.approx(g[col].mean()), key
    ask = "ask_sys" if g.ask_sys.mean() >= g.ask_user.mean() else "ask_user"
    assert num["wins"] == pytest.approx(np.mean(g.steer > g[ask]))

    # The JSON report holds the same numbers, and no NaN.
    def no_nan(c):
        raise AssertionError(f"{c} in report.json")

    written = json.loads(json.dumps(card.to_json(), allow_nan=False), parse_constant=no_nan)
    assert {r["key"]: r["numbers"] for r in written["rows"]}["chance"] == pytest.approx(card.row("chance").numbers)


@pytest.mark.parametrize("key,value_of,green,red", [
    ("reliable", lambda n: max(n["anti_given"], n["anti_free"]), "anti_green", "anti_red"),
    ("letter", lambda n: n["letter_driven"], "letter_green", "letter_red"),
])
def test_card_marks_follow_thresholds_at_just_above_and_below_its_number(full, key, value_of, green, red):
    parts, _ = full
    v = value_of(build(parts).row(key).numbers)
    assert build(parts, cr.Thresholds(**{green: v, red: 1.0})).row(key).mark == G  # at the green threshold
    assert build(parts, cr.Thresholds(**{green: v - EPS, red: v})).row(key).mark == A  # just above it; at red
    assert build(parts, cr.Thresholds(**{green: 0.0, red: v - EPS})).row(key).mark == R  # just above red


def test_undefined_is_said_with_its_reason_never_as_a_number(full):
    parts, _ = full
    card = build(parts)
    gen = card.row("generalises")
    if gen.numbers["id_median"] > 0:
        pytest.skip("the tiny model's ID median is positive here")
    assert gen.mark == cr.UNDEFINED and gen.summary.startswith("undefined (the in-distribution median slope")
    assert not any(k.startswith("ratio_") for k in gen.numbers)
    assert "undefined" in card.verdict or "fails" in card.verdict


def test_card_with_missing_parts_says_which_and_completes_only_those(lm, ds, tmp_path, capsys):
    base = base_config(lm, ds)
    run_sweep(plain_config(card_config(base, LAYER)), lm=lm, out=tmp_path, dataset=ds)  # the plain run only
    parts = find(base, ds, LAYER, tmp_path)
    card = build(parts)
    assert card.missing == ["diagnostics", "ood", "side_effects", "prompting"]
    by = {r.key: r for r in card.rows}
    for key in ("steers", "chance", "letter", "stable", "generalises", "beats", "affordable"):
        assert by[key].mark == cr.MISSING and by[key].summary.startswith("missing: ") and "compute it" in \
            by[key].summary, key
    assert "anti_given" in by["reliable"].numbers and by["reliable"].missing == ["diagnostics"]
    assert all(r.name in card.verdict for r in card.rows if r.mark == cr.MISSING)
    text = " ".join(r.summary for r in card.rows) + card.verdict
    assert not re.search(r"\bnan\b", text, re.I)

    assert main(["report", *ARGS, "--out", str(tmp_path), "--no-compute"]) == 0  # offers, computes nothing
    printed = capsys.readouterr().out
    assert printed.count("missing: ") >= 7 and ("Not decided yet" in printed or "not yet computed" in printed)
    assert len(list(tmp_path.glob("*/manifest.json"))) == 1

    parts = complete(parts, lm, tmp_path)
    assert parts.origin["run"] == "store" and parts.run.manifest["vectors_reused"]  # the plain run's training
    assert build(parts).missing == [] and all(r.mark != cr.MISSING for r in build(parts).rows)


# ---------------------------------------------------------------- CLI and study table


def test_cli_prints_one_line_per_criterion_and_writes_both_files(full, capsys, tmp_path):
    _, out = full
    assert main(["report", *ARGS, "--out", str(out), "--report-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "from store: run, diagnostics, ood, side_effects, prompting; computed: nothing" in printed
    assert len(re.findall(r"^\[(GREEN|AMBER|RED|MISSING|UNDEFINED) *\] ", printed, re.M)) == 8
    assert "verdict: " in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["steers at all", "better than chance", "reliable per input",
                                                   "not the answer letter", "stable", "generalises", "beats asking",
                                                   "affordable"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("class='figure'") == 4 and "Plotly.newPlot" in html  # plotly.js inlined, once
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # nothing fetched from elsewhere
    assert main(["report", *ARGS, "--out", str(out), "--threshold", "bogus=1"]) == 2


def test_study_table_one_row_per_concept_and_reuses_the_studys_cells(lm, tmp_path, capsys):
    from steering.analyses.report.study_table import concept_parts, table
    from steering.analyses.study.compute import run_study
    from steering.analyses.study.spec import make_spec

    spec = make_spec("rc", "tiny-random", "corrigibility-demo,optimism-demo", "id,ood", str(LAYER), n_train=N_TRAIN,
                     n_test=N_TEST)
    study = run_study(spec, tmp_path, models={lm.name: lm})
    df = table(study, tmp_path)
    assert list(df.dataset) == ["corrigibility-demo", "optimism-demo"]
    assert (df["generalises"] != cr.MISSING).all()  # the study's OOD cells are the card's OOD runs
    assert (df["steers at all"] == cr.MISSING).all() and (df.missing == 3).all()

    parts = complete(concept_parts(study, tmp_path, "tiny-random", "optimism-demo"), lm, tmp_path)
    cells = {c["run_dir"] for c in study.meta["cells"] if c["dataset"] == "optimism-demo"}
    assert parts.origin["ood"] == "store" and {r.run_dir.name for r in parts.ood.values()} <= cells
    df = table(study, tmp_path).set_index("dataset")
    card = build(concept_parts(study, tmp_path, "tiny-random", "optimism-demo"))
    assert df.loc["optimism-demo", "missing"] == 0 and df.loc["corrigibility-demo", "missing"] == 3
    assert [df.loc["optimism-demo", r.name] for r in card.rows] == [r.mark for r in card.rows]
    assert df.loc["optimism-demo", "verdict"] == card.verdict

    assert main(["report", "--study", "rc", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("tiny-random") for line in lines) == 2
