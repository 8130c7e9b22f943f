"""Issue 17's classes 3 (numbers that are not numbers) and 4 (one bad item stops everything; errors that come
late), as cases for ``bench/bad_inputs.py`` (see ``bad_input_cases`` for what a case is)."""

from __future__ import annotations

import socket
import threading
from typing import Callable

from bad_input_cases import SEED_DATASETS, SMALL, Case, Ctx, Proc, item, jsonl, one, study, vector_file

# ---------------------------------------------------------------- 3: numbers that are not numbers


def _study_rows(ctx: Ctx, name: str):
    import pandas as pd

    return pd.read_parquet(ctx.out / "studies" / name / "datasets.parquet")


def _one_item_interval(ctx: Ctx, procs: list[Proc]) -> str | None:
    if procs[0].rc != 0:
        return None
    rows = _study_rows(ctx, "n1")
    degenerate = (rows.n == 1) & (rows.frac_anti_lo == rows.frac_anti_hi) & rows.frac_anti_lo.notna()
    return "silent wrong" if degenerate.any() or "[100%, 100%]" in procs[0].out else None


def _ab_share_undefined(ctx: Ctx, procs: list[Proc]) -> str | None:
    if procs[0].rc != 0:
        return None
    rows = _study_rows(ctx, "allA")
    return "silent wrong" if rows.share_ab.notna().any() else None  # no variance in pos_is_A: undefined


def _huge_vector(ctx: Ctx, procs: list[Proc]) -> str | None:
    if procs[0].rc != 0:
        return None
    import numpy as np

    from steering.core.results import load_run

    line = [x for x in procs[0].out.splitlines() if x.startswith("run directory: ")]
    r = load_run(line[0].split(": ", 1)[1])
    slopes = r.steerability.slope.to_numpy()
    saturated = not np.isfinite(slopes).all() or np.ptp(r.propensities.propensity.to_numpy()) == 0
    undefined = "frac_anti" in r.figures(r.layers[0]).undefined
    return "silent wrong" if saturated and not undefined else None


def _no_nan_in_matrix(ctx: Ctx, procs: list[Proc]) -> str | None:
    return "silent wrong" if procs[0].rc == 0 and " nan" in procs[0].out.lower() else None


def _accepted_silently(words: str) -> Callable[[Ctx, list[Proc]], str | None]:
    """Accepted without saying ``words`` (a warning, a skip line): the problem was passed over in silence."""
    def judge(ctx: Ctx, procs: list[Proc]) -> str | None:
        p = procs[0]
        return "silent wrong" if p.rc == 0 and words not in (p.out + p.err) else None
    return judge


def class3() -> list[Case]:
    def mixed_no_block(ctx: Ctx) -> None:
        items = [item(k, k % 2 == 0) for k in range(10)]
        items[3] = item(3, question="Question 3: answer with a letter.")
        jsonl(ctx.inputs / "noblock.jsonl", items)

    return [
        Case(3, "one-item test split (study)", one(lambda ctx: study("n1", ctx, "corrigibility-demo")[:-2]
                                                   + ["--n-test", "1", "--out", str(ctx.out)]),
             judge=_one_item_interval),
        Case(3, "all-(A) dataset (study)", one(lambda ctx: study("allA", ctx, str(ctx.inputs / "allA.jsonl"))),
             setup=lambda ctx: jsonl(ctx.inputs / "allA.jsonl", [item(k) for k in range(10)]),
             judge=_ab_share_undefined),
        Case(3, "imported vector at norm 1e30", one(
            lambda ctx: ["import", str(ctx.inputs / "v.safetensors"), "--dataset", "corrigibility-demo",
                         "--model", "smollm2-135m", "--n-train", "4", "--n-test", "4", "--multipliers=-1,0,1",
                         "--out", str(ctx.out)]),
             setup=lambda ctx: vector_file(ctx, scale=1e30, model="smollm2-135m", hidden=576, layer=2),
             judge=_huge_vector, needs="smol", timeout=240),
        Case(3, "entanglement --multiplier nan", one(
            lambda ctx: ["entanglement", "--datasets", SEED_DATASETS, "--layer", "2", "--multiplier", "nan",
                         "--n-train", "4", "--n-test", "4", "--out", str(ctx.out)]),
             judge=_no_nan_in_matrix, needs="smol", timeout=300),
        Case(3, "duplicate layer rules", one(lambda ctx: study("dup", ctx, "corrigibility-demo")[:-2]
                                             + ["--layer", "tiny-random=1,tiny-random=2", "--out", str(ctx.out)]),
             judge=_accepted_silently("tiny-random")),
        Case(3, "no (A)/(B) block under logit_diff (study)", one(
            lambda ctx: study("nb", ctx, str(ctx.inputs / "noblock.jsonl"))), setup=mixed_no_block,
             judge=_accepted_silently("skipped 1 unusable item")),
        Case(3, "identical train and test items (sweep)", one(
            lambda ctx: ["sweep", "--dataset", str(ctx.inputs / "dups.jsonl"), *SMALL, "--out", str(ctx.out)]),
             setup=lambda ctx: jsonl(ctx.inputs / "dups.jsonl", [item(k % 3, k % 2 == 0) for k in range(12)]),
             judge=_accepted_silently("also appear in the training split"), needs="smol", timeout=240),
    ]


# ---------------------------------------------------------------- 4: one bad item; errors that come late


class NotRay:
    """A local TCP port that accepts and answers with bytes that are not Ray's (closed when the bench ends)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            except OSError:
                pass


def _accepted_with(words: str) -> Callable[[Ctx, list[Proc]], str | None]:
    """A usable input that must be accepted, saying ``words``."""
    def judge(ctx: Ctx, procs: list[Proc]) -> str | None:
        p = procs[0]
        if p.rc == 2:
            return "refused"
        return "silent wrong" if p.rc == 0 and words not in p.out + p.err else None
    return judge


def _webgpt_sweep(ctx: Ctx) -> list[list[str]]:
    """answer_text on the real self-awareness-training-web-gpt with a seed whose plain split holds a bad item."""
    from steering.core.datasets import load_dataset, split_dataset
    from steering.core.usable import usable

    ds = load_dataset("self-awareness-training-web-gpt", ctx.data_dir)
    bad = {s.example_id for s in usable(ds, "answer_text").skipped}
    seed = next(s for s in range(10_000) if any(e.example_id in bad for part in split_dataset(ds, 4, 4, s)
                                                 for e in part))
    return [["sweep", "--dataset", "self-awareness-training-web-gpt", "--data-dir", ctx.data_dir, "--metric",
             "answer_text", *SMALL, "--seed", str(seed), "--out", str(ctx.out)]]


def class4(not_ray: NotRay) -> list[Case]:
    def bad_item(ctx: Ctx) -> None:
        items = [item(k, k % 2 == 0) for k in range(9)]
        items[4] = item(4, question="Question 4?\n\nChoices:\n (A)\n (B)")
        jsonl(ctx.inputs / "webgpt.jsonl", items)

    long_name = "n" * 240
    return [
        Case(4, "answer_text study, one item with empty options", one(
            lambda ctx: study("w", ctx, f"{ctx.inputs / 'webgpt.jsonl'},corrigibility-demo", "--metric",
                              "answer_text")), setup=bad_item, judge=_accepted_with("skipped 1 unusable item")),
        Case(4, "answer_text study, too few usable items", one(
            lambda ctx: study("w2", ctx, str(ctx.inputs / "webgpt.jsonl"), "--metric", "answer_text")[:-2]
            + ["--n-train", "5", "--n-test", "4", "--out", str(ctx.out)]), setup=bad_item),
        Case(4, "answer_text sweep on self-awareness-training-web-gpt", _webgpt_sweep,
             judge=_accepted_with("unusable item"), needs="smol+data", timeout=300),
        Case(4, "study --layer nan", one(lambda ctx: study("ln", ctx)[:-2] + ["--layer", "nan", "--out",
                                                                             str(ctx.out)])),
        Case(4, "study, 240-character dataset file name", one(
            lambda ctx: study("ln2", ctx, str(ctx.inputs / f"{long_name}.jsonl"))),
             setup=lambda ctx: jsonl(ctx.inputs / f"{long_name}.jsonl", [item(k, k % 2 == 0) for k in range(10)]),
             judge=_accepted_with("")),
        Case(4, "STEERING_MAX_PROMPT_TOKENS=abc", one(lambda ctx: study("env", ctx, "corrigibility-demo")),
             env={"STEERING_MAX_PROMPT_TOKENS": "abc"}),
        Case(4, "Ray address: a local port that is not Ray", one(
            lambda ctx: study("ray", ctx, "corrigibility-demo", "--executor", "ray", "--ray-address",
                              f"127.0.0.1:{not_ray.port}")), timeout=60),
        # No case sends traffic off this machine: only loopback addresses are allowed targets here.
    ]
