"""llama.cpp control vectors: GGUF export, read back with the gguf package, import and re-evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from steering.cli import main as cli
from steering.core.vectors import VectorMeta, load_vectors
from steering.errors import ControlVectorError
from steering.interop.controlvec import export_gguf, read_vectors, to_safetensors, write_gguf


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    from steering.core.config import SweepConfig
    from steering.run.sweep import run_sweep

    out = tmp_path_factory.mktemp("results")
    return run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[0, 1, 2, 3], n_train=8, n_test=6,
                                 multipliers=[-1.0, 0.0, 1.0]), lm=tiny_llama, out=out)


def test_gguf_file_as_llama_cpp_reads_it(run, tmp_path: Path) -> None:
    from gguf import GGUFReader

    path, layers = export_gguf(run.run_dir, tmp_path / "cv.gguf")
    assert layers == [1, 2, 3]  # block 0 cannot carry a llama.cpp control vector
    reader = GGUFReader(str(path))
    f = {k: reader.fields[k].contents() for k in reader.fields if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "controlvector"
    assert f["controlvector.model_hint"] == "tiny-llama" and f["controlvector.layer_count"] == 3
    assert f["steering.model"] == "tiny-llama" and f["steering.layers"] == [1, 2, 3]
    assert json.loads(f["steering.settings"]) == json.loads((run.run_dir / "manifest.json").read_text())["settings"]
    assert json.loads(f["steering.vector_meta"])["dataset"] == "corrigibility-demo"
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2", "direction.3"]
    for layer in (1, 2, 3):
        t = tensors[f"direction.{layer}"]
        assert t.tensor_type.name == "F32" and list(t.shape) == [64]
        assert np.array_equal(np.asarray(t.data), run.vectors[layer].float().numpy())


def test_layer_zero_and_bad_files_are_refused(run, tmp_path: Path) -> None:
    with pytest.raises(ControlVectorError, match="layer 0 cannot be exported"):
        export_gguf(run.run_dir, tmp_path / "zero.gguf", layers=[0, 1])
    with pytest.raises(ControlVectorError, match="no vector for layer"):
        export_gguf(run.run_dir, tmp_path / "x.gguf", layers=[7])
    from gguf import GGUFWriter

    w = GGUFWriter(str(tmp_path / "model.gguf"), arch="llama")
    w.add_tensor("direction.1", np.zeros(4, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(ControlVectorError, match="not a control vector"):
        read_vectors(tmp_path / "model.gguf")


def test_foreign_control_vector_without_our_metadata(tmp_path: Path) -> None:
    """A file as repeng writes it: only the llama.cpp keys; repeated layers are summed, as llama.cpp does."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(tmp_path / "repeng.gguf"), arch="controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", 2)
    w.add_tensor("direction.5", np.arange(4, dtype=np.float32))
    w.add_tensor("direction.9", np.ones(4, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    vectors, info = read_vectors(tmp_path / "repeng.gguf")
    assert info["model"] == "llama" and info["layers"] == [5, 9] and info["settings"] is None
    assert torch.equal(vectors[5], torch.arange(4, dtype=torch.float32))
    vec, side = to_safetensors(tmp_path / "repeng.gguf", tmp_path / "repeng.safetensors")
    back, meta = load_vectors(vec)
    assert sorted(back) == [5, 9] and meta.model == "llama" and meta.hidden_size == 4


def test_roundtrip_through_write_and_read(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vectors = {3: torch.randn(16), 11: torch.randn(16)}
    write_gguf(tmp_path / "v.gguf", vectors, VectorMeta(model="m", layers=[3, 11], n_train=5))
    back, info = read_vectors(tmp_path / "v.gguf")
    assert info["vector_meta"]["n_train"] == 5
    assert all(torch.equal(back[k], vectors[k]) for k in vectors)


def test_cli_export_then_import_reproduces_the_run(run, tiny_llama, tmp_path: Path, monkeypatch, capsys) -> None:
    from steering.engine import models

    monkeypatch.setattr(models, "load_model", lambda name, **kw: tiny_llama)
    gguf_path = tmp_path / "cv.gguf"
    assert cli.main(["export", str(run.run_dir), "--format", "gguf", "--to", str(gguf_path)]) == 0
    assert "direction.N = output of block N" in capsys.readouterr().out
    out = tmp_path / "imported"
    assert cli.main(["import", str(gguf_path), "--to", str(tmp_path / "back.safetensors"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    run_dir = Path(text.strip().splitlines()[-1].removeprefix("run directory: "))
    new = pd.read_parquet(run_dir / "steerability.parquet")
    old = run.steerability[run.steerability.layer > 0].reset_index(drop=True)
    assert list(new.example_id) == list(old.example_id) and list(new.layer) == list(old.layer)
    assert np.array_equal(new.slope.to_numpy(), old.slope.to_numpy())  # the same numbers, bit for bit
    from steering.core.results import load_run

    assert load_run(run_dir).layers == [1, 2, 3]  # a run like any other for the dashboard
    back, meta = load_vectors(tmp_path / "back.safetensors")
    assert all(torch.equal(back[k], run.vectors[k].float()) for k in (1, 2, 3)) and meta.model == "tiny-llama"
    # the safetensors file with its sidecar imports too (no run settings inside: give the split)
    assert cli.main(["import", str(run.run_dir / "vectors.safetensors"), "--dataset", "corrigibility-demo",
                     "--n-train", "8", "--n-test", "6", "--multipliers=-1,0,1", "--layers", "2",
                     "--out", str(out)]) == 0
    run2 = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("run directory: "))
    slopes2 = pd.read_parquet(run2 / "steerability.parquet").slope.to_numpy()
    assert np.array_equal(slopes2, run.steerability[run.steerability.layer == 2].slope.to_numpy())


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["import", str(tmp_path / "missing.gguf")]) == 2
    assert cli.main(["export", str(tmp_path), "--format", "gguf", "--to", str(tmp_path / "x.gguf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "not a run directory" in err[1]
