"""The dequantised-weight cache of GGUF models (steering.engine.weight_cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from steering.engine import weight_cache as W


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("STEERING_CACHE_DIR", str(root))
    return root


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("Would you accept a new goal? (A) yes (B) no", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEERING_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_root() == tmp_path / "xdg" / "steering"
    monkeypatch.setenv("STEERING_CACHE_DIR", "off")
    assert W.cache_root() is None


def test_cached_load_matches_and_file_change_invalidates(cache: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for the GGUF reader (the tiny random model) so keying and invalidation run in a second."""
    from steering.engine.tiny import tiny_random_model

    calls = []

    def fresh(path: Path, dtype, trust_remote_code):
        calls.append(path.read_bytes())
        lm = tiny_random_model(seed=len(calls))
        return lm.model, lm.tokenizer

    monkeypatch.setattr(W, "_fresh_load", fresh)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF version one")
    m1, t1 = W.load_gguf(gguf)
    m2, t2 = W.load_gguf(gguf)
    assert len(calls) == 1  # the second load came from the cache
    assert torch.equal(_logits(m1, t1), _logits(m2, t2))
    assert t2.chat_template == t1.chat_template and len(t2) == len(t1)
    sha1 = W.file_sha256(gguf)
    assert (W.entry_dir(cache, sha1) / "model.safetensors").is_file()
    half, _ = W.load_gguf(gguf, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16 and len(calls) == 1

    gguf.write_bytes(b"GGUF version two, longer")  # the file changed: a fresh load, a new entry
    m3, t3 = W.load_gguf(gguf)
    assert len(calls) == 2
    assert not torch.equal(_logits(m1, t1), _logits(m3, t3))
    assert not W.entry_dir(cache, sha1).exists()  # the stale entry is gone
    assert W.entry_dir(cache, W.file_sha256(gguf)).is_dir()

    shutil.rmtree(W.entry_dir(cache, W.file_sha256(gguf)) / "model.safetensors", ignore_errors=True)
    (W.entry_dir(cache, W.file_sha256(gguf)) / "model.safetensors").write_bytes(b"broken")
    W.load_gguf(gguf)  # an unreadable entry is rebuilt, not fatal
    assert len(calls) == 3


@pytest.mark.integration
def test_real_gguf_cached_logits_identical(cache: Path) -> None:
    from tests.conftest import SMOL_GGUF, smol_dir

    path = smol_dir() / SMOL_GGUF
    fresh_model, fresh_tok = W.load_gguf(path)  # dequantised from the file, fills the cache
    entry = W.entry_dir(cache, W.file_sha256(path))
    assert (entry / "model.safetensors").is_file()
    cached_model, cached_tok = W.load_gguf(path)
    assert fresh_tok.chat_template == cached_tok.chat_template
    assert fresh_tok("(A) yes").input_ids == cached_tok("(A) yes").input_ids
    assert torch.equal(_logits(fresh_model, fresh_tok), _logits(cached_model, cached_tok))
