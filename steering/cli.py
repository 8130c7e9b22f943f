"""Command line: ``python -m steering sweep|study|studies|datasets|models``.

Bad input exits with code 2 and one line naming the problem and what is valid.
"""

from __future__ import annotations

import argparse
import sys
import time

from .datasets import DatasetError, list_datasets
from .models import DEFAULT_MODEL, ModelError, list_models, load_model
from .config import (CHOICES, DEFAULT_AGGREGATOR, DEFAULT_METRIC, DEFAULT_MULTIPLIERS, DEFAULT_N_TEST, DEFAULT_N_TRAIN,
                     DEFAULT_POSITION, DEFAULT_VARIANT, SweepConfig, SweepError, parse_layers, parse_multipliers)
from .sweep import run_sweep
from . import study_cli


class Bar:
    """A small progress bar with ETA on stderr, one line per phase."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.phase, self.t0 = stream, None, 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.time()
        if phase != self.phase:
            if self.phase is not None:
                self.stream.write("\n")
            self.phase, self.t0 = phase, now
        frac = done / max(total, 1)
        eta = (now - self.t0) / frac * (1 - frac) if frac > 0 else 0
        filled = int(30 * frac)
        self.stream.write(f"\r{phase:>5} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                          f"{now - self.t0:5.1f}s elapsed, ETA {eta:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.phase is not None:
            self.stream.write("\n")
            self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m steering", description="Steering-vector reliability sweeps.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="train vectors and measure per-example steerability")
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--dataset", required=True, help="dataset name (found in --data-dir or bundled) or file path")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--layers", default=None, help="13 | 0-29 | 1,5,9 | all (default: the middle layer)")
    s.add_argument("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_MULTIPLIERS))
    s.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN)
    s.add_argument("--n-test", type=int, default=DEFAULT_N_TEST)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--train-variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    s.add_argument("--test-variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    s.add_argument("--aggregator", default=DEFAULT_AGGREGATOR, choices=CHOICES["aggregator"])
    s.add_argument("--no-rescale", action="store_true", help="keep PCA/logistic vectors unit length")
    s.add_argument("--metric", default=DEFAULT_METRIC, choices=CHOICES["metric"])
    s.add_argument("--position", default=DEFAULT_POSITION, choices=CHOICES["position"])
    s.add_argument("--balance-train", action="store_true",
                   help="as many positive-is-A as positive-is-B training pairs (cancels the letter direction)")
    s.add_argument("--reference", action="store_true", help="use the slow full-forward reference path")
    s.add_argument("--device", default=None)
    s.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="default: bfloat16 on CUDA, float32 on CPU")
    s.add_argument("--device-map", default=None, choices=("auto",),
                   help="spread a model too large for one GPU over this machine's GPUs")
    s.add_argument("--trust-remote-code", action="store_true")
    s.add_argument("--out", default="results")
    d = sub.add_parser("datasets", help="list datasets found in a directory and the bundled ones")
    d.add_argument("--data-dir", default=None)
    sub.add_parser("models", help="list the model registry")
    study_cli.add_parsers(sub)
    return p


def _sweep(args) -> int:
    # Validate cheap things before loading a model.
    multipliers = parse_multipliers(args.multipliers)
    from .datasets import load_dataset, split_dataset

    ds = load_dataset(args.dataset, args.data_dir)
    split_dataset(ds, args.n_train, args.n_test, args.seed, args.balance_train)
    lm = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                    device_map=args.device_map)
    layers = parse_layers(args.layers, lm.n_layers) if args.layers else [lm.n_layers // 2]
    cfg = SweepConfig(model=args.model, dataset=args.dataset, data_dir=args.data_dir, layers=layers,
                      multipliers=multipliers, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                      train_variant=args.train_variant, test_variant=args.test_variant,
                      aggregator=args.aggregator, rescale=not args.no_rescale, metric=args.metric,
                      position=args.position, balance_train=args.balance_train, reference=args.reference)
    bar = Bar()
    try:
        result = run_sweep(cfg, lm=lm, out=args.out, progress=bar, dataset=ds)
    finally:
        bar.close()
    table = result.layer_table()
    frac_a = result.manifest.get("train_frac_pos_is_A")
    print(f"model {lm.name} ({lm.n_layers} layers) | dataset {ds.name} | train {args.n_train} "
          f"({cfg.train_variant}{f', {frac_a:.0%} positive is A' if frac_a is not None else ''}) | "
          f"test {args.n_test} ({cfg.test_variant}) | path {result.manifest['path']}"
          f"{' | from store' if result.cached else ''} | {result.manifest['seconds']} s")
    print(f"{'layer':>5} {'mean slope':>11} {'median':>8} {'anti-steerable':>15}  95% interval")
    for r in table.itertuples():
        print(f"{r.layer:>5} {r.mean_slope:>11.3f} {r.median_slope:>8.3f} {r.frac_anti:>15.1%}  "
              f"[{r.frac_anti_lo:.1%}, {r.frac_anti_hi:.1%}]")
    print(f"run directory: {result.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "sweep":
            return _sweep(args)
        if args.command in ("study", "studies"):
            return study_cli.run(args)
        if args.command == "datasets":
            for info in list_datasets(args.data_dir):
                print(f"{info.name:<55} {info.kind:<10} {info.n_items:>6}  {info.group}  {info.path}")
            return 0
        for m in list_models():
            print(f"{m['name']:<14} {'installed' if m['installed'] else 'not installed':<14} {m['description']}"
                  f"{'' if m['installed'] else '  (' + m['install'] + ')'}")
        return 0
    except (DatasetError, ModelError, SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr)
        return 2
