"""CLI: listings, and bad input -> one line naming the problem, exit code 2, no run directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from steering.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_registry(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "smollm2-135m" in out and "gemma3-270m" in out


def test_datasets_lists_bundled_and_shared(capsys, shared_datasets):
    code, out, _ = run_cli(capsys, "datasets", "--data-dir", str(shared_datasets))
    assert code == 0
    assert "corrigibility-demo" in out and "corrigible-neutral-HHH" in out
    line = next(l for l in out.splitlines() if l.startswith("corrigible-neutral-HHH "))
    assert " 1000 " in line


def _bad(capsys, tmp_path, *args):
    out_dir = tmp_path / "results"
    code, out, err = run_cli(capsys, "sweep", "--out", str(out_dir), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out_dir.exists() or not [p for p in out_dir.iterdir()]
    return lines[0]


def test_malformed_json_line_names_file_and_line(capsys, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q\\n\\nChoices:\\n (A) x\\n (B) y", "answer_matching_behavior": " (A)", '
                 '"answer_not_matching_behavior": " (B)"}\n{not json\n')
    msg = _bad(capsys, tmp_path, "--dataset", str(f))
    assert "bad.jsonl" in msg and "line 2" in msg


def test_missing_field(capsys, tmp_path):
    f = tmp_path / "missing.jsonl"
    f.write_text('{"question": "q", "answer_not_matching_behavior": " (A)"}\n')
    msg = _bad(capsys, tmp_path, "--dataset", str(f))
    assert "'answer_matching_behavior'" in msg and "line 1" in msg


def test_answer_not_ab_or_yes_no(capsys, tmp_path):
    f = tmp_path / "answers.jsonl"
    f.write_text('{"question": "q", "answer_matching_behavior": " (C)", "answer_not_matching_behavior": " (B)"}\n')
    assert "(C)" in _bad(capsys, tmp_path, "--dataset", str(f))


def test_unknown_model_lists_registry(capsys, tmp_path):
    msg = _bad(capsys, tmp_path, "--dataset", "corrigibility-demo", "--n-train", "20", "--n-test", "10",
               "--model", "no-such-model")
    assert "smollm2-135m" in msg


def test_split_larger_than_dataset(capsys, tmp_path):
    msg = _bad(capsys, tmp_path, "--dataset", "corrigibility-demo", "--n-train", "60", "--n-test", "60")
    assert "60" in msg


def test_unreadable_file(capsys, tmp_path):
    assert "nope.jsonl" in _bad(capsys, tmp_path, "--dataset", str(tmp_path / "nope.jsonl"))


def test_bad_multipliers(capsys, tmp_path):
    assert "multipliers" in _bad(capsys, tmp_path, "--dataset", "corrigibility-demo", "--multipliers", "1,x")


@pytest.mark.integration
def test_layer_out_of_range_gives_range(tmp_path):
    """Through a real process on the embedded model: exit 2 and the valid range, no run directory."""
    proc = subprocess.run([sys.executable, "-m", "steering", "sweep", "--dataset", "corrigibility-demo",
                           "--layers", "30", "--n-train", "20", "--n-test", "10", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error: layer 30 is out of range: the model has layers 0-29" in proc.stderr
    assert not (tmp_path / "r").exists()
