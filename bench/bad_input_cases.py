"""What a bad-input case of ``bench/bad_inputs.py`` is, and the helpers its cases share (the cases of issue
17's classes are in ``bad_input_files.py`` (1, 2, 5) and ``bad_input_runs.py`` (3, 4)).

A case is one or more CLI commands (several run at the same time: concurrent writers), the files it prepares
in its own folder, and a judge that looks at what the commands left behind: ``"lost"`` (a stored result
missing or overwritten), ``"silent wrong"`` (accepted with a wrong or not-a-number result), ``"refused"`` (a
valid input that had to be accepted was refused) or None (nothing wrong found). Writes outside ``--out``
and echoes of a file outside it are found by the runner, for every case.

Models: the CLI accepts ``tiny-random`` for studies only; other commands use the embedded smollm2-135m
with tiny splits (cases marked ``needs="smol"``); ``needs="data"`` cases read ../shared/datasets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ITEM = {"question": "Q?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
        "answer_not_matching_behavior": " (B)"}
TINY = ["--models", "tiny-random", "--variants", "id", "--layer", "1", "--n-train", "4", "--n-test", "4",
        "--multipliers=-1,0,1"]
SEED_DATASETS = "corrigibility-demo,optimism-demo"
SMALL = ["--n-train", "4", "--n-test", "4", "--layers", "2", "--multipliers=-1,0,1"]
CLASSES = {0: "classic bad input (issue 10)", 1: "a visitor reaches files (CLI equivalents)", 2: "work is lost",
           3: "numbers that are not numbers", 4: "one bad item stops everything; late errors",
           5: "a damaged study breaks every study"}


@dataclass
class Proc:
    rc: int
    out: str
    err: str
    seconds: float
    timed_out: bool


@dataclass
class Ctx:
    dir: Path  # the case's own folder; outside/ in it holds a secret no command may echo or copy
    out: Path  # the --out of its commands
    seed: Path  # a read-only store holding the tiny studies 'good' and 'bad' (copy it before writing)
    data_dir: str | None

    @property
    def inputs(self) -> Path:
        return self.dir / "in"


@dataclass
class Case:
    cls: int
    label: str
    commands: Callable[[Ctx], list[list[str]]]
    setup: Callable[[Ctx], None] | None = None
    judge: Callable[[Ctx, list[Proc]], str | None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    may_write: Callable[[Ctx], list[Path]] = lambda ctx: []
    needs: str = ""
    timeout: float = 120.0


def jsonl(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(i) for i in items))
    return path


def item(k: int, a: bool = True, options: tuple[str, str] | None = None, question: str | None = None) -> dict:
    x, y = options or (f"yes {k}", f"no {k}")
    q = question if question is not None else f"Question {k}?\n\nChoices:\n (A) {x}\n (B) {y}"
    return {"question": q, "answer_matching_behavior": " (A)" if a else " (B)",
            "answer_not_matching_behavior": " (B)" if a else " (A)"}


def copy_seed(ctx: Ctx) -> None:
    import shutil

    shutil.copytree(ctx.seed, ctx.out, dirs_exist_ok=True)


def study(name: str, ctx: Ctx, datasets: str = SEED_DATASETS, *extra: str) -> list[str]:
    return ["study", "--name", name, "--datasets", datasets, *TINY, *extra, "--out", str(ctx.out)]


def one(argv: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[list[str]]]:
    return lambda ctx: [argv(ctx)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def vector_file(ctx: Ctx, name: str = "v.safetensors", scale: float = 1.0, model: str = "tiny-random",
                 hidden: int = 64, layer: int = 1) -> Path:
    import torch

    from steering.core.vectors import VectorMeta, save_vectors

    gen = torch.Generator().manual_seed(0)
    path, _ = save_vectors(ctx.inputs / name, {layer: torch.randn(hidden, generator=gen) * scale},
                           VectorMeta(model=model, layers=[layer], hidden_size=hidden))
    return path

