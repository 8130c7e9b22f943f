"""Prompt rewrites for the diagnostics: the A/B swap and the letter-free answer-text form.

Both work on an ``Example``'s question text, whose last " (A) ... (B) ..." block
is the one being answered (persona items had theirs built by ``datasets``).
"""

from __future__ import annotations

import dataclasses
import re

from steering.core.datasets import Example
from steering.core.prompts import (
    DEFAULT_SYSTEM,
    EncodedPair,
    encode_example,
    encode_pair,
    format_prompt,
    variant_parts,
)
from steering.errors import DatasetError

_A = re.compile(r"^[ \t]*\(A\)[ \t]*", re.MULTILINE)
_B = re.compile(r"^[ \t]*\(B\)[ \t]*", re.MULTILINE)
_CHOICES_HEAD = re.compile(r"\n[ \t]*Choices:[ \t]*\n?[ \t]*$")


@dataclasses.dataclass(frozen=True)
class ChoiceBlock:
    """Spans of the last (A)/(B) block: text before it, the two option texts and the separators."""

    head: str  # everything up to and including the "(A) " marker
    a: str
    a_tail: str  # whitespace after A's text (up to the "(B)" line)
    b_marker: str
    b: str
    b_tail: str


def choice_block(question: str) -> ChoiceBlock:
    a_marks = list(_A.finditer(question))
    if not a_marks:
        raise DatasetError("the question has no '(A)' choice line to swap")
    ma = a_marks[-1]
    mb = _B.search(question, ma.end())
    if mb is None:
        raise DatasetError("the question has no '(B)' choice line after its '(A)' line")
    a_region, b_region = question[ma.end():mb.start()], question[mb.end():]
    a, b = a_region.rstrip(), b_region.rstrip()
    return ChoiceBlock(question[:ma.end()], a, a_region[len(a):], question[mb.start():mb.end()], b, b_region[len(b):])


def option_texts(example: Example) -> tuple[str, str]:
    """(positive text, negative text) of an item's two options."""
    block = choice_block(example.question)
    return (block.a, block.b) if example.pos_is_A else (block.b, block.a)


def swap_example(example: Example) -> Example:
    """The same item with its two option texts exchanged between the letters; ``pos_is_A`` flips.

    The positive completion stays the behaviour-matching answer (now under the
    other letter). Persona Yes/No items: Yes and No exchange places with their letters.
    """
    c = choice_block(example.question)
    question = c.head + c.b + c.a_tail + c.b_marker + c.a + c.b_tail
    pos_is_A = not example.pos_is_A
    pos, neg = ("(A)", "(B)") if pos_is_A else ("(B)", "(A)")
    return dataclasses.replace(example, question=question, positive=pos, negative=neg, pos_is_A=pos_is_A)


def question_without_choices(question: str) -> str:
    """The question with its last (A)/(B) block (and a "Choices:" line right before it) removed."""
    choice_block(question)  # raises when there is no block
    head = question[: list(_A.finditer(question))[-1].start()]
    return _CHOICES_HEAD.sub("", head).rstrip()


def encode_answer_text(tokenizer, example: Example, variant: str, dataset_name: str,
                       system: str = DEFAULT_SYSTEM) -> EncodedPair:
    """The letter-free form: no Choices block in the prompt; the completions are the option texts."""
    pos_text, neg_text = option_texts(example)
    if pos_text.strip() == neg_text.strip():
        raise DatasetError(f"{example.example_id}: both options read {pos_text!r}; answer_text needs two different "
                           "texts")
    parts = variant_parts(question_without_choices(example.question), variant, dataset_name, system)
    prompt, lead = format_prompt(tokenizer, parts)
    return encode_pair(tokenizer, prompt, lead + pos_text, lead + neg_text)


def encode_for_metric(tokenizer, example: Example, variant: str, dataset_name: str, system: str = DEFAULT_SYSTEM,
                      metric: str = "logit_diff") -> EncodedPair:
    """How an item is shown for ``metric``: A/B letters, or the letter-free answer-text form."""
    if metric == "answer_text":
        return encode_answer_text(tokenizer, example, variant, dataset_name, system)
    return encode_example(tokenizer, example, variant, dataset_name, system)
