"""patch(model) on tiny mlx-lm models of seven families, against the unpatched model (the oracle):
logits, greedy generation through mlx-lm's KV cache, training-step gradients, bf16, and unpatch."""
from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from conftest import BACKENDS
from lmtools import FAMILIES, build, grads, greedy, loss_fn, max_rel, tokens
from mlx.utils import tree_flatten, tree_map

import zmlx_dsl as zmlx

# what patch() must find in each family (kind -> at least this many modules), so a silently
# unrecognised module fails here rather than passing every fidelity check by being left alone
EXPECTED = {
    "llama": {"RMSNorm -> zmlx_dsl.nn.RMSNorm": 5, "Llama3RoPE -> zmlx_dsl.nn.FreqsRoPE": 2,
              "MLP -> zmlx_dsl.nn.GatedMLP (SwiGLU)": 2},
    "mistral": {"RMSNorm -> zmlx_dsl.nn.RMSNorm": 5, "RoPE -> zmlx_dsl.nn.RoPE": 2,
                "MLP -> zmlx_dsl.nn.GatedMLP (SwiGLU)": 2},
    "qwen3": {"RMSNorm -> zmlx_dsl.nn.RMSNorm": 9, "RoPE -> zmlx_dsl.nn.RoPE": 2,
              "MLP -> zmlx_dsl.nn.GatedMLP (SwiGLU)": 2},
    "gemma2": {"RMSNorm -> zmlx_dsl.nn.OffsetRMSNorm": 9, "RoPE -> zmlx_dsl.nn.RoPE": 2,
               "MLP -> zmlx_dsl.nn.GatedMLP (GeGLU, tanh gelu)": 2},
    "gemma3": {"RMSNorm -> zmlx_dsl.nn.OffsetRMSNorm": 13, "RoPE -> zmlx_dsl.nn.RoPE": 2,
               "MLP -> zmlx_dsl.nn.GatedMLP (GeGLU, tanh gelu)": 2},
    "phi3": {"RMSNorm -> zmlx_dsl.nn.RMSNorm": 5, "SuScaledRoPE -> zmlx_dsl.nn.FreqsRoPE": 2,
             "MLP -> zmlx_dsl.nn.FusedGatedMLP (SwiGLU)": 2},
    "mixtral": {"RMSNorm -> zmlx_dsl.nn.RMSNorm": 5, "RoPE -> zmlx_dsl.nn.RoPE": 2,
                "SwiGLU -> zmlx_dsl.nn.SwiGLU": 2},
}
F32 = 1e-4   # logits after patch: the relative error asked of float32
GRAD = 1e-4  # each parameter's gradient, relative to its scale
BF16 = 2.0   # bf16: at most this many times MLX's own bf16 error (the bf16 model against float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_patched_model_matches_the_unpatched_one(family: str, backend: str) -> None:
    model, x = build(family), tokens(2, 16)
    logits = model(x)
    loss, g = grads(model, x)
    generated, last = greedy(model, x[0, :5])
    assert len(set(generated)) >= 5  # a generation that varies, so that matching it means something
    params = dict(tree_flatten(model.parameters()))

    report = zmlx.patch(model, backend=backend)
    found: dict[str, int] = {}
    for what in report.replaced.values():
        found[what] = found.get(what, 0) + 1
    assert found == EXPECTED[family]
    # the same parameters (names, shapes, dtypes: the very arrays), so weights load and train unchanged
    assert {k: v for k, v in tree_flatten(model.parameters())}.keys() == params.keys()
    assert all(v is params[k] for k, v in tree_flatten(model.parameters()))

    assert max_rel(model(x), logits) <= F32
    patched_loss, patched_g = grads(model, x)
    assert abs(patched_loss.item() - loss.item()) <= F32 * abs(loss.item())
    assert patched_g.keys() == g.keys()
    assert {k: max_rel(patched_g[k], g[k]) for k in g if max_rel(patched_g[k], g[k]) > GRAD} == {}
    patched_generated, patched_last = greedy(model, x[0, :5])
    assert patched_generated == generated
    assert max_rel(patched_last, last) <= F32

    restored = zmlx.unpatch(model)
    assert sorted(restored) == sorted(report)
    assert mx.array_equal(model(x), logits).item()
    assert greedy(model, x[0, :5])[0] == generated


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"mixtral"}))  # MLX's CPU gather_mm is float32 only
def test_bf16_within_mlx_own_bf16_spread(family: str, backend: str) -> None:
    model, x = build(family, dtype=mx.bfloat16), tokens(2, 16)
    reference = build(family)  # float32 arithmetic on the very (bf16-rounded) weights
    reference.update(tree_map(lambda v: v.astype(mx.float32), model.parameters()))
    exact = reference(x)
    logits = model(x)
    assert logits.dtype == mx.bfloat16
    spread = max_rel(logits, exact)
    zmlx.patch(model, backend=backend)
    patched = model(x)
    assert patched.dtype == mx.bfloat16
    assert max_rel(patched, exact) <= BF16 * spread
    zmlx.unpatch(model)
    assert mx.array_equal(model(x), logits).item()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lora_fine_tune_gradients(backend: str) -> None:
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, x = build("llama"), tokens(2, 16)
    model.freeze()
    linear_to_lora_layers(model, 2, {"rank": 4, "scale": 10.0, "dropout": 0.0,
                                     "keys": ["self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj"]})
    # lora_b starts at zero; move it so that every LoRA matrix gets a gradient
    model.update(tree_map(lambda v: 0.01 * mx.random.normal(v.shape, key=mx.random.key(v.size)),
                          model.trainable_parameters()))
    loss, g = grads(model, x)
    assert len(g) == 12 and all(k.endswith(("lora_a", "lora_b")) for k in g)
    zmlx.patch(model, backend=backend)
    patched_loss, patched_g = grads(model, x)
    assert abs(patched_loss.item() - loss.item()) <= F32 * abs(loss.item())
    assert patched_g.keys() == g.keys()
    assert {k: max_rel(patched_g[k], g[k]) for k in g if max_rel(patched_g[k], g[k]) > GRAD} == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantized_model(backend: str) -> None:
    model, x = build("qwen3"), tokens(2, 16)
    nn.quantize(model, group_size=32, bits=4)
    logits = model(x)
    assert len(zmlx.patch(model, backend=backend)) == 13  # the MLPs keep their QuantizedLinear projections
    assert max_rel(model(x), logits) <= F32


def test_compiled_training_steps() -> None:
    """mlx-lm's trainer compiles its step (state as inputs/outputs); on the portable backend (metal-sim runs
    kernels through NumPy, which mx.compile cannot trace) the patched model compiles and trains alike."""
    x, losses = tokens(2, 16), []
    for patched in (False, True):
        model, opt = build("gemma3"), optim.AdamW(1e-2)
        if patched:
            zmlx.patch(model, backend="mlx")
        state = [model.state, opt.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(x: mx.array) -> mx.array:
            loss, g = nn.value_and_grad(model, loss_fn)(model, x)
            opt.update(model, g)
            return loss

        losses.append([step(x).item() for _ in range(3)])
    assert max(abs(a - b) / abs(a) for a, b in zip(*losses)) <= 1e-4
    assert losses[0][-1] < losses[0][0]
