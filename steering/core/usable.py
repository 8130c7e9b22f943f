"""Which items a run can use, stated once: the split, the manifest, the CLI and the pages all read it.

An item is unusable for a run's settings when the prompt the run would show cannot be built from it:

- under every metric, training pairs are shown with their (A)/(B) letters: an item whose question has
  no (A)/(B) choices block asks the model to pick a letter that refers to nothing;
- under the letter-free ``answer_text`` metric, the completions are the two option texts: an empty
  option, two options with the same text, or answers naming letters other than A and B (the
  ``keep`` multi-option mode) leave nothing to compare.

Unusable items are skipped and named, never fatal. The split draws from the usable items only; when
every item is usable that is the dataset itself, so the seed gives the same split (and the same store
keys) as before the rule existed. Structural checks only, no tokenizer: the split must not depend on
the model, or the cells of one study would see different items.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass

from steering.core.datasets import Dataset, Example, split_dataset
from steering.core.swap import choice_block
from steering.errors import DatasetError

LETTER_FREE_METRICS = ("answer_text",)
NO_CHOICES = "no (A)/(B) choices block, so the answer letters refer to nothing"


@dataclass(frozen=True)
class Skipped:
    """An item left out of a run, and why."""

    example_id: str
    reason: str

    def as_dict(self) -> dict:
        return {"id": self.example_id, "reason": self.reason}


def unusable_reason(example: Example, metric: str) -> str | None:
    """Why ``example`` cannot be shown under ``metric`` (None when it can)."""
    try:
        block = choice_block(example.question)
    except DatasetError:
        return NO_CHOICES
    if metric not in LETTER_FREE_METRICS:
        return None
    if {example.positive, example.negative} != {"(A)", "(B)"}:
        return (f"its answers name {example.positive} and {example.negative}; the letter-free form compares the "
                "texts of options (A) and (B) only")
    a, b = block.a.strip(), block.b.strip()
    if not a or not b:
        return f"option {'(A)' if not a else '(B)'} has no text to compare"
    if a == b:
        return "both options have the same text"
    return None


@dataclass(frozen=True)
class Usable:
    """A dataset restricted to the items a metric can use, and the items left out."""

    dataset: Dataset  # same name and sha256; only the usable examples (a fixed split's sizes recounted)
    skipped: tuple[Skipped, ...]
    n_items: int  # before skipping

    @property
    def n_usable(self) -> int:
        return len(self.dataset)

    def digest(self) -> str:
        """A short hash of the skipped ids ('' when none): keys that must change when the pool does."""
        if not self.skipped:
            return ""
        return hashlib.sha256("\n".join(s.example_id for s in self.skipped).encode()).hexdigest()[:16]

    def why(self) -> str:
        """The reasons, counted: '3: option (A) has no text to compare; 1: no (A)/(B) choices block ...'."""
        counts = Counter(s.reason for s in self.skipped)
        return "; ".join(f"{n}: {reason}" for reason, n in counts.most_common())


def usable(ds: Dataset, metric: str) -> Usable:
    """``ds`` restricted to the items usable under ``metric`` (the same object's data when all are)."""
    skipped, keep = [], []
    for i, e in enumerate(ds.examples):
        reason = unusable_reason(e, metric)
        if reason is None:
            keep.append(i)
        else:
            skipped.append(Skipped(e.example_id, reason))
    if not skipped:
        return Usable(ds, (), len(ds))
    fixed = None
    if ds.fixed_split is not None:  # the source's own split: count what is left of each side
        n_tr = ds.fixed_split[0]
        fixed = (sum(i < n_tr for i in keep), sum(i >= n_tr for i in keep))
    kept = dataclasses.replace(ds, examples=tuple(ds.examples[i] for i in keep), fixed_split=fixed)
    return Usable(kept, tuple(skipped), len(ds))


@dataclass(frozen=True)
class RunSplit:
    """A run's train and test items, drawn from the usable items only."""

    train: list[Example]
    test: list[Example]
    pool: Usable

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return self.pool.skipped


def run_split(ds: Dataset, n_train: int, n_test: int, seed: int = 0, balance_train: bool = False,
              metric: str = "logit_diff") -> RunSplit:
    """The seeded, disjoint split of a run (``split_dataset``) over the items usable under ``metric``.

    Too few usable items is one line naming how many are usable and why the others are not.
    """
    pool = usable(ds, metric)
    try:
        train, test = split_dataset(pool.dataset, n_train, n_test, seed, balance_train)
    except DatasetError as e:
        if not pool.skipped:
            raise
        raise DatasetError(f"{e} (only {pool.n_usable} of its {pool.n_items} items are usable under the "
                           f"{metric} metric; unusable: {pool.why()}; first: {skipped_line(pool.skipped)})") from None
    return RunSplit(train, test, pool)


def skipped_line(skipped) -> str:
    """'<id>: <reason>' of the first skipped item (a dict from a manifest or a Skipped)."""
    first = skipped[0]
    ident, reason = (first["id"], first["reason"]) if isinstance(first, dict) else (first.example_id, first.reason)
    return f"{ident}: {reason}"


def skipped_summary(skipped) -> str:
    """The one line every entry point shows: 'skipped N unusable items (first: id: reason)' ('' for none)."""
    if not skipped:
        return ""
    n = len(skipped)
    return f"skipped {n} unusable item{'s' if n != 1 else ''} (first: {skipped_line(skipped)})"


def fallback_summary(n: int) -> str:
    """The line shown when a run evaluated items on the reference path because the fast path cannot ('' for none)."""
    if not n:
        return ""
    return (f"{n} item{'s' if n != 1 else ''} evaluated on the reference path: longer than the model's sliding "
            "window, which the fast path needs (same numbers, slower)")
