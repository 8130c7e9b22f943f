"""A study against its floor and against training a vector per cell, in one process on the same inputs.

    .venv/bin/python bench/bench_study.py [--datasets 13] [--n-train 100] [--n-test 50] [--variants id,ood]
        [--threads N] [--no-no-reuse]

Default: the paper-figure1 study on SmolLM2 at layer 0.4 (13 datasets x 5 variant pairs), 100 train /
50 test items. ``--datasets K`` keeps the first K concepts (a reduced run for a busy CPU). Prints:
study time (fresh store, one training per dataset and train variant), the floor (one unsteered,
batched forward pass over every distinct prompt of the study, train and test, with its positive
answer), the time with a vector trained for every cell (no reuse), and their ratios.

The floor runs before and after the study and the ratio is against their mean: on a shared machine the
load changes within minutes, and one floor timed in a quiet minute against a study timed in a busy one
(or the reverse) measures the load, not the study. Floors more than 25% apart are flagged as such.
The floor runs every prompt whole; the study shares each batch's common head (chat template, persona
sentence) and so can come in under it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import Targets, add_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering.analyses.study.compute import load_datasets, run_study  # noqa: E402
from steering.analyses.study.spec import make_spec, paper_datasets  # noqa: E402
from steering.core.datasets import split_dataset  # noqa: E402
from steering.core.prompts import encode_example  # noqa: E402
from steering.engine.models import load_model  # noqa: E402
from steering.run import sweep  # noqa: E402


@torch.no_grad()
def floor_pass(lm, seqs: list[list[int]], batch_size: int = 16) -> None:
    """Unsteered batched forward over the given token sequences (sorted by length, right-padded)."""
    seqs = sorted(seqs, key=len)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        w = max(map(len, chunk))
        ids = torch.tensor([s + [pad] * (w - len(s)) for s in chunk], device=lm.device)
        mask = torch.tensor([[1] * len(s) + [0] * (w - len(s)) for s in chunk], device=lm.device)
        # the decoder body over every token, the vocabulary head only at each sequence's last token (as the
        # fast path forms logits only where it scores answers; a full-vocabulary head at every position
        # would cost more than the whole body for this small model and flatter every ratio)
        body = lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.model
        h = body(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(1) - 1
        lm.model.get_output_embeddings()(h[torch.arange(len(chunk)), last])


def timed_floor(lm, seqs: list[list[int]]) -> float:
    t = time.perf_counter()
    floor_pass(lm, seqs)
    return time.perf_counter() - t


def distinct_prompts(lm, spec, datasets) -> list[list[int]]:
    """Every prompt the study's model reads: train items per train variant, test items per test variant."""
    seqs = set()
    for ds in datasets.values():
        train, test = split_dataset(ds, spec.n_train, spec.n_test, spec.seed, spec.balance_train)
        for items, variants in ((train, {p[0] for p in spec.variants}), (test, {p[1] for p in spec.variants})):
            for v in variants:
                for e in items:
                    p = encode_example(lm.tokenizer, e, v, ds.name)
                    seqs.add(p.prompt_ids + p.pos_ids)
    return [list(s) for s in seqs]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=13, help="first K concepts of paper-figure1")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--variants", default="id,ood")
    ap.add_argument("--layer", default="0.4")
    ap.add_argument(
        "--no-reuse", action=argparse.BooleanOptionalAction, default=True, help="also time a vector trained per cell"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    add_data_dir(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # one thread times steadily beside another user's work
    names = paper_datasets(figure1_only=True)[: args.datasets]
    spec = make_spec(
        "bench",
        "smollm2-135m",
        names,
        args.variants,
        args.layer,
        args.data_dir,
        n_train=args.n_train,
        n_test=args.n_test,
    )
    lm = load_model("smollm2-135m")
    sys.stdout.reconfigure(line_buffering=True)
    datasets = load_datasets(spec)
    n_cells = len(names) * len(spec.variants)
    print(
        f"SmolLM2-135M on {torch.get_num_threads()} threads · {len(names)} datasets x {len(spec.variants)} "
        f"variant pairs = {n_cells} cells · {args.n_train} train / {args.n_test} test · layer rule {args.layer}"
    )

    seqs = distinct_prompts(lm, spec, datasets)
    before = timed_floor(lm, seqs)
    print(f"floor: one batched unsteered pass over {len(seqs)} distinct prompts: {before:.1f} s")

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        study = run_study(spec, out, models={lm.name: lm})
        study_s = time.perf_counter() - t
    after = timed_floor(lm, seqs)
    floor = (before + after) / 2
    print(f"floor again after the study: {after:.1f} s; mean {floor:.1f} s"
          + ("  (floors >25% apart: the machine's load changed, the ratio is unreliable)"
             if max(before, after) > 1.25 * min(before, after) else ""))
    trained = sum(not c["vectors_reused"] for c in study.meta["cells"])
    print(
        f"study (vector reused across test variants, {trained} trainings): {study_s:.1f} s "
        f"= {study_s / floor:.2f}x floor"
    )

    if args.no_reuse:
        real = sweep.trained_vectors

        def no_reuse(lm_, ds, cfg, train_ex, train_pairs, out, *rest, **kw):
            return real(lm_, ds, cfg, train_ex, train_pairs, None, *rest, **kw)  # no vector store: train every cell

        sweep.trained_vectors = no_reuse
        try:
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                again = run_study(spec, out, models={lm.name: lm})
                no_reuse_s = time.perf_counter() - t
        finally:
            sweep.trained_vectors = real
        assert (again.datasets.median_slope.round(5) == study.datasets.median_slope.round(5)).all()
        print(
            f"no reuse (a vector trained per cell, {n_cells} trainings): {no_reuse_s:.1f} s "
            f"= {no_reuse_s / floor:.2f}x floor, {no_reuse_s / study_s:.2f}x the study"
        )
    targets = Targets()
    targets.check("study / floor time", study_s / floor, 1.5, higher_is_better=False, unit="x")
    return targets.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
