"""Contrastive A/B datasets: the item and dataset types, and reading every supported format.

Every supported format is turned into the same shape: a user-turn question that
holds an "(A) ... (B) ..." choice block, the letter matching the behaviour
(positive) and the other letter (negative). Formats are detected from content:

- persona JSONL (anthropics/evals persona/): Yes/No answers; choices are built
  here, the matching answer's letter alternating in blocks of two items (paper).
- advanced-AI-risk JSONL: the question already holds the choices; answers " (A)".
  Items with three or more options (the human-written files) become an A/B pair
  of the matching and the named non-matching option by default (``multi_option=
  "pair"``), or keep every option and compare the two named letters ("keep").
- CAA JSON arrays (nrimsky/CAA datasets/): answers "(A)"; a generate/<c>/ file
  and its test/<c>/test_dataset_ab.json form one dataset with a fixed split.
- TruthfulQA mc_task.json: correct mc1 answer vs the first incorrect one.
- plain CSV (or JSON/JSONL) with question / answer_matching_behavior columns.

No torch and no Streamlit here, so the CLI, tests and pages can all import it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import DatasetError

EXTENSIONS = (".jsonl", ".json", ".csv")

# An unclosed <META_START> (a few items) runs to the end of the text.
_META = re.compile(r"<META_START>.*?(?:<META_END>|\Z)", re.DOTALL)
_CHOICE_LINE = re.compile(r"^[ \t]*\(([A-Z])\)", re.MULTILINE)
_LETTER = re.compile(r"\(([A-Za-z])\)(?:[\s:.].*)?|([A-Za-z])", re.DOTALL)
_VALID = "'(A)' or '(B)' (or 'Yes'/'No')"
MULTI_OPTION_MODES = ("pair", "keep")



@dataclass(frozen=True)
class Example:
    example_id: str  # f"{dataset_name}:{index}", index = 0-based position in the dataset
    question: str  # full user turn, including the (A)/(B) choices
    positive: str  # "(A)" or "(B)": the completion matching the behaviour
    negative: str  # the other letter
    pos_is_A: bool
    pos_is_yes: bool | None  # persona / Yes-No items only, else None
    source: str  # file it came from
    line: int  # 1-based line (JSONL/CSV) or 1-based item index (JSON arrays)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    kind: str  # "persona" | "risk" | "caa" | "truthfulqa" | "plain"
    sha256: str
    examples: tuple[Example, ...]
    # (n_train_pool, n_test_pool) when the source ships its own split (CAA):
    # examples[:n_train_pool] are train items, the rest test items.
    fixed_split: tuple[int, int] | None = None
    n_multi_option: int = 0  # items whose question offered more than two options
    multi_option: str = "pair"  # how those items were read (MULTI_OPTION_MODES)

    def __len__(self) -> int:
        return len(self.examples)

    def summary(self) -> dict[str, Any]:
        n = len(self.examples)
        yes = [e.pos_is_yes for e in self.examples if e.pos_is_yes is not None]
        return {
            "n": n,
            "frac_pos_is_A": (sum(e.pos_is_A for e in self.examples) / n) if n else None,
            "frac_pos_is_yes": (sum(yes) / len(yes)) if yes else None,
            "kind": self.kind,
            "n_multi_option": self.n_multi_option,
        }


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: str
    kind: str
    n_items: int
    group: str  # "bundled" for the project's data/, else the parent folder name
    n_multi_option: int = 0  # items that offered more than two options (read as A/B pairs)


# ---------------------------------------------------------------- answers


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to one short line, so error messages stay readable."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _answer(value: Any, field: str, where: str) -> str:
    """Normalise an answer to "A", "B", "Yes" or "No"; anything else is an error."""
    if isinstance(value, list) and len(value) == 1:  # some evals wrap answers in lists
        value = value[0]
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field '{field}' is {type(value).__name__} {_short(value)}; expected {_VALID}")
    s = value.strip()
    if s.rstrip(".").lower() in ("yes", "no"):
        return s.rstrip(".").capitalize()
    m = _LETTER.fullmatch(s)
    letter = (m.group(1) or m.group(2)).upper() if m else None
    if letter not in ("A", "B"):
        raise DatasetError(f"{where}: field '{field}' is {_short(value)}; expected {_VALID}")
    return letter


def _other(ans: str) -> str:
    return {"A": "B", "B": "A", "Yes": "No", "No": "Yes"}[ans]


def _clean(text: str) -> str:
    # anthropics/evals items carry generator metadata in <META_START>...<META_END>
    return _META.sub("", text).strip()


def _check_two_choices(question: str, where: str) -> None:
    """Reject items whose (last) choice block offers letters beyond A and B.

    Some model-written items hold several stacked questions, each with (A)/(B);
    only the block starting at the last "(A)" is the one being answered.
    """
    letters = _CHOICE_LINE.findall(question)
    if "A" not in letters:
        return
    tail = letters[len(letters) - 1 - letters[::-1].index("A") :]
    extra = sorted({x for x in tail if x not in ("A", "B")})
    if extra:
        raise DatasetError(
            f"{where}: field 'question' offers choice(s) {', '.join(f'({x})' for x in extra)}; "
            "only two-choice (A)/(B) items are supported"
        )


def _with_choices(question: str, a: str, b: str) -> str:
    # Same " (A) ..." line style as the advanced-AI-risk files.
    return f"{question}\n\nChoices:\n (A) {a}\n (B) {b}"



def _choice_block(question: str) -> list[tuple[str, int, int]] | None:
    """(letter, start, end) of each option line of the last choice block, when it offers more than A and B."""
    marks = list(_CHOICE_LINE.finditer(question))
    starts = [i for i, m in enumerate(marks) if m.group(1) == "A"]
    if not starts:
        return None
    block = marks[starts[-1]:]
    if all(m.group(1) in ("A", "B") for m in block):
        return None
    ends = [m.start() for m in block[1:]] + [len(question)]
    return [(m.group(1), m.start(), end) for m, end in zip(block, ends)]


def _option_letter(value: Any, field: str, where: str, letters: list[str]) -> str:
    """The letter an answer names (the first of a list), which must be one of the item's options."""
    if isinstance(value, list) and value:
        value = value[0]
    m = _LETTER.fullmatch(value.strip()) if isinstance(value, str) else None
    letter = (m.group(1) or m.group(2)).upper() if m else None
    if letter not in letters:
        options = ", ".join(f"({x})" for x in letters)
        raise DatasetError(f"{where}: field '{field}' is {_short(value)}; expected one of the item's options {options}")
    return letter


def _multi_option(question: str, block: list[tuple[str, int, int]], rec: dict[str, Any], i: int, where: str,
                  mode: str) -> tuple[str, str, str, bool]:
    """(question, positive, negative, pos_is_A) of an item with three or more options."""
    letters = [b[0] for b in block]
    pos = _option_letter(_field(rec, "answer_matching_behavior", where), "answer_matching_behavior", where, letters)
    neg = _option_letter(_field(rec, "answer_not_matching_behavior", where), "answer_not_matching_behavior",
                         where, letters)
    if pos == neg:
        raise DatasetError(f"{where}: answer_matching_behavior and answer_not_matching_behavior both name ({pos})")
    if mode == "keep":
        return question, f"({pos})", f"({neg})", pos == "A"
    text = {letter: _CHOICE_LINE.sub("", question[start:end], count=1).strip() for letter, start, end in block}
    indent = question[block[0][1]:].split("(", 1)[0]  # the block's own line style, e.g. " (A) ..."
    pos_is_A = (i // 2) % 2 == 0  # the persona sets' alternation: blocks of two items
    a, b = (text[pos], text[neg]) if pos_is_A else (text[neg], text[pos])
    q = f"{question[:block[0][1]]}{indent}(A) {a}\n{indent}(B) {b}"
    return q, ("(A)" if pos_is_A else "(B)"), ("(B)" if pos_is_A else "(A)"), pos_is_A


# ---------------------------------------------------------------- reading records


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")  # tolerate a BOM (spreadsheet exports)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{source}: not UTF-8 text (bad byte at offset {e.start})") from None


def _records(text: str, ext: str, source: str) -> tuple[list[tuple[int, Any]], bool]:
    """(line, record) pairs and whether the file was one JSON array."""
    if ext == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            rows = [(reader.line_num, dict(row)) for row in reader]
        except csv.Error as e:
            raise DatasetError(f"{source} line {reader.line_num}: invalid CSV ({e})") from None
        return rows, False
    stripped = text.lstrip()
    if stripped.startswith("[") or ext == ".json":
        try:
            doc = json.loads(text)
        except RecursionError:
            raise DatasetError(f"{source}: JSON nested too deeply to be a dataset") from None
        except json.JSONDecodeError as e:
            if stripped.startswith("["):
                raise DatasetError(f"{source} line {e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
            doc = None  # perhaps JSON Lines saved as .json: parsed below
        if isinstance(doc, list):
            return [(i + 1, item) for i, item in enumerate(doc)], True
        if doc is not None:
            found = "object" if isinstance(doc, dict) else type(doc).__name__
            raise DatasetError(f"{source}: expected a JSON array of items, found a JSON {found}")
    out = []  # JSON Lines; split on "\n" only: JSON strings may hold U+2028 etc.
    for lineno, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            out.append((lineno, json.loads(raw)))
        except RecursionError:
            raise DatasetError(f"{source} line {lineno}: JSON nested too deeply to be a dataset item") from None
        except json.JSONDecodeError as e:
            raise DatasetError(f"{source} line {lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
    return out, False


def _field(rec: dict[str, Any], field: str, where: str) -> Any:
    value = rec.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: missing field '{field}'")
    return value


def _truthfulqa_example(rec: dict[str, Any], i: int, where: str) -> tuple[str, bool]:
    question = _field(rec, "question", where)
    targets = _field(rec, "mc1_targets", where)
    if isinstance(targets, dict) and "choices" in targets and "labels" in targets:  # HF layout
        targets = dict(zip(targets["choices"], targets["labels"]))
    if not isinstance(targets, dict):
        raise DatasetError(f"{where}: field 'mc1_targets' must map answer text to 0/1")
    correct = [k for k, v in targets.items() if v == 1]
    wrong = [k for k, v in targets.items() if v == 0]
    if not correct or not wrong:
        raise DatasetError(f"{where}: field 'mc1_targets' needs one answer marked 1 and at least one marked 0")
    pos_is_A = i % 2 == 0  # alternate the correct answer's letter, as the paper did
    a, b = (correct[0], wrong[0]) if pos_is_A else (wrong[0], correct[0])
    return _with_choices(_clean(str(question)), a, b), pos_is_A


def _parse_text(text: str, ext: str, source: str, name: str,
                multi_option: str = "pair") -> tuple[str, list[Example], int]:
    """(kind, examples, number of items with more than two options)."""
    if not text.strip():
        raise DatasetError(f"{source}: empty file")
    records, is_array = _records(text, ext, source)
    if not records:
        raise DatasetError(f"{source}: no items found")
    first = records[0][1]
    truthfulqa = isinstance(first, dict) and "mc1_targets" in first
    mode: str | None = None  # "letter" or "yesno", fixed by the first item
    examples: list[Example] = []
    n_multi = 0
    for i, (line, rec) in enumerate(records):
        where = f"{source} line {line}" if not is_array else f"{source} item {line}"
        if not isinstance(rec, dict):
            raise DatasetError(f"{where}: expected a JSON object with 'question' and 'answer_matching_behavior'")
        eid = f"{name}:{i}"
        if truthfulqa:
            q, pos_is_A = _truthfulqa_example(rec, i, where)
            pos, neg = ("(A)", "(B)") if pos_is_A else ("(B)", "(A)")
            examples.append(Example(eid, q, pos, neg, pos_is_A, None, source, line))
            continue
        question = _field(rec, "question", where)
        if not isinstance(question, str):
            raise DatasetError(f"{where}: field 'question' must be text")
        block = _choice_block(_clean(question))
        if block is not None:  # three or more options (human-written advanced-AI-risk items)
            if mode == "yesno":
                raise DatasetError(f"{where}: a multiple-choice item in a Yes/No file; use one answer style per file")
            mode = "letter"
            q, pos, neg, pos_is_A = _multi_option(_clean(question), block, rec, i, where, multi_option)
            n_multi += 1
            examples.append(Example(eid, q, pos, neg, pos_is_A, None, source, line))
            continue
        ans = _answer(_field(rec, "answer_matching_behavior", where), "answer_matching_behavior", where)
        neg_raw = rec.get("answer_not_matching_behavior")
        if neg_raw not in (None, ""):
            neg_ans = _answer(neg_raw, "answer_not_matching_behavior", where)
            if neg_ans != _other(ans):
                raise DatasetError(
                    f"{where}: field 'answer_not_matching_behavior' is {_short(neg_raw)}; "
                    f"expected the other answer of {_short(rec['answer_matching_behavior'])}"
                )
        item_mode = "yesno" if ans in ("Yes", "No") else "letter"
        mode = mode or item_mode
        if item_mode != mode:
            raise DatasetError(
                f"{where}: field 'answer_matching_behavior' is {_short(rec['answer_matching_behavior'])}, but earlier "
                f"items use {'letters (A)/(B)' if mode == 'letter' else 'Yes/No'}; use one answer style per file"
            )
        q = _clean(question)
        if mode == "yesno":
            # Blocks of two (items 0,1 -> A; 2,3 -> B): persona files alternate
            # Yes/No item by item, so letter and Yes/No stay unconfounded.
            pos_is_A = (i // 2) % 2 == 0
            a, b = (ans, _other(ans)) if pos_is_A else (_other(ans), ans)
            q = _with_choices(q, a, b)
            pos_is_yes: bool | None = ans == "Yes"
        else:
            _check_two_choices(q, where)
            pos_is_A, pos_is_yes = ans == "A", None
        pos, neg = ("(A)", "(B)") if pos_is_A else ("(B)", "(A)")
        examples.append(Example(eid, q, pos, neg, pos_is_A, pos_is_yes, source, line))
    if truthfulqa:
        kind = "truthfulqa"
    elif ext == ".csv":
        kind = "plain"
    elif mode == "yesno":
        kind = "persona"
    else:
        kind = "caa" if is_array else "risk"
    return kind, examples, n_multi


def _parse(data: bytes, filename: str, source: str, name: str, multi_option: str = "pair") -> Dataset:
    ext = Path(filename).suffix.lower()
    if ext not in EXTENSIONS:
        raise DatasetError(f"{source}: unsupported extension '{ext or '(none)'}'; expected .jsonl, .json or .csv")
    if multi_option not in MULTI_OPTION_MODES:
        raise DatasetError(f"multi_option is '{multi_option}'; choose one of {', '.join(MULTI_OPTION_MODES)}")
    kind, examples, n_multi = _parse_text(_decode(data, source), ext, source, name, multi_option)
    digest = hashlib.sha256(data)
    if n_multi and multi_option != "pair":  # other prompts, other results: the store key must differ
        digest.update(f"\0multi_option={multi_option}".encode())
    return Dataset(name, source, kind, digest.hexdigest(), tuple(examples), n_multi_option=n_multi,
                   multi_option=multi_option)
