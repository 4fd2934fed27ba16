"""The generated CUDA, type-checked without a GPU: each kernel's full source (as MLX's CUDA backend
compiles it) is compiled with `-fsyntax-only` against tests/cuda_stub/mlx_cuda_stub.h, which stands
in for CUDA and MLX's device headers. It catches what golden files cannot: a name that shadows a
function, a missing helper, a type error in a path no golden pins. tests/gpu runs them for real."""
from __future__ import annotations


import mlx.core as mx
import pytest

import zmlx_dsl as zmlx
from conftest import HAVE_METAL_SIM, assert_cuda_type_checks

pytestmark = pytest.mark.skipif(not HAVE_METAL_SIM, reason="needs clang++-19 or the `ziglang` package")


def silu(x):
    return x * mx.sigmoid(x)


def gelu_mix(x, y, a):
    return 0.5 * x * (1 + mx.erf(x * 0.7071067811865476)) + mx.log10(mx.abs(y) + 1.0) * a, y * x


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def layernorm(x, w, b, eps):
    mu = mx.mean(x)
    d = x - mu
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w + b


def counts(x):
    return (x > 0).sum() + x.max() - x.min()


KERNELS = [
    ("silu f32", lambda: zmlx.elementwise(silu).source(mx.zeros((4, 1000)), backend="cuda")),
    ("silu bf16 backward", lambda: zmlx.elementwise(silu).grad_source(mx.zeros((7,), mx.bfloat16), backend="cuda")),
    ("broadcast two outputs f16", lambda: zmlx.elementwise(gelu_mix).source(
        mx.zeros((3, 8), mx.float16), mx.zeros((8,), mx.float16), 0.5, backend="cuda")),
    ("softmax short rows", lambda: zmlx.map_reduce(softmax).source(mx.zeros((16, 33)), backend="cuda")),
    ("softmax rows in registers", lambda: zmlx.map_reduce(softmax).source(mx.zeros((2, 32768)), backend="cuda")),
    ("softmax bf16 re-read rows", lambda: zmlx.map_reduce(softmax).source(mx.zeros((2, 32768), mx.bfloat16), backend="cuda")),
    ("softmax backward", lambda: zmlx.map_reduce(softmax).grad_source(mx.zeros((4, 1000)), backend="cuda")),
    ("layernorm bf16", lambda: zmlx.map_reduce(layernorm).source(
        mx.zeros((4, 4096), mx.bfloat16), mx.zeros((4096,), mx.bfloat16), mx.zeros((4096,), mx.bfloat16), 1e-5,
        backend="cuda")),
    ("counts and range", lambda: zmlx.reduce(counts).source(mx.zeros((4, 300)), backend="cuda")),
    ("layernorm bf16 backward, weight and bias summed over rows", lambda: zmlx.map_reduce(layernorm).grad_source(
        mx.zeros((64, 4096), mx.bfloat16), mx.zeros((4096,), mx.bfloat16), mx.zeros((4096,), mx.bfloat16), 1e-5,
        backend="cuda")),
]


@pytest.mark.parametrize("name,make", KERNELS, ids=[k[0] for k in KERNELS])
def test_cuda_source_type_checks(name, make, tmp_path):
    assert_cuda_type_checks(name, make(), tmp_path)


def test_grid_stride_sources_type_check(monkeypatch, tmp_path):
    """Rows and elementwise launches past the grid limit (the limit lowered so small inputs take it)."""
    from zmlx_dsl.backend import plan as plans
    monkeypatch.setattr(plans, "MAX_GRID_THREADS", 64)
    for name, src in [("softmax rows", zmlx.map_reduce(softmax).source(mx.zeros((16, 33)), backend="cuda")),
                      ("layernorm rows", zmlx.map_reduce(layernorm).source(
                          mx.zeros((8, 1000)), mx.zeros((1000,)), mx.zeros((1000,)), 1e-5, backend="cuda")),
                      ("silu", zmlx.elementwise(silu).source(mx.zeros((4, 1000)), backend="cuda"))]:
        assert "gridDim.x" in src, name
        assert_cuda_type_checks(name, src, tmp_path)
