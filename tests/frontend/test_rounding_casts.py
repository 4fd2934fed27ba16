"""An explicit `.astype(d)` to a 16-bit float type is a rounding point every backend honours.

Kernels compute 16-bit values in compute_dtype (float32): `(1 + w)` of a bfloat16 `w` is bfloat16
in name only. `.astype(w.dtype)` of it is nothing in MLX (the eager value is already rounded), so
the kernel has to round there (build.rounding_cast, passes.widen) -- mlx-lm's gemma RMSNorm does
`(1 + weight).astype(x.dtype)`. Implicit 16-bit arithmetic stays computed in compute_dtype (the
documented deviation), and a cast of a value already exact in the type (a bf16 input) is nothing.

Values are compared bit for bit with MLX's eager body where the body rounds at the same points
(one 16-bit op of exact operands, then float32 or the store); derivatives with random cotangents
(a rounding cast passes the cotangent through, as MLX's astype). Also: `mx.split(x,
indices_or_sections=2)` by keyword, so that mlx.nn's `glu` inlines into a row body.
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl import ZMLXTypeError

from conftest import BACKENDS, GRAD_BACKENDS, HAVE_METAL_SIM, assert_close, assert_grads, assert_jvp, \
    kernel_of, rand

needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
HALVES = [mx.bfloat16, mx.float16]


def exact(got: mx.array, want: mx.array) -> None:
    """Same dtype, shape and bits (as float64: every 16-bit and float32 value is exact there)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    g, w = np.array(got.astype(mx.float32)), np.array(want.astype(mx.float32))
    assert np.array_equal(g, w, equal_nan=True), f"max |diff| {np.abs(g - w).max()}"


# ---- elementwise -------------------------------------------------------------------------------

def scaled(x, w):
    return x * (1 + w).astype(w.dtype)


def test_the_report(backend):
    """The reported body: x float32, w bfloat16; the kernel gave 1.10009765625 (1 + w unrounded)."""
    x = mx.array([1.0, 2.0, 3.0])
    w = mx.array([0.1, 0.2, 0.3], mx.bfloat16)
    got = kernel_of(scaled, backend)(x, w)
    assert got.tolist() == [1.1015625, 2.40625, 3.890625] == scaled(x, w).tolist()


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("half", HALVES)
def test_own_type_astype_rounds(backend, half):
    rng = np.random.default_rng(3)
    x, w = rand((4, 33), rng=rng), rand((33,), half, rng=rng, low=-1, high=1)
    k = kernel_of(scaled, backend)
    got = k(x, w)
    exact(got, scaled(x, w))
    unrounded = x * (1 + w.astype(mx.float32))  # what the kernel computed before: differs
    assert not np.array_equal(np.array(got), np.array(unrounded))
    assert_grads(k, scaled, x, w, seed=5)
    if backend == "mlx:ir":
        assert_jvp(k, scaled, x, w)


def rounded_product(x, w):
    return (x * w).astype(x.dtype) * 3


def unrounded_product(x, w):
    return x * w * 3


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("half", HALVES)
def test_astype_of_a_16bit_intermediate(backend, half):
    """x.astype(x.dtype) of a 16-bit product: rounded there, then `* 3` rounds at the store: both
    of MLX's roundings (of exact float32 results), so the values are MLX's bit for bit."""
    rng = np.random.default_rng(4)
    x, w = rand((1000,), half, rng=rng), rand((1000,), half, rng=rng)
    k = kernel_of(rounded_product, backend)
    got = k(x, w)
    exact(got, rounded_product(x, w))
    once = kernel_of(unrounded_product, backend)(x, w)  # computed wide, rounded once at the store
    assert not np.array_equal(np.array(got.astype(mx.float32)), np.array(once.astype(mx.float32)))
    assert_grads(k, rounded_product, x, w, seed=6)


def test_other_spellings(backend):
    """mx.array(c, dtype) is a constant of that type's value; astype of an astype; a chain of
    casts through float32 back to the type rounds once."""
    x = rand((64,), rng=np.random.default_rng(5))
    w = rand((64,), mx.bfloat16, rng=np.random.default_rng(6))

    def const(x):
        return x * mx.array(0.1, mx.bfloat16)

    def twice(x, w):
        return x * (w * 3).astype(mx.bfloat16).astype(w.dtype)

    def through_f32(x, w):
        return x * (w * 3).astype(mx.float32).astype(mx.bfloat16)

    def shifted(x, w):
        return x + (w - 0.3).astype(w.dtype)

    exact(kernel_of(const, backend)(x), const(x))
    for body in (twice, through_f32, shifted):
        exact(kernel_of(body, backend)(x, w), body(x, w))


def test_compute_dtype_16bit(backend):
    """compute_dtype=float16: every op rounds to float16 already; the rounding cast is nothing."""
    rng = np.random.default_rng(7)
    x, w = rand((256,), mx.float16, rng=rng), rand((256,), mx.float16, rng=rng)
    k = kernel_of(rounded_product, backend, compute_dtype=mx.float16)
    exact(k(x, w), rounded_product(x, w))
    plain = kernel_of(unrounded_product, backend, compute_dtype=mx.float16)
    assert k.ir(x, w).replace("rounded_product", "") == plain.ir(x, w).replace("unrounded_product", "")


# ---- the generated source: the rounding exactly where asked for, no needless casts -------------

def test_source_rounds_once():
    x = mx.array([1.0, 2.0, 3.0])
    w = mx.array([0.1, 0.2, 0.3], mx.bfloat16)
    k = zmlx.elementwise(scaled)
    metal = k.source(x, w, backend="metal")
    assert metal.count("bfloat16_t(") == 1 and "float(bfloat16_t(1.0f + float(w))" in metal
    assert k.source(x, w, backend="cuda").count("__nv_bfloat16(") == 1
    # the backward multiplies by the same rounded value
    assert "bfloat16_t(1.0f + float(w))" in k.grad_source(x, w, backend="metal")


def test_no_needless_casts():
    """A cast of a bf16 input to bf16, or of a value already rounded, is nothing."""
    x = mx.array([1.0, 2.0, 3.0])
    w = mx.array([0.1, 0.2, 0.3], mx.bfloat16)

    def plain(x, w):
        return x * w

    def of_input(x, w):
        return x * w.astype(w.dtype)

    def of_selection(x, w):
        return x * mx.maximum(-w, mx.abs(w)).astype(mx.bfloat16).astype(w.dtype)

    def plain_selection(x, w):
        return x * mx.maximum(-w, mx.abs(w))

    ir = lambda f: zmlx.elementwise(f).ir(x, w).split("\n", 1)[1]
    assert ir(of_input) == ir(plain)
    assert ir(of_selection) == ir(plain_selection)
    assert "bfloat16_t(" not in zmlx.elementwise(of_input).source(x, w, backend="metal")
    # a bf16 output of a rounded value: rounded once, at the store
    xb = x.astype(mx.bfloat16)

    def out16(x, w):
        return (x * w).astype(mx.bfloat16)

    def out16_plain(x, w):
        return x * w
    ir16 = lambda f: zmlx.elementwise(f).ir(xb, w).split("\n", 1)[1]
    assert ir16(out16) == ir16(out16_plain)


# ---- row kernels -------------------------------------------------------------------------------

def rms_f32(x, w):
    return x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + 1e-6) * (1 + w).astype(w.dtype)


def gemma_rms(x, w):
    return x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + 1e-6) * (1 + w).astype(x.dtype)


def gemma_rms_unrounded(x, w):
    return x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + 1e-6) * (1 + w)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_row_rounding_f32_rows(backend):
    """float32 rows, a bf16 weight: float32 everywhere but the weight's explicit rounding, so the
    kernel agrees with MLX to float32's accuracy (not to the 2^-9 of an unrounded 1 + w)."""
    rng = np.random.default_rng(8)
    x, w = rand((5, 256), rng=rng), rand((256,), mx.bfloat16, rng=rng, low=-0.5, high=0.5)
    k = kernel_of(rms_f32, backend, kind="map_reduce")
    got = k(x, w)
    assert_close(got, rms_f32(x, w), atol=2e-6, rtol=2e-6)
    unrounded = x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + 1e-6) * (1 + w.astype(mx.float32))
    assert float(mx.abs(got - unrounded).max()) > 1e-4
    assert_grads(k, rms_f32, x, w, seed=9)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_row_gemma_rmsnorm_bf16(backend):
    """mlx-lm's gemma RMSNorm on bf16 rows: the kernel computes in float32 and rounds (1 + w) and
    the output; the oracle does exactly that in float32."""
    rng = np.random.default_rng(10)
    x, w = rand((3, 128), mx.bfloat16, rng=rng), rand((128,), mx.bfloat16, rng=rng, low=-0.5, high=0.5)
    k = kernel_of(gemma_rms, backend, kind="map_reduce")
    got = k(x, w)
    x32 = x.astype(mx.float32)
    eps = mx.array(1e-6, mx.bfloat16).astype(mx.float32)  # the weak 1e-6 beside bf16 is bf16's value
    oracle = (x32 * mx.rsqrt(mx.mean(x32 * x32, axis=-1, keepdims=True) + eps)
              * (1 + w.astype(mx.float32)).astype(mx.bfloat16).astype(mx.float32)).astype(mx.bfloat16)
    assert_close(got, oracle, atol=0, rtol=2 ** -8)  # at most one bf16 step (the sum's order)
    assert_close(got, gemma_rms(x, w))
    assert_grads(k, gemma_rms, x, w, seed=11)


def test_row_source_rounds_once():
    x, w = rand((3, 128), mx.bfloat16), rand((128,), mx.bfloat16)
    for backend, conv in (("metal", "bfloat16_t("), ("cuda", "__nv_bfloat16(")):
        with_cast = zmlx.map_reduce(gemma_rms).source(x, w, backend=backend)
        without = zmlx.map_reduce(gemma_rms_unrounded).source(x, w, backend=backend)
        assert with_cast.count(conv) == without.count(conv) + 1, backend


# ---- mx.split by keyword: mlx.nn's glu ---------------------------------------------------------

def glu(x):
    return nn.glu(x)


def split_kw(x):
    a, b, c = mx.split(x, indices_or_sections=[4, 10], axis=-1)
    return mx.concatenate([c, a * b.sum(axis=-1, keepdims=True)], axis=-1)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_glu(backend, dtype):
    x = rand((4, 2, 34), dtype, rng=np.random.default_rng(12))
    k = kernel_of(glu, backend, kind="map_reduce")
    assert_close(k(x), glu(x))
    assert_grads(k, glu, x, seed=13)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_split_by_keyword(backend):
    x = rand((3, 16), rng=np.random.default_rng(14))
    k = kernel_of(split_kw, backend, kind="map_reduce")
    assert_close(k(x), split_kw(x))
    assert_grads(k, split_kw, x, seed=15)


def test_split_keyword_twice():
    def twice(x):
        return mx.split(x, 2, indices_or_sections=2)[0]
    with pytest.raises(ZMLXTypeError, match="multiple values for argument 'indices_or_sections'"):
        zmlx.map_reduce(twice)(mx.ones((2, 4)))
