"""python -m steering fetch paper|NAME: checksummed downloads into the cache the dashboard lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from steering.cli import main as cli
from steering.core.datasets import list_datasets


def _line(i: int) -> str:
    return json.dumps({"question": f"Q{i}?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
                       "answer_not_matching_behavior": " (B)"})


def _registry(tmp_path: Path, entries: list[dict]) -> Path:
    reg = tmp_path / "sources.json"
    reg.write_text(json.dumps({"sources": entries}))
    return reg


def test_fetch_paper_verifies_checksums_and_rejects_a_mismatch(tmp_path: Path, capsys) -> None:
    served = tmp_path / "served"
    served.mkdir()
    files = {}
    for name in ("alpha", "beta"):
        f = served / f"{name}.jsonl"
        f.write_text("\n".join(_line(i) for i in range(6)))
        files[name] = f
    sha = {n: hashlib.sha256(f.read_bytes()).hexdigest() for n, f in files.items()}
    good = _registry(tmp_path, [
        {"name": n, "url": f.as_uri(), "format": "risk", "sha256": sha[n], "path": f"evals/{n}.jsonl"}
        for n, f in files.items()] + [  # neutral prose is not one of the paper's datasets: 'paper' skips it
        {"name": "prose", "url": "http://127.0.0.1:9/x.tar.gz", "format": "text", "sha256": "0" * 64,
         "group": "neutral", "path": "neutral/x.txt"}])
    cache = tmp_path / "cache"
    assert cli.main(["fetch", "paper", "--cache-dir", str(cache), "--registry", str(good)]) == 0
    assert "2 dataset file(s) verified" in capsys.readouterr().out
    assert [i.name for i in list_datasets(cache, include_bundled=False)] == ["alpha", "beta"]

    bad = _registry(tmp_path / "served", [
        {"name": "alpha", "url": files["alpha"].as_uri(), "format": "risk", "sha256": "0" * 64,
         "path": "evals/other.jsonl"}])
    assert cli.main(["fetch", "alpha", "--cache-dir", str(cache), "--registry", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sha256 mismatch" in err and len(err.splitlines()) == 1
    assert not (cache / "evals" / "other.jsonl").exists()


def test_fetch_without_internet_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    offline = _registry(tmp_path, [{"name": "x", "url": "http://127.0.0.1:9/x.jsonl", "format": "risk",
                                    "sha256": "0" * 64, "path": "x.jsonl"}])
    assert cli.main(["fetch", "paper", "--cache-dir", str(tmp_path / "c"), "--registry", str(offline)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no internet connection?" in err[0] and "0 of 1" in err[0]
