"""Command line: ``python -m steering sweep|study|studies|report|generate|datasets|models``.

Bad input exits with code 2 and one line naming the problem and what is valid; a bug exits with code 1
and one line naming the log that holds its traceback (steering.cli.common.guarded).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys

from steering.cli import generate as generate_cli
from steering.cli import report as report_cli
from steering.cli import side as side_cli
from steering.cli import study as study_cli
from steering.cli.common import Bar, guarded
from steering.core.config import (
    CHOICES,
    DEFAULT_METRIC,
    DEFAULT_MULTIPLIERS,
    DEFAULT_POSITION,
    DEFAULT_VARIANT,
    SweepConfig,
    add_split_options,
    parse_layers,
    parse_multipliers,
)
from steering.core.datasets import list_datasets
from steering.core.registry import DEFAULT_MODEL, default_layer, list_models
from steering.engine.models import load_model
from steering.errors import SweepError
from steering.run.checks import check_seed, precheck_sweep
from steering.run.sweep import run_sweep


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (exit 2) like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m steering", description="Steering-vector reliability sweeps.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="train vectors and measure per-example steerability")
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--dataset", required=True, help="dataset name (found in --data-dir or bundled) or file path")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--layers", default=None,
                   help="13 | 0-29 | 1,5,9 | all (default: the registry's layer for the model, else the middle one)")
    s.add_argument("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS))
    add_split_options(s)
    s.add_argument("--train-variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    s.add_argument("--test-variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    s.add_argument("--no-rescale", action="store_true", help="keep PCA/logistic vectors unit length")
    s.add_argument("--metric", default=DEFAULT_METRIC, choices=CHOICES["metric"])
    s.add_argument("--position", default=DEFAULT_POSITION, choices=CHOICES["position"])
    s.add_argument("--balance-train", action="store_true",
                   help="as many positive-is-A as positive-is-B training pairs (cancels the letter direction)")
    s.add_argument("--multi-option", default="pair", choices=("pair", "keep"),
                   help="items with 3+ options: A/B pair of the named options (default), or keep all options")
    s.add_argument("--reference", action="store_true", help="use the slow full-forward reference path")
    s.add_argument("--null", type=int, default=0, metavar="K",
                   help="K random and K label-shuffled null vectors per layer (0: none; the dashboard uses 8)")
    s.add_argument("--swap", action="store_true", help="A/B swap: each test item with its options exchanged")
    s.add_argument("--predictors", action="store_true", help="per-example predictors of steerability")
    s.add_argument("--split-half", action="store_true", help="split-half stability of the vector")
    s.add_argument("--device", default=None)
    s.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="default: bfloat16 on CUDA, float32 on CPU")
    s.add_argument("--device-map", default=None, choices=("auto",),
                   help="spread a model too large for one GPU over this machine's GPUs")
    s.add_argument("--trust-remote-code", action="store_true")
    s.add_argument("--out", default="results")
    side_cli.add_sweep_options(s)
    side_cli.add_entanglement(sub)
    d = sub.add_parser("datasets", help="list datasets found in a directory and the bundled ones")
    d.add_argument("--data-dir", default=None)
    sub.add_parser("models", help="list the model registry")
    _add_ecosystem_commands(sub)
    study_cli.add_parsers(sub)
    generate_cli.add_parser(sub)
    report_cli.add_parser(sub)
    return p


def _add_ecosystem_commands(sub) -> None:
    """export, import and fetch (llama.cpp control vectors, static figures, public datasets)."""
    e = sub.add_parser("export", help="a run's vectors as a llama.cpp control vector, or its figures as PNG/SVG/HTML")
    e.add_argument("run_dir", help="a run directory (printed by sweep, under results/)")
    e.add_argument("--format", required=True, choices=("gguf", "png", "svg", "html"))
    e.add_argument("--to", required=True, help="output file (gguf, html) or folder (png, svg)")
    e.add_argument("--layers", default=None, help="gguf: layers to export (default: all but 0); figures: the layer")
    e.add_argument("--force", action="store_true", help="replace files that exist at --to (refused otherwise)")
    i = sub.add_parser("import", help="read a control vector (.gguf) or a .safetensors vector back and evaluate it")
    i.add_argument("file", help="a .gguf control vector or a .safetensors vector file with its .json sidecar")
    i.add_argument("--to", default=None, help="also write it as safetensors + JSON sidecar to this path")
    i.add_argument("--force", action="store_true", help="replace files that exist at --to (refused otherwise)")
    i.add_argument("--model", default=None, help="default: the model recorded in the file")
    i.add_argument("--dataset", default=None, help="evaluate on this dataset (default: the run it was exported from)")
    i.add_argument("--data-dir", default=None)
    i.add_argument("--layers", default=None, help="layers to evaluate (default: every layer in the file)")
    i.add_argument("--multipliers", default=None)
    i.add_argument("--n-train", type=int, default=None, help="items held out before the test split (default: as "
                   "recorded, so the test split is the original run's)")
    i.add_argument("--n-test", type=int, default=None)
    i.add_argument("--seed", type=int, default=None)
    i.add_argument("--device", default=None)
    i.add_argument("--out", default="results")
    f = sub.add_parser("fetch", help="download the paper's datasets (or one by name) from data/sources.json")
    f.add_argument("name", help="'paper' for all of them, or a source name (see --list)")
    f.add_argument("--cache-dir", default=None, help="default: ~/.cache/steerability/datasets")
    f.add_argument("--registry", default=None, help="a sources.json other than data/sources.json")


def _sweep(args) -> int:
    # Validate cheap things before loading a model.
    multipliers = parse_multipliers(args.multipliers)
    check_seed(args.seed)
    if args.side_effects:
        side_cli.side_config(args)  # bad side-effect options fail before the model loads
        if 0 not in multipliers:
            raise SweepError("--side-effects measures gains against multiplier 0: include 0 in --multipliers")
    from steering.core.datasets import load_dataset
    from steering.core.usable import run_split

    ds = load_dataset(args.dataset, args.data_dir, multi_option=args.multi_option)
    split = run_split(ds, args.n_train, args.n_test, args.seed, args.balance_train, args.metric)
    train_ex, test_ex = split.train, split.test
    SweepConfig(multipliers=multipliers, metric=args.metric, null=args.null, swap=args.swap).validate()
    precheck_sweep(args.model, ds.name, args.layers, args.seed, args.device, args.n_train, args.n_test, args.out,
                   train_ex + test_ex)
    with contextlib.redirect_stderr(io.StringIO()):  # no de-quantising progress bars ahead of a one-line error
        lm = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                        device_map=args.device_map)
    layers = (parse_layers(args.layers, lm.n_layers) if args.layers is not None
              else [default_layer(args.model, lm.n_layers)])
    cfg = SweepConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir, layers=layers,
                      multipliers=multipliers, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                      train_variant=args.train_variant, test_variant=args.test_variant,
                      aggregator=args.aggregator, rescale=not args.no_rescale, metric=args.metric,
                      position=args.position, balance_train=args.balance_train, reference=args.reference,
                      null=args.null, swap=args.swap, predictors=args.predictors, split_half=args.split_half)
    bar = Bar()
    try:
        result = run_sweep(cfg, lm=lm, out=args.out, progress=bar, dataset=ds)
    finally:
        bar.close()
    frac_a = result.manifest.get("train_frac_pos_is_A")
    print(f"model {lm.name} ({lm.n_layers} layers) | dataset {ds.name} | train {args.n_train} "
          f"({cfg.train_variant}{f', {frac_a:.0%} positive is A' if frac_a is not None else ''}) | "
          f"test {args.n_test} ({cfg.test_variant}) | path {result.manifest['path']}"
          f"{' | from store' if result.cached else ''} | {result.manifest['seconds']} s")
    from steering.core.usable import fallback_summary, skipped_summary

    for note in (skipped_summary(result.manifest.get("skipped_items") or []),
                 fallback_summary(result.manifest.get("reference_fallback_items") or 0)):
        if note:
            print(note)
    print(f"{'layer':>5} {'mean slope':>11} {'median':>8} {'anti-steerable':>15}  95% interval")
    for layer in result.layers:
        f = result.figures(layer)
        anti = (f"{'undefined':>15}  ({f.undefined['frac_anti']})" if "frac_anti" in f.undefined
                else f"{f.frac_anti:>15.1%}  [{f.frac_anti_lo:.1%}, {f.frac_anti_hi:.1%}]")
        print(f"{layer:>5} {f.mean_slope:>11.3f} {f.median_slope:>8.3f} {anti}")
    repeated = result.manifest.get("test_items_in_train") or []
    if repeated:
        print(f"warning: {len(repeated)} of {args.n_test} test items also appear in the training split "
              f"(duplicates in the file: {', '.join(repeated[:3])}{', ...' if len(repeated) > 3 else ''}); "
              "their steerability is not out of sample", file=sys.stderr)
    if "diagnostics" in result.manifest:
        from steering.run.diagnostics.compute import summary_lines

        print("\n".join(summary_lines(result.manifest["diagnostics"])))
    print(f"run directory: {result.run_dir}")
    if args.side_effects:
        side_cli.report(args, lm, result, ds, Bar())
    return 0


class _Note(logging.Handler):
    """Store notices (a damaged run moved to quarantine/) as one ``note:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)


def _models() -> int:
    print(f"{'name':<22} {'here':<14} {'layer':>5}  description / source / needs")
    for m in list_models():
        here = "installed" if m["installed"] else ("not downloaded" if m["hf_id"] else "not installed")
        layer = f"{m['default_layer']}/{m['n_layers']}" if m["default_layer"] is not None else "-"
        print(f"{m['name']:<22} {here:<14} {layer:>5}  {m['description']}")
        print(f"{'':<43}  {m['hf_id'] or 'GGUF'}: needs {m['needs']}"
              f"{'' if m['installed'] else '; ' + m['install']}")
    return 0


def _datasets(args) -> int:
    from steering.core.datasets import list_unreadable

    for info in list_datasets(args.data_dir):
        multi = f" ({info.n_multi_option} with >2 options)" if info.n_multi_option else ""
        print(f"{info.name:<55} {info.kind:<10} {info.n_items:>6}  {info.group}  {info.path}{multi}")
    bad = list_unreadable(args.data_dir)
    if bad:
        print(f"\n{len(bad)} file(s) not read as datasets:")
        for name, path, reason in bad:
            print(f"unreadable  {name:<44} {path}: {reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store_log = logging.getLogger("steering.store")
    if not any(isinstance(h, _Note) for h in store_log.handlers):
        store_log.addHandler(_Note())
        store_log.propagate = False
    return guarded(lambda: _command(args), getattr(args, "out", None), argv)


def _command(args) -> int:
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "entanglement":
        return side_cli.entanglement_main(args, Bar())
    if args.command in ("study", "studies"):
        return study_cli.run(args)
    if args.command == "generate":
        return generate_cli.main(args)
    if args.command == "report":
        return report_cli.run(args)
    if args.command == "datasets":
        return _datasets(args)
    if args.command in ("export", "import", "fetch"):
        from steering.cli import ecosystem as ecosystem_cli

        return ecosystem_cli.run(args)
    return _models()
