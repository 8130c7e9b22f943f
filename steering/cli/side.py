"""Command-line parts for side effects: ``sweep --side-effects`` options and ``entanglement``.

Kept apart from cli.py so that file only wires them in.
"""

from __future__ import annotations

import argparse

from steering.analyses.side_effects.compute import SideEffectsConfig
from steering.analyses.side_effects.tradeoff import DEFAULT_KL_BUDGET, describe
from steering.cli.common import load_quietly
from steering.core.config import CHOICES, DEFAULT_VARIANT, SweepConfig, add_split_options, check_multipliers
from steering.core.registry import DEFAULT_MODEL
from steering.errors import ValidationError


def add_sweep_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("side effects")
    g.add_argument("--side-effects", action="store_true",
                   help="also measure KL / perplexity on neutral text, capability and a recommended setting")
    g.add_argument("--text", default=None, help="neutral text file (.txt paragraphs or .jsonl with 'text'), or a "
                                                "registered public source (neutral-botchan: downloaded once, "
                                                "checksum verified); default: the bundled paragraphs")
    g.add_argument("--mc", default=None, help="multiple-choice file or dataset name (default: TruthfulQA mc1 "
                                              "when --data-dir has it, else the bundled general-knowledge set)")
    g.add_argument("--n-texts", type=int, default=SideEffectsConfig.n_texts)
    g.add_argument("--text-tokens", type=int, default=SideEffectsConfig.text_tokens)
    g.add_argument("--n-mc", type=int, default=SideEffectsConfig.n_mc)
    g.add_argument("--kl-budget", type=float, default=DEFAULT_KL_BUDGET, help="nats per token")


def side_config(args) -> SideEffectsConfig:
    se = SideEffectsConfig(text=args.text, mc=args.mc, n_texts=args.n_texts, text_tokens=args.text_tokens,
                           n_mc=args.n_mc, kl_budget=args.kl_budget)
    se.validate()
    from steering.analyses.side_effects.compute import mc_dataset
    from steering.analyses.side_effects.neutral import read_texts

    read_texts(se.text)  # a missing or empty file fails here, before any model work
    mc_dataset(se.mc, getattr(args, "data_dir", None))
    return se


def report(args, lm, result, ds, progress) -> None:
    """Compute (or read) the run's side effects and print them with the recommendation."""
    from steering.analyses.side_effects.compute import ensure

    df, rec, cached = ensure(lm, result, ds, side_config(args), args.out, args.data_dir, progress)
    if hasattr(progress, "close"):
        progress.close()
    info = result.manifest["side_effects"]
    print(f"side effects{' (from store)' if cached else ''}: {info['n_texts']} neutral texts "
          f"({info['n_text_tokens']} tokens), capability on {info['settings']['mc_name']} "
          f"({info['mc_items']} items), validation {info['n_val']} training items | {info['seconds']} s")
    print(f"{'layer':>5} {'mult':>5} {'KL':>8} {'ppl ratio':>9} {'MC acc':>7} {'val gain':>9} {'test gain':>9}")
    for r in df[df.multiplier > 0].itertuples():
        print(f"{r.layer:>5} {r.multiplier:>5g} {r.kl:>8.4f} {r.ppl_ratio:>9.3f} {r.mc_accuracy:>7.1%} "
              f"{r.val_gain:>9.3f} {r.test_gain:>9.3f}")
    print(describe(rec))


def add_entanglement(sub) -> None:
    e = sub.add_parser("entanglement", help="cross-concept matrix: X's vector measured on Y's test items")
    e.add_argument("--study", default=None, help="a stored study: its concepts, layer and settings (the vectors "
                                                 "its cells trained are reused); --model/--pair pick within it")
    e.add_argument("--pair", default=None, help="with --study: the variant pair TRAIN:TEST (default: its first)")
    e.add_argument("--model", default=None, help=f"default: {DEFAULT_MODEL}, or the study's first model")
    e.add_argument("--datasets", default=None, help="comma-separated concept names or files (at least two)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--layer", type=int, default=None, help="required without --study")
    e.add_argument("--multiplier", type=float, default=1.0)
    add_split_options(e)
    e.add_argument("--variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    e.add_argument("--out", default="results")


def _from_args(args) -> tuple[str, list[str], int, SweepConfig]:
    """(model, concepts, layer, settings) from --study or from --datasets/--layer and the split options."""
    from steering.analyses.side_effects.entanglement import from_study
    from steering.core.datasets import load_dataset
    from steering.core.usable import run_split

    if args.study:
        if args.datasets or args.layer is not None:
            raise ValidationError("give either --study or --datasets/--layer, not both")
        from steering.analyses.study.compute import load_study

        pair = tuple(args.pair.split(":")) if args.pair else None
        names, layer, base = from_study(load_study(args.out, args.study), args.model, pair)
        return base.model, names, layer, base
    if not args.datasets or args.layer is None:
        raise ValidationError("entanglement needs --datasets A,B,... and --layer L, or --study NAME")
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if len(names) < 2:
        raise ValidationError("entanglement needs at least two concepts, e.g. --datasets A,B")
    if args.n_train < 1 or args.n_test < 1:
        raise ValidationError("n_train and n_test must be at least 1")
    model = args.model or DEFAULT_MODEL
    base = SweepConfig(model=model, data_dir=args.data_dir, n_train=args.n_train, n_test=args.n_test,
                       seed=args.seed, aggregator=args.aggregator, train_variant=args.variant,
                       test_variant=args.variant)
    for n in names:  # cheap checks before loading the model: the split the runs will draw
        run_split(load_dataset(n, args.data_dir), args.n_train, args.n_test, args.seed, metric=base.metric)
    return model, names, args.layer, base


def entanglement_main(args, progress) -> int:
    from steering.analyses.side_effects.entanglement import entanglement, matrix
    model, names, layer, base = _from_args(args)
    if float(args.multiplier) != 0:  # 0 has its own message from entanglement()
        check_multipliers([0.0, float(args.multiplier)])  # before the model loads, not after
    lm = load_quietly(model)
    df = entanglement(lm, names, layer, base, args.out, args.multiplier, progress)
    if hasattr(progress, "close"):
        progress.close()
    m = matrix(df)
    source = f" (study {args.study}, {base.train_variant}->{base.test_variant})" if args.study else ""
    print(f"entanglement on {lm.name}{source}, layer {layer}, multiplier {args.multiplier:g}: rows = steered with X, "
          f"columns = shift on Y's test items / Y's own shift")
    width = max(len(n) for n in m.index)
    print(" " * width + "".join(f" {j:>8}" for j in range(len(m.columns))))
    for i, (name, row) in enumerate(m.iterrows()):
        print(f"{name:<{width}}" + "".join(f" {v:>8.2f}" for v in row.to_numpy()) + f"   [{i}]")
    from steering.analyses.side_effects.entanglement import weak_columns

    weak = weak_columns(df)
    if weak:
        print(f"barely moved by their own vector (own shift under a tenth of the median), so their columns divide by "
              f"almost nothing: {', '.join(weak)}")
    return 0
