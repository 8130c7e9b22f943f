"""Accelerators and large models, tested on CPU: dtype defaults, batch sizes from free memory,
models whose blocks carry accelerate's dispatch hooks, offloaded weights, bfloat16 agreement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from accelerate.hooks import AlignDevicesHook, add_hook_to_module

from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset
from steering.core.prompts import encode_example
from steering.engine import devices, fast
from steering.engine import reference as evaluate
from steering.engine.tiny import tiny_random_model
from steering.run.sweep import run_sweep, train_vectors

MULTS = [-1.5, -0.5, 0.0, 1.0, 1.5]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for device_map='auto'")


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("corrigibility-demo")
    lm = tiny_random_model()
    pairs = [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in ds.examples][:18]
    return ds, pairs[:8], pairs[8:11]


def _grids(lm, train, test, layers=(1, 3), reference=True):
    vectors = train_vectors(lm, train, SweepConfig(dataset="corrigibility-demo"))
    got = fast.grid(lm, fast.build_cache(lm, test), vectors, list(layers), MULTS)
    ref = evaluate.reference_grid(lm, test, vectors, list(layers), MULTS, "answer") if reference else None
    return got, ref


class CountingHook(AlignDevicesHook):
    """accelerate's dispatch hook, counting the calls that move a block's inputs to its device."""

    calls = 0

    def pre_forward(self, module, *args, **kwargs):
        CountingHook.calls += 1
        return super().pre_forward(module, *args, **kwargs)


def test_dtype_default_follows_the_device():
    assert devices.default_dtype(torch.device("cpu")) == "float32"
    assert devices.default_dtype(torch.device("cuda", 0)) == "bfloat16"


def test_batch_sizes_unchanged_on_cpu_and_from_free_memory_on_cuda():
    lm = tiny_random_model()
    assert devices.tokens_per_pass(lm) == fast.TOKENS_PER_PASS == 3072  # CPU: the fixed count
    assert devices.prompts_per_batch(lm) == 16
    small = devices.tokens_per_pass(lm, free=64 << 20)
    big = devices.tokens_per_pass(lm, free=256 << 20)
    assert small < big  # more free memory, bigger passes ...
    assert small * devices.bytes_per_query_token(lm) <= (64 << 20) * devices.MEMORY_FRACTION  # ... within budget
    # A 7B-shaped config needs far more per token than the tiny one: fewer tokens per pass in the same memory.
    from transformers import LlamaConfig

    class Shape:  # only the config is read
        model = type("M", (), {"config": LlamaConfig(hidden_size=4096, intermediate_size=11008,
                                                     num_hidden_layers=32, num_attention_heads=32)})()
        n_layers, dtype, blocks, device = 32, torch.bfloat16, [], torch.device("cpu")

    free = 20 << 30
    assert devices.tokens_per_pass(Shape, free=free) < devices.tokens_per_pass(lm, free=free)
    assert 1 <= devices.prompts_per_batch(Shape, 300, free=free) < devices.prompts_per_batch(lm, 300, free=free)


def test_execution_device_follows_the_dispatch_hook():
    block = torch.nn.Linear(2, 2)
    assert devices.execution_device(block, torch.device("cpu")) == torch.device("cpu")
    add_hook_to_module(block, AlignDevicesHook(execution_device="meta"))  # stands in for "cuda:1"
    assert devices.execution_device(block, torch.device("cpu")) == torch.device("meta")
    lm = type("LM", (), {"blocks": [torch.nn.Identity(), block], "device": torch.device("cpu")})()
    assert devices.to_block(torch.ones(3), lm, 1).device.type == "meta"
    assert devices.to_block(torch.ones(3), lm, 0).device.type == "cpu"


def test_fast_path_through_dispatch_hooks_matches_reference(data):
    """Every block behind accelerate's AlignDevicesHook (as device_map='auto' leaves it), all on the CPU."""
    _, train, test = data
    plain = tiny_random_model()
    want, _ = _grids(plain, train, test, reference=False)
    lm = tiny_random_model()
    for block in lm.blocks:
        add_hook_to_module(block, CountingHook(execution_device="cpu", io_same_device=False))
    add_hook_to_module(lm.model, AlignDevicesHook(execution_device="cpu", io_same_device=True))
    from steering.engine.models import wrap_model

    lm = wrap_model(lm.model, lm.tokenizer, "tiny-dispatched")
    assert devices.is_dispatched(lm) and fast.check_fast_path(lm)
    CountingHook.calls = 0
    got, ref = _grids(lm, train, test)
    assert CountingHook.calls > 0  # the blocks' inputs went through the device-moving hooks
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_offloaded_weights_fall_back_to_reference_with_a_message(data, tmp_path):
    from accelerate import cpu_offload

    ds, _, _ = data
    cfg = dict(model="tiny-random", dataset=ds.name, layers=[2], n_train=6, n_test=4, multipliers=MULTS)
    want = run_sweep(SweepConfig(**cfg), lm=tiny_random_model(), out=tmp_path / "a", dataset=ds)
    lm = tiny_random_model()
    cpu_offload(lm.model, execution_device=torch.device("cpu"))  # weights become meta placeholders
    assert devices.offloaded(lm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run_sweep(SweepConfig(**cfg), lm=lm, out=tmp_path / "b", dataset=ds)
    assert any("offloaded" in str(w.message) for w in caught)
    assert got.manifest["path"] == "reference" and "offloaded" in got.manifest["path_note"]
    np.testing.assert_allclose(got.propensities.propensity, want.propensities.propensity, atol=1e-4)


def test_bfloat16_fast_path_agrees_within_its_tolerance(data):
    _, train, test = data
    lm = tiny_random_model()
    lm.model.to(torch.bfloat16)
    lm.dtype = torch.bfloat16
    assert fast.check_fast_path(lm)
    got, ref = _grids(lm, train, test)
    tol = devices.FAST_TOLERANCE[torch.bfloat16]
    assert np.all(np.abs(got - ref) <= tol * np.maximum(1.0, np.abs(ref)))
    assert np.abs(got - ref).max() > 1e-5  # really computed in bfloat16, not silently in float32


BF16_ABS_TOL = 0.2  # bfloat16 keeps ~3 significant digits: the tiny model's logits (O(10)) round by ~0.05 each;
# measured |bfloat16 - float32| <= 0.08 on propensities that spread over ~3 units


def _bf16_against_float32(lm16, data) -> None:
    """``lm16`` holds bfloat16 weights and gives finite propensities close to the float32 model's."""
    _, train, test = data
    assert lm16.dtype == torch.bfloat16 and {p.dtype for p in lm16.model.parameters()} == {torch.bfloat16}
    lm32 = tiny_random_model()
    vector = train_vectors(lm32, train, SweepConfig(dataset="corrigibility-demo"))[1]
    for m in (0.0, 1.0):
        want = np.array([evaluate.reference_propensity(lm32, p, 1, vector, m) for p in test])
        got = np.array([evaluate.reference_propensity(lm16, p, 1, vector.to(lm16.device, torch.bfloat16), m)
                        for p in test])
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=0, atol=BF16_ABS_TOL)
        assert np.abs(got - want).max() > 1e-4  # really computed in bfloat16


def test_tiny_model_loads_in_bfloat16(data):
    _bf16_against_float32(tiny_random_model(dtype="bfloat16"), data)


@needs_cuda
def test_cuda_loads_bfloat16_by_default_and_sizes_batches_from_memory(data):
    lm = tiny_random_model(device="cuda")  # no dtype given: the device's default, as load_model picks it
    assert lm.device.type == "cuda" and {p.device.type for p in lm.model.parameters()} == {"cuda"}
    _bf16_against_float32(lm, data)
    assert devices.tokens_per_pass(lm) != devices.TOKENS_PER_PASS_CPU


@needs_two_gpus
def test_device_map_auto_across_two_gpus(data):
    _, train, test = data
    lm = tiny_random_model()
    from accelerate import dispatch_model

    half = lm.n_layers // 2
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "lm_head": 1,
                  **{f"model.layers.{i}": 0 if i < half else 1 for i in range(lm.n_layers)}}
    from steering.engine.models import wrap_model

    lm = wrap_model(dispatch_model(lm.model, device_map), lm.tokenizer, "tiny-two-gpus")
    assert len(set(devices.block_devices(lm))) == 2 and fast.check_fast_path(lm)
    got, ref = _grids(lm, train, test)
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-3)
