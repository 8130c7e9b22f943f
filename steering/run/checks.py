"""Cheap checks that run before any model is loaded or any pass is made.

Each raises ``ValidationError`` (a ``ValueError``) with one line saying what is
wrong and what would be valid, so that the CLI exits at once with code 2 and
the dashboard shows the message in the page. Nothing here loads weights: the
layer count and context length of a model are read from its config or the
header of its ``.gguf`` file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from steering.core.store import bounded_run_name
from steering.engine.devices import check_device
from steering.engine.modelfiles import (
    check_hf_available,
    max_prompt_tokens,
    model_context,
    model_shape,
    prompt_token_limit,
)
from steering.errors import ValidationError


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValidationError(f"seed {seed} is not allowed: use a whole number from 0 to {2**63 - 1}")
    return seed


def name_max(directory: Path) -> int:
    """The longest file name the file system under ``directory`` takes (255 where it cannot tell)."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_out_dir(out: str | Path, run_names: Sequence[str] = ()) -> Path:
    """The results directory can be created and written, and its run directory names fit the file system."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out}: is a file, not a directory")
    probe = out
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValidationError(f"--out {out}: {probe} is a file, not a directory")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValidationError(f"--out {out}: {probe} is not writable")
    limit = name_max(out)
    for name in run_names:
        longest = len((".partial-" + name).encode())  # the longest name the store writes for a run
        if longest > limit:
            raise ValidationError(f"the run directory name for '{name[:40]}...' is {longest} bytes, longer than "
                                  f"the {limit} this file system allows: use a shorter dataset file name")
    return out


# ---------------------------------------------------------------- models, without loading them

def check_prompt_lengths(lm, examples: Sequence, pairs: Sequence) -> None:
    """Every encoded item (prompt and its longer completion) fits the model's context and the cap.

    Runs after tokenising, before any forward pass; names the first item that is too long.
    """
    limit = prompt_token_limit(model_context(lm))
    for example, pair in zip(examples, pairs):
        n = len(pair.prompt_ids) + max(len(pair.pos_ids), len(pair.neg_ids))
        if n > limit:
            raise ValidationError(f"item {example.example_id} is {n} tokens long; the limit is {limit} "
                                  f"(the model's context, at most {max_prompt_tokens()}): shorten or drop it")


# No tokenizer turns more than this many characters into one token on natural text: an item with more
# characters than this times the token limit cannot fit, and is refused before the model is even loaded.
CHARS_PER_TOKEN_BOUND = 32


def check_item_sizes(examples: Sequence, context: int | None) -> None:
    """Items that are certainly too long for the model, found from their length in characters alone."""
    limit = prompt_token_limit(context)
    for e in examples:
        n = len(e.question) + max(len(e.positive), len(e.negative))
        if n > limit * CHARS_PER_TOKEN_BOUND:
            raise ValidationError(f"item {e.example_id} is {n} characters long, far over the limit of {limit} "
                                  f"tokens (the model's context, at most {max_prompt_tokens()}): shorten or drop it")


def check_layer_spec(spec: str | None, n_layers: int | None) -> None:
    """The --layers text reads (not reversed, not empty), and fits the model when its layer count is known."""
    if spec is None:
        return
    from steering.core.config import parse_layers
    from steering.errors import SweepError

    try:
        parse_layers(spec, n_layers if n_layers else 1 << 16)
    except SweepError as e:
        if n_layers or "out of range" not in str(e):
            raise ValidationError(str(e)) from None


def precheck_sweep(model: str, dataset_name: str, layers: str | None, seed: int, device: str | None,
                   n_train: int, n_test: int, out: str | Path, examples: Sequence = ()) -> None:
    """Everything about a sweep that can be checked without loading the model (the CLI runs it first)."""
    check_seed(seed)
    if n_train < 1 or n_test < 1:
        raise ValidationError(f"n_train={n_train} and n_test={n_test}: both must be at least 1")
    check_device(device)
    check_layer_spec(layers, None)  # syntax first: a typo is reported even when the model is unknown
    check_out_dir(out, [bounded_run_name(dataset_name, model, "0" * 16)])  # a key is 16 hex digits
    check_hf_available(model)
    n_layers, context = model_shape(model)
    check_layer_spec(layers, n_layers)  # against the model's config or gguf header when it can be read
    check_item_sizes(examples, context)
