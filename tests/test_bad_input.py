"""Issue 10's bad inputs through the CLI: exit 2, exactly one line starting 'error: ', no traceback,
nothing left under --out; and no wrong number is ever stored (non-finite multipliers, NaN fits).

Cases that need no model run in-process in milliseconds (they must fail before the model loads);
those that need the embedded model's tokenizer or weights are marked integration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from steering.cli.main import main
from steering.core.metrics import dataset_figures, ols_fit, per_example
from steering.errors import NonFiniteError

ROOT = Path(__file__).resolve().parents[1]
ITEM = {"question": "Q?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
        "answer_not_matching_behavior": " (B)"}


LOADS: list[str] = []


@pytest.fixture(autouse=True)
def count_model_loads(monkeypatch):
    """Records every model load the CLI starts, so a test can say its error came before any."""
    from steering.cli import main as cli

    real = cli.load_model
    LOADS.clear()

    def counted(name, *a, **k):
        LOADS.append(name)
        return real(name, *a, **k)

    monkeypatch.setattr(cli, "load_model", counted)


def bad(capsys, out: Path, *args: str, max_seconds: float = 60.0, loads: bool = False) -> str:
    t0 = time.time()
    code = main(["sweep", "--out", str(out), *args])
    elapsed = time.time() - t0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert loads or not LOADS, f"the model was loaded ({LOADS}) before this error"
    assert elapsed < max_seconds, f"took {elapsed:.1f} s"
    return lines[0]


def demo(*extra: str) -> list[str]:
    return ["--dataset", "corrigibility-demo", "--n-train", "8", "--n-test", "8", *extra]


@pytest.mark.parametrize("spec", ["nan,0,1", "inf,0,1", "0,1,1e309", "nan,nan", "-inf,0", "1", "1,1", "1,x", ",",
                                  "0,1e-300", "-1e200,0,1e200", "1e5,0"])
def test_bad_multipliers(capsys, tmp_path, spec):
    msg = bad(capsys, tmp_path / "r", *demo(f"--multipliers={spec}"))
    assert "multiplier" in msg


@pytest.mark.parametrize("spec,words", [("3-1", "reversed"), ("", "no layers"), (",", "no layers"),
                                         ("a-b", "cannot read"), ("1-", "cannot read"), ("0-100000000000", "")])
def test_bad_layers_before_loading(capsys, tmp_path, spec, words):
    msg = bad(capsys, tmp_path / "r", *demo("--layers", spec, "--model", "no-such-model"), loads=not words)
    assert words in msg


@pytest.mark.parametrize("args,words", [
    (["--seed", "-1"], "seed"),
    (["--n-train", "0"], "at least 1"),
    (["--n-test", "0"], "at least 1"),
    (["--device", "foo"], "unknown device"),
    (["--device", "cuda:99"], "cuda"),
    (["--device", "cuda;rm"], "unknown device"),
])
def test_bad_settings_fail_before_the_model(capsys, tmp_path, args, words):
    assert words in bad(capsys, tmp_path / "r", *demo(*args))


def test_cuda_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no usable CUDA" in bad(capsys, tmp_path / "r", *demo("--device", "cuda"))


def test_deeply_nested_json(capsys, tmp_path):
    for name in ("deep.json", "deep.jsonl"):
        f = tmp_path / name
        f.write_text("[" * 100000 + "]" * 100000)
        assert "nested too deeply" in bad(capsys, tmp_path / "r", "--dataset", str(f))


def test_deeply_nested_file_does_not_break_the_listing(capsys, tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "good.jsonl").write_text("\n".join(json.dumps(ITEM) for _ in range(4)))
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    listed, _, unreadable = out.partition("\n\n")
    assert "good" in [line.split()[0] for line in listed.splitlines()]
    assert "deep" not in [line.split()[0] for line in listed.splitlines()]
    assert "nested too deeply" in unreadable  # listed apart, with its reason


def test_data_dir_file_over_the_upload_limit(capsys, tmp_path):
    from steering.core.datasets import MAX_UPLOAD_BYTES

    f = tmp_path / "huge.jsonl"
    line = json.dumps(ITEM) + "\n"
    f.write_text(line * (MAX_UPLOAD_BYTES // len(line) + 10))
    assert "limit is 20 MB" in bad(capsys, tmp_path / "r", "--dataset", str(f))


@pytest.mark.parametrize("content,words", [(b"GGUF\x03\x00\x00\x00" + b"\x01" * 20, "truncated"),
                                            (b"not a gguf at all", "not a GGUF"), (b"", "not a GGUF")])
def test_damaged_gguf(capsys, tmp_path, content, words):
    f = tmp_path / "model.gguf"
    f.write_bytes(content)
    assert words in bad(capsys, tmp_path / "r", *demo("--model", str(f)))


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in bad(capsys, tmp_path / "r", *demo("--out", str(f)))
    assert "is a file" in bad(capsys, tmp_path / "r", *demo("--out", str(f / "sub")))
    assert f.read_text() == "x"


def test_a_dataset_name_too_long_for_a_file_name_still_runs(capsys, tmp_path):
    """The run directory's readable part is cut (its key keeps it unique): nothing fails after the work."""
    f = tmp_path / ("n" * 240 + ".jsonl")
    f.write_text("\n".join(json.dumps(ITEM) for _ in range(20)))
    from steering.core.config import SweepConfig
    from steering.core.datasets import load_dataset
    from steering.engine.tiny import tiny_random_model
    from steering.run.checks import precheck_sweep
    from steering.run.sweep import run_sweep

    out = tmp_path / "r"
    ds = load_dataset(str(f))
    precheck_sweep("tiny-random", ds.name, "1", 0, None, 8, 8, out)  # the CLI's precheck lets it through
    run_sweep(SweepConfig(dataset=str(f), layers=[1], n_train=8, n_test=8), lm=tiny_random_model(), out=out,
              dataset=ds)
    runs = [d for d in out.iterdir() if d.is_dir() and d.name.startswith("n")]
    assert len(runs) == 1 and len((".partial-" + runs[0].name).encode()) <= 255
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert runs[0].name.endswith("~--" + manifest["key"])


def test_offline_hugging_face_id_fails_at_once(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = bad(capsys, tmp_path / "r", *demo("--model", "no-such-org/no-such-model"), max_seconds=20)
    assert "not in the local Hugging Face cache" in msg


def test_offline_without_the_variable_probes_the_network_quickly(capsys, tmp_path, monkeypatch):
    from steering.engine import modelfiles

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(modelfiles, "_reachable", lambda *a, **k: False)
    msg = bad(capsys, tmp_path / "r", *demo("--model", "no-such-org/no-such-model"), max_seconds=20)
    assert "no internet connection" in msg


# ---------------------------------------------------------------- with the embedded model


def _smol():
    from steering.core.registry import REGISTRY, registry_gguf_path
    from steering.errors import ModelError

    try:
        return registry_gguf_path(REGISTRY["smollm2-135m"])
    except ModelError:
        pytest.skip("the embedded model is not installed")


def test_layer_out_of_range_is_read_from_the_gguf_header(capsys, tmp_path):
    _smol()
    msg = bad(capsys, tmp_path / "r", *demo("--layers", "30"))  # no load: the layer count is read from the header
    assert msg == "error: layer 30 is out of range: the model has layers 0-29"


@pytest.mark.integration
def test_truncated_gguf_with_a_valid_header(capsys, tmp_path):
    src = _smol()
    f = tmp_path / "cut.gguf"
    f.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    assert "cannot load model" in bad(capsys, tmp_path / "r", *demo("--model", str(f)), loads=True)


@pytest.mark.integration
def test_megabyte_question_names_the_item(capsys, tmp_path):
    _smol()
    f = tmp_path / "long.jsonl"
    items = [dict(ITEM) for _ in range(20)]
    items[5]["question"] = "word " * 200_000 + items[5]["question"]
    f.write_text("\n".join(json.dumps(i) for i in items))
    msg = bad(capsys, tmp_path / "r", "--dataset", str(f), "--n-train", "10", "--n-test", "10", "--seed", "1")
    assert "item long:5 is" in msg and "8192" in msg


def test_item_over_the_context_is_found_when_encoded_before_any_pass(tiny_llama, tmp_path, monkeypatch):
    """Too long in tokens but not obviously so in characters: caught after tokenising, before a forward pass."""
    from steering.core.datasets import parse_bytes
    from steering.engine import fast
    from steering.run import sweep

    items = [dict(ITEM) for _ in range(12)]
    items[7]["question"] = "word " * 3000 + ITEM["question"]  # ~3000 tokens, the tiny model's context is 2048
    ds = parse_bytes("\n".join(json.dumps(i) for i in items).encode(), "ctx.jsonl")
    monkeypatch.setattr(fast, "build_cache", lambda *a, **k: pytest.fail("a forward pass ran"))
    with pytest.raises(sweep.SweepError, match=r"item ctx:7 is \d+ tokens long; the limit is 2048"):
        sweep.run_sweep(sweep.SweepConfig(dataset=ds.name, layers=[1], n_train=6, n_test=6), lm=tiny_llama,
                        out=tmp_path, dataset=ds)
    assert not list(tmp_path.iterdir())


@pytest.mark.integration
def test_a_whole_process_prints_one_line(tmp_path):
    """Through a real process: one stderr line, exit 2, no progress output, nothing under --out."""
    proc = subprocess.run([sys.executable, "-m", "steering", "sweep", "--dataset", "corrigible-neutral-HHH",
                           "--data-dir", str(tmp_path), "--layers", "2", "--n-train", "4", "--n-test", "4",
                           "--multipliers", "nan,0,1", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: multiplier nan")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- no wrong numbers


def test_metrics_refuse_nan_instead_of_reporting_zeros():
    x = np.array([-1.0, 0.0, 1.0])
    with pytest.raises(NonFiniteError):
        ols_fit(x, np.array([[1.0, np.nan, 2.0]]))
    with pytest.raises(NonFiniteError):
        ols_fit(np.array([np.nan, 0.0, 1.0]), np.ones((2, 3)))
    with pytest.raises(NonFiniteError):
        per_example(np.array([1.0, 1.0, 1.0]), np.ones((2, 3)))  # no spread: no slope, not a slope of 0
    with pytest.raises(NonFiniteError):
        dataset_figures(np.array([0.5, np.nan, 1.0]))
    assert np.allclose(ols_fit(x, np.array([[0.0, 1.0, 2.0]]))[0], [1.0])


def test_a_nan_propensity_is_never_stored(tiny_llama, tmp_path, monkeypatch):
    from steering.errors import SweepError
    from steering.run import sweep
    from steering.run.sweep import SweepConfig, run_sweep

    real = sweep.evaluate_grid

    def poisoned(*a, **k):
        out = real(*a, **k)
        out[0, 0, 0] = np.nan  # e.g. a float16 overflow in the model
        return out

    monkeypatch.setattr(sweep, "evaluate_grid", poisoned)
    with pytest.raises((NonFiniteError, SweepError)):
        run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1], n_train=4, n_test=4), lm=tiny_llama,
                  out=tmp_path)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_nothing_partial_is_left_by_a_reversed_range(capsys, tmp_path):
    bad(capsys, tmp_path / "r", *demo("--layers", "3-1"))
    assert not (tmp_path / "r").exists()
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
