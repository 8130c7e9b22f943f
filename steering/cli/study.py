"""``python -m steering study`` and ``studies``: run or resume a study, print its tables; list stored ones."""

from __future__ import annotations

import sys

from steering.analyses.study import stats as study_stats
from steering.analyses.study.compute import Study, run_study, scan_studies, skipped_lines
from steering.analyses.study.executors import EXECUTORS, study_measure
from steering.analyses.study.spec import make_spec
from steering.cli.common import Bar
from steering.core.config import CHOICES, DEFAULT_METRIC, DEFAULT_MULTIPLIERS, add_split_options, parse_multipliers
from steering.core.registry import DEFAULT_MODEL


def add_parsers(sub) -> None:
    s = sub.add_parser("study", help="many sweeps (models x datasets x prompt variants) gathered into one study")
    s.add_argument("--name", required=True)
    s.add_argument("--models", default=DEFAULT_MODEL, help="comma-separated, e.g. smollm2-135m,gemma3-270m")
    s.add_argument("--datasets", required=True, help="paper-figure1 | paper | bundled | NAME,... (names or paths)")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--variants", default="id,ood", help="id | ood | all | TRAIN:TEST, comma-separated")
    s.add_argument("--layer", default="0.4", help="index (12), relative depth (0.4), best, or MODEL=RULE,...")
    s.add_argument("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS))
    add_split_options(s)
    s.add_argument("--metric", default=DEFAULT_METRIC, choices=CHOICES["metric"])
    s.add_argument("--balance-train", action="store_true")
    s.add_argument("--replace", action="store_true", help="replace a stored study of this name with other settings")
    s.add_argument("--executor", default="local", choices=EXECUTORS)
    s.add_argument("--ray-address", default=None, help="Ray cluster address (with --executor ray)")
    s.add_argument("--out", default="results")
    ls = sub.add_parser("studies", help="list stored studies")
    ls.add_argument("--out", default="results")


def _pct(x: float) -> str:
    return f"{x:6.1%}" if x is not None and x == x else f"{'undef':>6}"  # NaN: not estimable, never "nan%"


def _rho(rho: float, n: int) -> str:
    return f"rho = {rho:+.3f}" if rho == rho else "rho undefined (needs 3+ datasets whose values vary)"


def print_study(study: Study, out=None) -> None:
    out = out or sys.stdout
    d = study.datasets
    for (model, train, test), g in d.groupby(["model", "train_variant", "test_variant"], sort=False):
        print(f"\n{model} · layer {study.layer(model)} · {train}->{test} · sorted by median steerability", file=out)
        print(
            f"{'dataset':<48} {'n':>3} {'median':>7} {'mean':>7}  {'anti-steerable [95% CI]':<24} "
            f"{'A/B':>9} {'Yes/No':>9} {'unexpl':>9}",
            file=out,
        )
        for r in g.sort_values("median_slope", ascending=False).itertuples():
            ci = (f"{_pct(r.frac_anti)} [{r.frac_anti_lo:.0%}, {r.frac_anti_hi:.0%}]" if r.frac_anti == r.frac_anti
                  else "undefined")
            print(
                f"{r.dataset[:48]:<48} {r.n:>3} {r.median_slope:>7.3f} {r.mean_slope:>7.3f}  {ci:<24} "
                f"{study_stats.share_text(r.share_ab, 9)} {study_stats.share_text(r.share_yes, 9)} "
                f"{study_stats.share_text(r.share_unexplained, 9)}",
                file=out,
            )
            if r.share_why:
                print(f"{'':<4}{r.share_why}", file=out)
    rho = study_stats.id_vs_ood(d)
    if not rho.empty:
        print(
            "\nID vs OOD Spearman of dataset-level steerability (median slope), per model and variant pair:", file=out
        )
        for r in rho.itertuples():
            print(f"  {r.model:<20} BASE->BASE vs {r.pair:<16} {_rho(r.rho, r.n_datasets)}  ({r.n_datasets} datasets)",
                  file=out)
    cross = study_stats.cross_model(d)
    if not cross.empty:
        print("\nCross-model Spearman of dataset-level steerability:", file=out)
        for r in cross.itertuples():
            print(
                f"  {r.model_a} vs {r.model_b} · {r.pair:<16} {_rho(r.rho, r.n_datasets)}  ({r.n_datasets} datasets)",
                file=out,
            )
    for line in skipped_lines(study.meta):
        print(line, file=out)
    fallback = [c for c in study.meta["cells"] if c.get("reference_fallback_items")]
    if fallback:
        print(f"{len(fallback)} cells evaluated {sum(c['reference_fallback_items'] for c in fallback)} items on the "
              "reference path (longer than the model's sliding window: same numbers, slower)", file=out)
    reused = sum(bool(c.get("vectors_reused")) for c in study.meta["cells"])
    print(
        f"\n{len(study.meta['cells'])} cells ({reused} reused a stored vector) · study directory: {study.path}",
        file=out,
    )


def run(args) -> int:
    if args.command == "studies":
        found, damaged = scan_studies(args.out)
        if not found and not damaged:
            print(f"no studies under {args.out}/studies")
        for s in found:
            layers = ", ".join(f"{m} L{l}" for m, l in s["layers"].items())
            print(
                f"{s['name']:<24} {s['n_cells']:>4} cells  {s['n_datasets']:>3} datasets x {s['n_pairs']} pairs  "
                f"{layers}  {s['created'][:19]}  {s['path']}"
            )
        for d in damaged:  # the others are listed above: one damaged study never hides them
            print(f"{d['name']:<24} damaged: {d['path']}/{d['file']}: {d['reason']}")
        return 0
    options = {"ray_address": args.ray_address} if args.executor == "ray" and args.ray_address else {}
    spec = make_spec(
        args.name,
        args.models,
        args.datasets,
        args.variants,
        args.layer,
        args.data_dir,
        multipliers=parse_multipliers(args.multipliers),
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        aggregator=args.aggregator,
        metric=args.metric,
        balance_train=args.balance_train,
    )
    bar = Bar(measure=study_measure)
    try:
        study = run_study(spec, args.out, progress=bar, executor=args.executor, replace=args.replace, **options)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: finished cells are stored; run the same command again to resume", file=sys.stderr)
        return 130
    except BaseException:
        if bar.width:  # an error line must not continue the progress line
            bar.close()
        raise
    bar.close()
    print_study(study)
    return 0
