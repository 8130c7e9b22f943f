"""The model registry: the paper's models and small chat models by Hugging Face id, with default layers."""

from __future__ import annotations

import importlib.util

import pytest

from steering.cli import main as cli
from steering.core.registry import REGISTRY, default_layer, registry_entry
from steering.engine import modelfiles, models

PAPER = {"llama2-7b-chat": ("meta-llama/Llama-2-7b-chat-hf", 13, 32),
         "qwen1.5-14b-chat": ("Qwen/Qwen1.5-14B-Chat", 21, 40),
         "gemma2-2b-it": ("google/gemma-2-2b-it", 14, 26)}


def test_paper_models_and_layers() -> None:
    for name, (hf_id, layer, n_layers) in PAPER.items():
        e = REGISTRY[name]
        assert (e.hf_id, e.default_layer, e.n_layers) == (hf_id, layer, n_layers)
        assert registry_entry(hf_id) is e and default_layer(hf_id, n_layers) == layer


def test_every_entry_has_a_layer_in_range_and_needs() -> None:
    assert sum(1 for e in REGISTRY.values() if e.hf_id) >= 6
    for e in REGISTRY.values():
        assert e.n_layers > 0 and 0 <= e.default_layer < e.n_layers, e.name
        assert e.needs and ("RAM" in e.needs or "GPU" in e.needs), e.name
    assert default_layer("smollm2-135m", 30) == REGISTRY["smollm2-135m"].default_layer
    assert default_layer("some/unknown-model", 12) == 6  # not in the registry: the middle layer
    assert default_layer("llama2-7b-chat", 8) == 4  # a registry layer out of range for this config is not used


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_embedded_gguf_layer_count_matches_registry(name: str) -> None:
    from gguf import GGUFReader

    entry = REGISTRY[name]
    if importlib.util.find_spec(entry.module) is None:
        pytest.skip(f"{name}'s model wheel ({entry.package}) is not installed")
    reader = GGUFReader(models.registry_gguf_path(entry))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    block_count = int(reader.fields[f"{arch}.block_count"].parts[-1][0])
    assert block_count == entry.n_layers, name


class _DownloadStarts(Exception):
    pass


@pytest.mark.parametrize("name", [n for n, e in REGISTRY.items() if e.hf_id])
def test_hf_entries_load_by_id_up_to_the_download(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    seen = {}

    def from_pretrained(source, **kwargs):
        seen.update(source=source, **kwargs)
        raise _DownloadStarts

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(modelfiles, "check_hf_available", lambda name: None)  # as if online
    with pytest.raises(models.ModelError) as raised:  # load failures reach the user as one ModelError line
        models.load_model(name)
    assert isinstance(raised.value.__cause__, _DownloadStarts)
    assert seen["source"] == REGISTRY[name].hf_id
    assert seen["trust_remote_code"] is False and "gguf_file" not in seen


def test_models_command_lists_needs_and_layers(capsys) -> None:
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, (hf_id, layer, n_layers) in PAPER.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{layer}/{n_layers}" in line
        assert hf_id in out
    assert "GPU" in out and "RAM" in out
