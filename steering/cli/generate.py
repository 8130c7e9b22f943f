"""``python -m steering generate``: steered text from the command line.

``--ladder``: the prompt at several multipliers on one layer (one batched generation), each row with its
perplexity under the unsteered model and its token edit distance from the unsteered row. ``--find``:
search layers x multipliers for the strongest change that stays coherent, then show the ladder there.
Without either: the unsteered and the steered text at ``--multiplier``.
Vectors come from a stored run (``--vectors RUN_DIR``) or are trained for ``--dataset`` as the sweep
trains them (read from the vector store under ``--out`` when trained before).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from steering.cli.common import Bar
from steering.core.config import CHOICES, DEFAULT_AGGREGATOR, DEFAULT_POSITION, DEFAULT_VARIANT, SweepConfig
from steering.core.datasets import DEFAULT_DATASET
from steering.core.prompts import DEMO_PROMPT
from steering.core.registry import DEFAULT_MODEL
from steering.errors import ValidationError
from steering.run.ladder import DEFAULT_LADDER, PPL_BOUND

LABELS = {"generate": "Generating (tokens)", "train": "Training vectors", "probe": "Probing layers x multipliers",
          "final": "Generating the best settings in full"}


def add_parser(sub) -> None:
    g = sub.add_parser("generate", help="steered generations: a multiplier ladder, or find a demo setting")
    g.add_argument("--prompt", default=DEMO_PROMPT, help="the user turn (default: the Live steering page's prompt)")
    g.add_argument("--raw", action="store_true", help="use --prompt as is, without the chat template")
    g.add_argument("--model", default=DEFAULT_MODEL)
    g.add_argument("--dataset", default=DEFAULT_DATASET, help="the concept whose vectors steer")
    g.add_argument("--data-dir", default=None)
    g.add_argument("--vectors", default=None, help="a run directory whose vectors to use (instead of training)")
    g.add_argument("--layer", type=int, default=None, help="default: the registry's layer for the model")
    g.add_argument("--ladder", action="store_true", help="generate at every --multipliers value at once")
    g.add_argument("--multipliers", default=",".join(f"{m:g}" for m in DEFAULT_LADDER))
    g.add_argument("--multiplier", type=float, default=2.0, help="without --ladder: the steered multiplier")
    g.add_argument("--find", action="store_true", help="search layers x multipliers for a demo setting")
    g.add_argument("--layers", default=None, help="--find: layers to search (default: every layer)")
    g.add_argument("--ppl-bound", type=float, default=PPL_BOUND,
                   help="incoherent above this many times the unsteered text's perplexity")
    g.add_argument("--tokens", type=int, default=48, help="new tokens per row")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--sample-seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--position", default=DEFAULT_POSITION, choices=CHOICES["position"])
    g.add_argument("--n-train", type=int, default=None, help="default: the dashboard's split for the dataset")
    g.add_argument("--n-test", type=int, default=None)
    g.add_argument("--seed", type=int, default=0, help="split seed (which items train the vector)")
    g.add_argument("--aggregator", default=DEFAULT_AGGREGATOR, choices=CHOICES["aggregator"])
    g.add_argument("--train-variant", default=DEFAULT_VARIANT, choices=CHOICES["variant"])
    g.add_argument("--device", default=None)
    g.add_argument("--out", default="results")


def _vectors(args, lm, bar) -> dict:
    if args.vectors:
        from steering.core.vectors import load_vectors

        path = Path(args.vectors) / "vectors.safetensors"
        if not path.is_file():
            raise ValidationError(f"{args.vectors} holds no vectors.safetensors: give a run directory")
        vectors, meta = load_vectors(path)
        trained_on = meta.model if meta is not None else None
        if trained_on not in (None, "", lm.name) or any(v.numel() != lm.hidden_size for v in vectors.values()):
            raise ValidationError(f"the vectors in {args.vectors} were trained on {trained_on or 'another model'}, "
                                  f"not {lm.name}")
        return {l: v.to(lm.device, lm.dtype) for l, v in vectors.items()}
    from steering.core.datasets import default_split, load_dataset
    from steering.run.demo_search import concept_vectors

    ds = load_dataset(args.dataset, args.data_dir)
    n_train, n_test = default_split(ds)
    cfg = SweepConfig(model=lm.name, dataset=ds.name, n_train=args.n_train or n_train, n_test=args.n_test or n_test,
                      seed=args.seed, aggregator=args.aggregator, train_variant=args.train_variant)
    return concept_vectors(lm, ds, cfg, args.out, bar)


def _missing(x) -> bool:
    return x is None or x != x  # None in a Row, NaN in a table


def print_rows(rows, bound: float) -> None:
    """Ladder rows (``Row``) or a search table's rows (``DataFrame.itertuples()``), one line each."""
    print(f"{'layer':>5} {'mult':>6} {'edit':>5} {'ppl':>9} {'ratio':>7}  text (incoherent: ratio > {bound:g}x)")
    for r in rows:
        ppl = f"{'n/a':>9}" if _missing(r.perplexity) else f"{r.perplexity:9.3g}"
        ratio = f"{'n/a':>7}" if _missing(r.ppl_ratio) else f"{r.ppl_ratio:6.2f}x"
        layer = "-" if _missing(r.layer) else str(int(r.layer))
        mark = "  [incoherent]" if r.incoherent else ""
        text = " ".join(r.text.split()) or "(no tokens before end of text)"
        print(f"{layer:>5} {r.multiplier:>6g} {r.edit_distance:>5} {ppl} {ratio}  {text}{mark}")


def main(args) -> int:
    from steering.core.registry import default_layer
    from steering.engine.generate import chat_prompt
    from steering.engine.models import load_model
    from steering.run.demo_search import find_demo_setting
    from steering.run.ladder import check_bound, ladder_stream, parse_ladder

    multipliers = parse_ladder(args.multipliers if args.ladder or args.find else [args.multiplier])
    bound = check_bound(args.ppl_bound)
    if not args.prompt.strip():
        raise ValidationError("--prompt is empty: give the text of the user turn")
    with contextlib.redirect_stderr(io.StringIO()):  # no loading bars ahead of a one-line error
        lm = load_model(args.model, device=args.device)
    layer = lm.check_layer(args.layer) if args.layer is not None else default_layer(args.model, lm.n_layers)
    prompt = args.prompt if args.raw else chat_prompt(lm, args.prompt)
    bar = Bar(labels=LABELS)
    vectors = _vectors(args, lm, bar)
    kw = dict(max_new_tokens=args.tokens, seed=args.sample_seed, sample=args.sample, temperature=args.temperature,
              mode=args.position)
    if args.find:
        from steering.core.config import parse_layers

        layers = parse_layers(args.layers, lm.n_layers) if args.layers else sorted(vectors)
        found = find_demo_setting(lm, prompt, vectors, layers, multipliers, bound=bound, progress=bar, **kw)
        bar.close()
        print(f"demo setting: {found.reason}")
        if len(found.final):
            print("the settings compared at full length:")
            print_rows(found.final.itertuples(), bound)
            print()
        if found.setting is None:
            return 0
        layer = found.setting.layer
    if layer not in vectors:
        raise ValidationError(f"no vector for layer {layer}: the vectors cover layers {sorted(vectors)}")
    last = None
    for last in ladder_stream(lm, prompt, layer, vectors[layer], multipliers, bound=bound, **kw):
        if last.rows is None:  # the last update repeats the last step, with the scores
            bar("generate", last.step, last.total)
    bar.close()
    assert last is not None and last.rows is not None
    print(f"model {lm.name} | layer {layer} | {args.tokens} new tokens | "
          f"{'sampled, seed ' + str(args.sample_seed) if args.sample else 'greedy'}")
    print_rows(last.rows, bound)
    return 0

