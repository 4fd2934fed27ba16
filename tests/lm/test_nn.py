"""zmlx_dsl.nn against mlx.nn / mx.fast (the oracle): values, dtypes and gradients of each layer and function."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest
from conftest import BACKENDS
from lmtools import max_rel

from zmlx_dsl import nn as znn


def normal(*shape: int, seed: int = 0, dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.random.normal(shape, key=mx.random.key(seed)).astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_activations(backend: str) -> None:
    x, y = normal(4, 33), normal(4, 33, seed=1)
    for ours, theirs in ((znn.silu, nn.silu), (znn.gelu, nn.gelu), (znn.gelu_approx, nn.gelu_approx)):
        assert max_rel(ours(x, backend=backend), theirs(x)) <= 1e-5
    assert max_rel(znn.swiglu(x, y, backend=backend), nn.silu(x) * y) <= 1e-5
    assert max_rel(znn.geglu(x, y, backend=backend), nn.gelu(x) * y) <= 1e-5
    assert max_rel(znn.geglu(x, y, approx=True, backend=backend), nn.gelu_approx(x) * y) <= 1e-5
    assert max_rel(znn.GELU("tanh", backend=backend)(x), nn.GELU("precise")(x)) <= 1e-5
    with pytest.raises(ValueError) as e:
        znn.GELU("fast")
    assert str(e.value) == ("GELU: approx must be 'none', 'precise' or 'tanh' here, got 'fast' (mlx.nn's 'fast' is "
                            "x * sigmoid(1.702 x), not served)")
    g = mx.grad(lambda a: (znn.swiglu(a, y, backend=backend) * y).sum())(x)
    assert max_rel(g, mx.grad(lambda a: (nn.silu(a) * y * y).sum())(x)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_and_log_softmax(backend: str) -> None:
    x = normal(3, 5, 40)
    for axis in (-1, 1):
        assert max_rel(znn.softmax(x, axis, backend=backend), mx.softmax(x, axis=axis)) <= 1e-5
        assert max_rel(znn.log_softmax(x, axis, backend=backend), nn.log_softmax(x, axis=axis)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy(backend: str) -> None:
    logits, labels = normal(8, 50), mx.random.randint(0, 50, (8,), key=mx.random.key(2))
    weights, probs = mx.random.uniform(shape=(8,), key=mx.random.key(3)), mx.softmax(normal(8, 50, seed=4), axis=-1)
    ce = nn.losses.cross_entropy
    for kw in ({}, {"label_smoothing": 0.1}, {"weights": weights, "reduction": "mean"}, {"reduction": "sum"}):
        assert max_rel(znn.cross_entropy(logits, labels, backend=backend, **kw), ce(logits, labels, **kw)) <= 1e-5
    unnormalised = mx.random.uniform(shape=(8, 50), key=mx.random.key(5))  # rows not summing to one
    for targets in (probs, unnormalised):
        for kw in ({}, {"label_smoothing": 0.2}):
            assert max_rel(znn.cross_entropy(logits, targets, backend=backend, **kw), ce(logits, targets, **kw)) <= 1e-5
            g = mx.grad(lambda z: znn.cross_entropy(z, targets, reduction="sum", backend=backend, **kw))(logits)
            assert max_rel(g, mx.grad(lambda z: ce(z, targets, reduction="sum", **kw))(logits)) <= 1e-5
    ignored = mx.where(mx.arange(8) % 3 == 0, -100, labels)
    keep = ignored != -100
    expected = (ce(logits, labels) * keep).sum() / keep.sum()
    assert max_rel(znn.cross_entropy(logits, ignored, reduction="mean", ignore_index=-100, backend=backend),
                   expected) <= 1e-5
    g = mx.grad(lambda z: znn.cross_entropy(z, labels, reduction="mean", backend=backend))(logits)
    assert max_rel(g, mx.grad(lambda z: ce(z, labels, reduction="mean"))(logits)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_norms(backend: str, dtype: mx.Dtype) -> None:
    x, w, b = normal(6, 96, dtype=dtype), normal(96, seed=1, dtype=dtype), normal(96, seed=2, dtype=dtype)
    tol = 1e-5 if dtype == mx.float32 else 1e-2
    out = znn.rms_norm(x, w, 1e-5, backend=backend)
    assert out.dtype == dtype and max_rel(out, mx.fast.rms_norm(x, w, 1e-5)) <= tol
    assert max_rel(znn.rms_norm(x, w, 1e-5, offset=True, backend=backend), mx.fast.rms_norm(x, 1.0 + w, 1e-5)) <= tol
    for weight, bias in ((w, b), (w, None), (None, b), (None, None)):
        assert max_rel(znn.layer_norm(x, weight, bias, 1e-5, backend=backend),
                       mx.fast.layer_norm(x, weight, bias, 1e-5)) <= tol
    layer, ours = nn.LayerNorm(96, affine=True, bias=False), znn.LayerNorm(96, bias=False, backend=backend)
    assert set(ours.parameters()) == set(layer.parameters()) == {"weight"}
    g = mx.grad(lambda a, c: (znn.rms_norm(a, c, 1e-5, backend=backend) * b).sum(), argnums=(0, 1))(x, w)
    h = mx.grad(lambda a, c: (mx.fast.rms_norm(a, c, 1e-5) * b).sum(), argnums=(0, 1))(x, w)
    assert max(max_rel(p, q) for p, q in zip(g, h)) <= (1e-4 if dtype == mx.float32 else 3e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rope(backend: str) -> None:
    x = normal(2, 4, 7, 32)
    for traditional in (False, True):
        for dims, scale, offset in ((32, 1.0, 0), (16, 0.5, 5)):
            ours = znn.RoPE(dims, traditional, 10000.0, scale, backend=backend)(x, offset=offset)
            theirs = nn.RoPE(dims, traditional, 10000.0, scale)(x, offset=offset)
            assert max_rel(ours, theirs) <= 1e-5
    offsets = mx.array([3, 11])  # a batched cache's per-sequence offsets
    assert max_rel(znn.RoPE(32, backend=backend)(x, offset=offsets),
                   mx.fast.rope(x, 32, traditional=False, base=10000.0, scale=1.0, offset=offsets)) <= 1e-5
    freqs = 10000.0 ** (mx.arange(0, 24, 2) / 24) * (1 + mx.arange(12) / 12)
    rope = znn.FreqsRoPE(24, freqs, mscale=1.3, backend=backend)
    for inverse, scale in ((False, 1.0), (True, 0.25)):
        m = 1 / 1.3 if inverse else 1.3
        theirs = mx.fast.rope(x.at[..., :24].multiply(m), 24, traditional=False, base=None, scale=scale, offset=4,
                              freqs=-freqs if inverse else freqs)
        assert max_rel(rope(x, 4, scale, inverse), theirs) <= 1e-5
    g = mx.grad(lambda a: (znn.RoPE(32, backend=backend)(a, offset=2) * x).sum())(x)
    assert max_rel(g, mx.grad(lambda a: (nn.RoPE(32)(a, offset=2) * x).sum())(x)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlps(backend: str) -> None:
    mx.random.seed(5)
    x = normal(3, 32)
    gated = znn.GatedMLP(32, 48, "gelu_approx", backend=backend)
    expected = gated.down_proj(nn.gelu_approx(gated.gate_proj(x)) * gated.up_proj(x))
    assert max_rel(gated(x), expected) <= 1e-5
    fused = znn.FusedGatedMLP(32, 48, backend=backend)
    gate, up = mx.split(fused.gate_up_proj(x), 2, axis=-1)
    assert max_rel(fused(x), fused.down_proj(nn.silu(gate) * up)) <= 1e-5
    dense = znn.DenseMLP(32, 48, backend=backend)
    assert max_rel(dense(x), dense.down_proj(nn.gelu(dense.up_proj(x)))) <= 1e-5
    assert sorted(k for k in gated.parameters()) == ["down_proj", "gate_proj", "up_proj"]
    with pytest.raises(ValueError) as e:
        znn.GatedMLP(32, 48, "relu")
    assert str(e.value) == "GatedMLP: activation must be one of silu, gelu, gelu_approx, got 'relu'"
