"""Tiny randomly initialised mlx-lm models (built from their ModelArgs; nothing is downloaded) and the
helpers the fidelity tests share. The unpatched mlx-lm model is always the oracle."""
from __future__ import annotations

import importlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map_with_path

VOCAB = 97
_BASE = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4, rms_norm_eps=1e-5,
             vocab_size=VOCAB, num_key_value_heads=2)

FAMILIES: dict[str, tuple[str, dict]] = {
    # llama with llama3 rope scaling (rope_utils.Llama3RoPE)
    "llama": ("llama", dict(model_type="llama", max_position_embeddings=256, tie_word_embeddings=False,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    # mistral's architecture is llama's: plain nn.RoPE, traditional, grouped-query attention
    "mistral": ("llama", dict(model_type="mistral", rope_theta=1e6, rope_traditional=True, tie_word_embeddings=False)),
    # qwen3: q_norm/k_norm over each head
    "qwen3": ("qwen3", dict(model_type="qwen3", head_dim=16, max_position_embeddings=256, tie_word_embeddings=False,
                            rope_theta=1e6)),
    # gemma2: the 1 + weight RMSNorm, GeGLU (tanh gelu) MLP, logit softcapping
    "gemma2": ("gemma2", dict(model_type="gemma2", head_dim=16, query_pre_attn_scalar=16.0)),
    # gemma3: 1 + weight q/k norms, sliding-window layers (a RotatingKVCache)
    "gemma3": ("gemma3_text", dict(model_type="gemma3_text", head_dim=16, sliding_window=8,
                                   sliding_window_pattern=2, query_pre_attn_scalar=16)),
    # phi3: fused gate_up_proj MLP, longrope (rope_utils.SuScaledRoPE), partial rotary dims
    "phi3": ("phi3", dict(model_type="phi3", partial_rotary_factor=0.5, max_position_embeddings=512,
                          original_max_position_embeddings=64,
                          rope_scaling={"type": "longrope", "long_factor": [1.0 + 0.25 * i for i in range(4)],
                                        "short_factor": [1.0] * 4})),
    # mixtral: mixture of experts (switch_layers.SwiGLU is the experts' activation)
    "mixtral": ("mixtral", dict(model_type="mixtral", num_local_experts=4, num_experts_per_tok=2)),
}


def build(family: str, seed: int = 0, dtype: mx.Dtype = mx.float32) -> nn.Module:
    """A tiny model of `family`, its norm weights moved off their init (so `1 + weight` vs `weight` shows)."""
    module, overrides = FAMILIES[family]
    lm = importlib.import_module(f"mlx_lm.models.{module}")
    mx.random.seed(seed)
    model = lm.Model(lm.ModelArgs(**{**_BASE, **overrides}))
    model.update(tree_map_with_path(lambda p, v: v + 0.2 * mx.random.normal(v.shape) if "norm" in p else v,
                                    model.parameters()))
    if family == "gemma2":  # tied, sqrt(d)-scaled embeddings: at random init the input token would dominate and
        model.model.embed_tokens.weight = 0.1 * model.model.embed_tokens.weight  # greedy decoding repeat it
    if dtype != mx.float32:
        model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model


def tokens(batch: int, length: int, seed: int = 1) -> mx.array:
    """Random token ids."""
    return mx.random.randint(0, VOCAB, (batch, length), key=mx.random.key(seed))


def max_rel(actual: mx.array, expected: mx.array) -> float:
    """max |actual - expected| over max |expected| (the error relative to the values' scale)."""
    a, e = np.array(actual.astype(mx.float32)), np.array(expected.astype(mx.float32))
    return float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-30))


def loss_fn(model: nn.Module, x: mx.array) -> mx.array:
    """Next-token cross entropy (a full fine-tune step's loss)."""
    return nn.losses.cross_entropy(model(x[:, :-1]), x[:, 1:], reduction="mean")


def grads(model: nn.Module, x: mx.array) -> tuple[mx.array, dict[str, mx.array]]:
    """The loss and every trainable parameter's gradient, by dotted name."""
    loss, g = nn.value_and_grad(model, loss_fn)(model, x)
    mx.eval(loss, g)
    return loss, dict(tree_flatten(g))


def greedy(model: nn.Module, prompt: mx.array, steps: int = 32) -> tuple[list[int], mx.array]:
    """Greedy decoding through mlx-lm's KV cache: the tokens, and the last step's logits."""
    from mlx_lm.models.cache import make_prompt_cache
    cache = make_prompt_cache(model)
    logits = model(prompt[None], cache=cache)[:, -1]
    out = []
    for _ in range(steps):
        y = mx.argmax(logits, axis=-1)
        out.append(y.item())
        logits = model(y[:, None], cache=cache)[:, -1]
    return out, logits
