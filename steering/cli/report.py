"""``python -m steering report``: the reliability report card of a vector, or of every concept of a stored study.

Reads every analysis the store already holds, computes what is missing (with progress; Ctrl-C keeps what
finished), prints one line per criterion and writes report.json and a self-contained report.html.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

from steering.analyses.report import criteria as cr
from steering.analyses.report import html as report_html
from steering.analyses.report.card import NAMES, Card, build
from steering.analyses.report.figures import card_figures
from steering.analyses.report.parts import Parts, complete, find, steps
from steering.analyses.side_effects.compute import SideEffectsConfig
from steering.cli.common import Bar
from steering.core.config import (
    CHOICES,
    DEFAULT_METRIC,
    DEFAULT_MULTIPLIERS,
    SweepConfig,
    add_split_options,
    parse_multipliers,
)
from steering.core.registry import DEFAULT_MODEL, TINY_MODEL
from steering.core.store import settings_key
from steering.errors import ValidationError

SHORT = {"steers": "steers", "chance": "chance", "reliable": "per-input", "letter": "letter", "stable": "stable",
         "generalises": "OOD", "beats": "vs-asking", "affordable": "cost"}


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="the reliability report card of a steering vector (or a stored study's concepts)",
                       description="Thresholds (--threshold NAME=VALUE): " + "; ".join(
                           f"{t['name']}={t['default']:g}" for t in cr.threshold_table()))
    r.add_argument("--dataset", default=None, help="dataset name (found in --data-dir or bundled) or file path")
    r.add_argument("--study", default=None, help="a stored study: one row of marks per concept (read from the store)")
    r.add_argument("--model", default=DEFAULT_MODEL)
    r.add_argument("--data-dir", default=None)
    r.add_argument("--layer", type=int, default=None, help="required with --dataset")
    r.add_argument("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS))
    add_split_options(r)
    r.add_argument("--metric", default=DEFAULT_METRIC, choices=CHOICES["metric"])
    r.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE", help="override a threshold")
    r.add_argument("--no-compute", action="store_true", help="only read the store; list what is missing")
    r.add_argument("--compute", action="store_true", help="with --study: compute every concept's missing parts")
    g = r.add_argument_group("side effects (when they must be computed)")
    g.add_argument("--text", default=None, help="neutral text file or registered source (default: bundled)")
    g.add_argument("--mc", default=None, help="multiple-choice set (default: TruthfulQA mc1 in --data-dir, "
                                              "else the bundled set)")
    g.add_argument("--n-texts", type=int, default=SideEffectsConfig.n_texts)
    g.add_argument("--text-tokens", type=int, default=SideEffectsConfig.text_tokens)
    g.add_argument("--n-mc", type=int, default=SideEffectsConfig.n_mc)
    r.add_argument("--out", default="results", help="the results store (default: results/)")
    r.add_argument("--report-dir", default=None, help="where report.json and report.html go "
                                                      "(default: <out>/reports/<dataset>--<model>--L<layer>--<key>/)")


def _side_config(args) -> SideEffectsConfig:
    from steering.analyses.side_effects.compute import mc_dataset
    from steering.analyses.side_effects.neutral import read_texts

    se = SideEffectsConfig(text=args.text, mc=args.mc, n_texts=args.n_texts, text_tokens=args.text_tokens,
                           n_mc=args.n_mc)
    se.validate()
    read_texts(se.text)  # a missing file fails before the model loads
    mc_dataset(se.mc, args.data_dir)
    return se


def _load(model: str, pool: dict):
    from steering.analyses.study.executors import get_model

    with contextlib.redirect_stderr(io.StringIO()):  # no de-quantising progress bars
        return get_model(model, pool)


def _complete(parts: Parts, args, lm) -> Parts:
    bar = Bar()

    def step(i: int, n: int, label: str) -> None:
        bar.close()
        if i < n:
            print(f"[{i + 1}/{n}] {label}", file=sys.stderr)

    try:
        return complete(parts, lm, args.out, _side_config(args), args.data_dir, progress=bar, step=step)
    finally:
        bar.close()


def _origin(parts: Parts) -> str:
    stored = [p for p, o in parts.origin.items() if o == "store"]
    computed = [f"{p} {parts.seconds.get(p, 0):.0f} s" for p, o in parts.origin.items() if o == "computed"]
    return f"from store: {', '.join(stored) or 'nothing'}; computed: {', '.join(computed) or 'nothing'}"


def print_card(card: Card, out=None) -> None:
    out = out or sys.stdout
    print("\n".join(card.lines()), file=out)
    print(f"verdict: {card.verdict}", file=out)
    print(f"shifts and costs read at layer {card.setting['layer']}, multiplier {card.setting['multiplier']:g}: "
          f"{card.setting['why']}", file=out)
    if card.worst:
        print(f"five worst inputs (by {card.worst_by}; open them in Inspect examples):", file=out)
        for r in card.worst:
            free = f", letter-free {r['slope_letter_free']:+.3g}" if "slope_letter_free" in r else ""
            print(f"  {r['example_id']}: slope {r['slope']:+.3g}{free} | {r['question'][:90]}", file=out)


def _dataset_report(args, th: cr.Thresholds) -> int:
    from steering.core.datasets import load_dataset, split_dataset
    from steering.run.checks import check_seed, precheck_sweep

    if not args.dataset or args.layer is None:
        raise ValidationError("report needs --dataset NAME and --layer L (or --study NAME)")
    multipliers = parse_multipliers(args.multipliers)
    check_seed(args.seed)
    ds = load_dataset(args.dataset, args.data_dir)
    train_ex, test_ex = split_dataset(ds, args.n_train, args.n_test, args.seed)
    base = SweepConfig(model=args.model, dataset=ds.name, data_dir=args.data_dir, layers=[args.layer],
                       multipliers=multipliers, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                       aggregator=args.aggregator, metric=args.metric)
    base.validate()
    if args.model != TINY_MODEL:
        precheck_sweep(args.model, ds.name, str(args.layer), args.seed, None, args.n_train, args.n_test, args.out,
                       train_ex + test_ex)
    started = time.time()
    parts = find(base, ds, args.layer, args.out)
    if parts.missing() and not args.no_compute:
        _side_config(args)  # bad side-effect options fail before the model loads
        print(f"computing {len(steps(parts))} missing part(s): {', '.join(parts.missing())}", file=sys.stderr)
        lm = _load(args.model, {})
        base.validate(lm.n_layers)
        try:
            parts = _complete(parts, args, lm)
        except KeyboardInterrupt:
            print("interrupted: finished parts are stored; run the same command again to resume", file=sys.stderr)
            return 130
    card = build(parts, th)
    print(f"report card: {ds.name} on {args.model}, layer {args.layer} ({args.metric}) | "
          f"{time.time() - started:.1f} s | {_origin(parts)}")
    print_card(card)
    folder = Path(args.report_dir) if args.report_dir else Path(args.out) / "reports" / (
        f"{ds.name}--{Path(args.model).name}--L{args.layer}--{settings_key(card.settings)}")
    json_path, html_path = report_html.write(card, card_figures(parts, card), folder)
    print(f"wrote {json_path} and {html_path}")
    return 0


def _study_report(args, th: cr.Thresholds) -> int:
    from steering.analyses.report import study_table
    from steering.analyses.study.compute import load_study

    study = load_study(args.out, args.study)
    if args.compute:
        pool: dict = {}
        for model in study.spec.models:
            for dataset in study.meta.get("dataset_paths", {}):
                parts = study_table.concept_parts(study, args.out, model, dataset)
                if parts.missing():
                    print(f"{model} · {dataset}: computing {', '.join(parts.missing())}", file=sys.stderr)
                    _complete(parts, args, _load(model, pool))
    df = study_table.table(study, args.out, th)
    marks = {cr.GREEN: "G", cr.AMBER: "A", cr.RED: "R", cr.MISSING: "-", cr.UNDEFINED: "?"}
    width = max([len(d) for d in df.dataset] + [7])
    print(f"study {study.name}: one row per concept (G green, A amber, R red, - missing, ? undefined)")
    print(f"{'model':<16} {'dataset':<{width}} " + " ".join(f"{SHORT[k]:>9}" for k in NAMES) + "  missing")
    for r in df.to_dict(orient="records"):
        cells = " ".join(f"{marks[r[name]]:>9}" for name in NAMES.values())
        missing = "?" if r["missing"] is None or r["missing"] != r["missing"] else int(r["missing"])
        print(f"{r['model'][:16]:<16} {r['dataset']:<{width}} {cells}  {missing}")
    return 0


def run(args) -> int:
    th = cr.Thresholds().with_overrides(cr.parse_overrides(args.threshold))
    return _study_report(args, th) if args.study else _dataset_report(args, th)
