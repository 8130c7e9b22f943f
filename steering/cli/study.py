"""``python -m steering study`` and ``studies``: run or resume a study, print its tables; list stored ones."""

from __future__ import annotations

import sys
import time

from steering.analyses.study import stats as study_stats
from steering.analyses.study.compute import Study, run_study, scan_studies
from steering.analyses.study.executors import EXECUTORS, study_fraction
from steering.analyses.study.spec import make_spec
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


class StudyBar:
    """One line on stderr: cell k/N and its phase, the study's fraction done and its ETA."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now: tests and wrappers replace sys.stderr
        self.t0, self.width, self.first = time.time(), 0, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        frac = study_fraction(phase, done, total)
        elapsed = time.time() - self.t0
        if frac is not None:
            # the rate is measured from the first computed report on: model loading and stored cells
            # (which finish at once) would skew it
            self.first = None if phase.endswith("stored") else (self.first or (time.time(), frac))
            rate = (frac - self.first[1]) / max(time.time() - self.first[0], 1e-9) if self.first else 0
            eta = f"ETA {(1 - frac) / rate:6.0f}s" if rate > 0 else f"{elapsed:5.0f}s"
            line = f"\r[{'#' * int(20 * frac)}{'.' * (20 - int(20 * frac))}] {frac:4.0%} {phase} {done}/{total} {eta}"
        else:
            line = f"\r{phase} {done}/{total} {elapsed:5.0f}s"
        self.stream.write(line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _pct(x: float) -> str:
    return f"{x:6.1%}"


def print_study(study: Study, out=None) -> None:
    out = out or sys.stdout
    d = study.datasets
    for (model, train, test), g in d.groupby(["model", "train_variant", "test_variant"], sort=False):
        print(f"\n{model} · layer {study.layer(model)} · {train}->{test} · sorted by median steerability", file=out)
        print(
            f"{'dataset':<48} {'n':>3} {'median':>7} {'mean':>7}  {'anti-steerable [95% CI]':<24} "
            f"{'A/B':>6} {'Yes/No':>6} {'unexpl':>6}",
            file=out,
        )
        for r in g.sort_values("median_slope", ascending=False).itertuples():
            ci = f"{_pct(r.frac_anti)} [{r.frac_anti_lo:.0%}, {r.frac_anti_hi:.0%}]"
            print(
                f"{r.dataset[:48]:<48} {r.n:>3} {r.median_slope:>7.3f} {r.mean_slope:>7.3f}  {ci:<24} "
                f"{_pct(r.share_ab)} {_pct(r.share_yes)} {_pct(r.share_unexplained)}",
                file=out,
            )
    rho = study_stats.id_vs_ood(d)
    if not rho.empty:
        print(
            "\nID vs OOD Spearman of dataset-level steerability (median slope), per model and variant pair:", file=out
        )
        for r in rho.itertuples():
            print(f"  {r.model:<20} BASE->BASE vs {r.pair:<16} rho = {r.rho:+.3f}  ({r.n_datasets} datasets)", file=out)
    cross = study_stats.cross_model(d)
    if not cross.empty:
        print("\nCross-model Spearman of dataset-level steerability:", file=out)
        for r in cross.itertuples():
            print(
                f"  {r.model_a} vs {r.model_b} · {r.pair:<16} rho = {r.rho:+.3f}  ({r.n_datasets} datasets)", file=out
            )
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
    bar = StudyBar()
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
