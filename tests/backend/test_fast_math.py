"""fast_math: the C backends' fast exp / erf / tanh / sigmoid (backend/c_ops.py FAST_SPELLINGS).

Same function, same answer: a fast kernel's values and gradients equal the undecorated MLX body's
(and the float64 IR interpreter's) within the tolerances the suite uses for 16-bit outputs, on the
portable backend (MLX's own ops: fast_math changes nothing there) and on metal-sim (the fast MSL
run on the CPU). The default is fast when every float output is 16-bit, precise when one is float32;
fast_math=True / False force it. The Metal spelling of each fast function is pinned in
tests/golden (fast_math_*.metal); the CUDA spellings type-check against tests/cuda_stub.
"""
from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.errors import ZMLXTypeError
from zmlx_dsl.testing import rowwise

from conftest import (GRAD_BACKENDS, HAVE_METAL_SIM, assert_cuda_type_checks, assert_grads, assert_jvp,
                      assert_same, interpret_kernel, kernel_of, rand, tol_for)

FAST = ("zmlx_fast_exp", "zmlx_fast_erf", "zmlx_fast_tanh", "zmlx_fast_sigmoid")


# ---- the bodies (each fast function, and the activations and rows built on them) ---------------

def exp(x):
    return mx.exp(x)


def erf(x):
    return mx.erf(x)


def tanh(x):
    return mx.tanh(x)


def sigmoid(x):
    return mx.sigmoid(x)


def silu(x):
    return x * mx.sigmoid(x)


def gelu(x):
    return 0.5 * x * (1.0 + mx.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + mx.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def logsumexp(x):
    return mx.logsumexp(x)


ELEMENTWISE = [exp, erf, tanh, sigmoid, silu, gelu, gelu_tanh]
ROWS = [(softmax, "map_reduce"), (logsumexp, "reduce")]
HALF = [mx.float16, mx.bfloat16]


def _x(shape, dtype, seed=0, low=-4.0, high=4.0):
    return rand(shape, dtype, rng=np.random.default_rng(seed), low=low, high=high)


def _special(dtype):
    """NaN, infinities, signed zeros, tiny and huge values, the fast paths' clamp points."""
    v = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-4, -1e-4, 0.5, -0.5, 3.9, -3.9, 4.5,
         -4.5, 7.9, -7.9, 9.0, -9.0, 11.0, -11.0, 30.0, -30.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4]
    return mx.array(np.array(v, np.float32)).astype(dtype)


# ---- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.__name__)
def test_elementwise_values(fn, dtype, backend):
    k = kernel_of(fn, backend)
    x = _x((4, 300), dtype)
    assert_same(k, fn, x)
    if backend != "mlx":  # the float64 oracle too, within the output type's rounding
        ref = interpret_kernel(k, x)[0]
        atol, rtol = tol_for(dtype)
        got = np.array(k(x).astype(mx.float32))
        assert np.allclose(got, ref, atol=atol, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn", [exp, erf, tanh, sigmoid, silu, gelu], ids=lambda f: f.__name__)
def test_special_values(fn, dtype, backend):
    """NaN stays NaN, the infinities and the tails saturate as MLX's (e^100 is inf in float16)."""
    assert_same(kernel_of(fn, backend), fn, _special(dtype))


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn,kind", ROWS, ids=[f.__name__ for f, _ in ROWS])
@pytest.mark.parametrize("D", [33, 1000, 4096])
def test_row_values(fn, kind, D, dtype, backend):
    k = kernel_of(fn, backend, kind)
    x = _x((3, D), dtype, low=-8.0, high=8.0)
    assert_same(k, rowwise(fn, [x]), x)


@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.__name__)
def test_opted_in_float32(fn, backend):
    """fast_math=True on float32: within 5e-5 of MLX's precise float32 (erf's fit: 1.9e-5 relative)."""
    assert_same(kernel_of(fn, backend, fast_math=True), fn, _x((4, 300), mx.float32), atol=5e-5, rtol=5e-5)


def test_opted_in_float32_softmax(backend):
    x = _x((4, 1000), mx.float32, low=-20.0, high=20.0)
    k = kernel_of(softmax, backend, "map_reduce", fast_math=True)
    assert_same(k, rowwise(softmax, [x]), x, atol=1e-6, rtol=5e-5)


# ---- gradients -------------------------------------------------------------------------------

@pytest.fixture(params=GRAD_BACKENDS)
def grad_backend(request) -> str:
    return request.param


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.__name__)
def test_elementwise_gradients(fn, dtype, grad_backend):
    x = _x((4, 300), dtype, low=-3.0, high=3.0)
    assert_grads(kernel_of(fn, grad_backend), fn, x)


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn,kind", ROWS, ids=[f.__name__ for f, _ in ROWS])
def test_row_gradients(fn, kind, dtype, grad_backend):
    x = _x((3, 1000), dtype)
    assert_grads(kernel_of(fn, grad_backend, kind), rowwise(fn, [x]), x)


@pytest.mark.parametrize("dtype", HALF, ids=["f16", "bf16"])
@pytest.mark.parametrize("fn", [gelu, gelu_tanh, silu], ids=lambda f: f.__name__)
def test_forward_mode(fn, dtype, grad_backend):
    """The generated JVP kernel (fast too: its outputs are 16-bit) against MLX's jvp of the body."""
    assert_jvp(kernel_of(fn, grad_backend), fn, _x((4, 300), dtype, low=-3.0, high=3.0))


@pytest.mark.parametrize("fn", [gelu, silu, gelu_tanh], ids=lambda f: f.__name__)
def test_opted_in_float32_gradients(fn, grad_backend):
    x = _x((4, 300), mx.float32, low=-3.0, high=3.0)
    assert_grads(kernel_of(fn, grad_backend, fast_math=True), fn, x, atol=5e-5, rtol=5e-5)


# ---- which spelling: the default per output dtype, the overrides, the cache -------------------

def _fast_in(src: str) -> set[str]:
    return {f for f in FAST if f + "(" in src}


@pytest.mark.parametrize("target", ["metal", "cuda"])
def test_default_per_output_dtype(target):
    k = zmlx.elementwise(gelu_tanh)
    assert _fast_in(k.source(_x((8,), mx.bfloat16), backend=target)) == {"zmlx_fast_tanh"}
    assert _fast_in(k.source(_x((8,), mx.float16), backend=target)) == {"zmlx_fast_tanh"}
    assert not _fast_in(k.source(_x((8,), mx.float32), backend=target))
    # opting in and out
    assert _fast_in(zmlx.elementwise(gelu_tanh, fast_math=True).source(_x((8,), mx.float32), backend=target))
    assert not _fast_in(zmlx.elementwise(gelu_tanh, fast_math=False).source(_x((8,), mx.bfloat16), backend=target))


def test_default_any_float32_output_is_precise():
    """One float32 output among 16-bit ones keeps the whole kernel precise; 16-bit inputs with a
    float32 output (type promotion) too."""
    two = zmlx.elementwise(lambda x, y: (mx.exp(x), mx.exp(y)))
    assert not _fast_in(two.source(_x((8,), mx.float16), _x((8,), mx.float32), backend="metal"))
    assert _fast_in(two.source(_x((8,), mx.float16), _x((8,), mx.bfloat16), backend="metal")) == {"zmlx_fast_exp"}
    promoted = zmlx.elementwise(lambda x, y: mx.exp(x) * y)
    assert not _fast_in(promoted.source(_x((8,), mx.float16), _x((8,), mx.float32), backend="metal"))
    boolean = zmlx.elementwise(lambda x: mx.exp(x) > 2.0)  # no float output: exact comparisons
    assert not _fast_in(boolean.source(_x((8,), mx.float16), backend="metal"))


def test_rows_and_backward_follow_their_own_outputs():
    k = zmlx.map_reduce(softmax)
    assert _fast_in(k.source(_x((2, 1000), mx.bfloat16), backend="metal")) == {"zmlx_fast_exp"}
    assert not _fast_in(k.source(_x((2, 1000), mx.float32), backend="metal"))
    g = zmlx.elementwise(gelu)  # the backward (d erf = 2/sqrt(pi) exp(-x^2)) outputs bfloat16 too
    assert "zmlx_fast_exp(" in g.grad_source(_x((8,), mx.bfloat16), backend="metal")
    assert not _fast_in(g.grad_source(_x((8,), mx.float32), backend="metal"))
    assert "zmlx_fast_exp(" in zmlx.elementwise(gelu, fast_math=True).grad_source(_x((8,), mx.float32),
                                                                                 backend="metal")


def test_string_forms_take_fast_math():
    x = _x((8,), mx.float32)
    assert _fast_in(zmlx.api.elementwise("exp(x)", fast_math=True).source(x, backend="metal")) == {"zmlx_fast_exp"}
    assert _fast_in(zmlx.elementwise("tanh(x)", fast_math=True).source(x, backend="metal")) == {"zmlx_fast_tanh"}
    assert not _fast_in(zmlx.api.elementwise("exp(x)", fast_math=False).source(x.astype(mx.float16),
                                                                               backend="metal"))
    rows = zmlx.api.map_reduce(pass1={"init": "-INFINITY", "update": "max(acc1, x)", "reduce": "max(a, b)"},
                               pass2={"init": "0.0f", "update": "acc2 + exp(x - s1)", "reduce": "a + b"},
                               write="exp(x - s1) / s2", name="sm", fast_math=True)
    assert "zmlx_fast_exp(" in rows.source(_x((2, 64), mx.float32), backend="metal")


def test_fast_math_is_checked():
    with pytest.raises(ZMLXTypeError, match="fast_math must be True, False or None"):
        zmlx.elementwise(exp, fast_math="yes")


def test_cache_key_includes_fast_math():
    """Kernel texts (so MLX's kernel names, its cache key) differ with fast_math; one kernel's
    compiled entries stay apart per dtype."""
    x = _x((8,), mx.float32)
    fast = zmlx.elementwise(exp, fast_math=True).source(x, backend="metal")
    slow = zmlx.elementwise(exp, fast_math=False).source(x, backend="metal")
    name = lambda s: s.split("[[kernel]] void ")[1].split("(")[0]
    assert name(fast) != name(slow)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
def test_cache_runs_each_setting():
    """The same body, fast and precise, in one process: each runs its own kernel."""
    x = mx.array(np.linspace(-3, 3, 64, dtype=np.float32))
    fast = zmlx.elementwise(erf, backend="metal-sim", fast_math=True)(x)
    slow = zmlx.elementwise(erf, backend="metal-sim", fast_math=False)(x)
    ref = mx.erf(x)
    assert mx.abs(slow - ref).max().item() < 5e-7  # zmlx_erf: |err| < 1e-7, plus rounding
    assert 0 < mx.abs(fast - ref).max().item() < 5e-5  # the fit, visibly different from erf


# ---- CUDA: the fast spellings type-check -----------------------------------------------------

CUDA_CASES = {
    "gelu_bf16": lambda: zmlx.elementwise(gelu).source(_x((4, 4096), mx.bfloat16), backend="cuda"),
    "transcendentals_f16": lambda: zmlx.elementwise(
        lambda x: mx.exp(x) + mx.erf(x) + mx.tanh(x) * mx.sigmoid(x)).source(_x((4, 256), mx.float16),
                                                                             backend="cuda"),
    "fast_f32": lambda: zmlx.elementwise(silu, fast_math=True).source(_x((4, 256), mx.float32), backend="cuda"),
    "softmax_bf16": lambda: zmlx.map_reduce(softmax).source(_x((4, 4096), mx.bfloat16), backend="cuda"),
    "logsumexp_f16": lambda: zmlx.reduce(logsumexp).source(_x((4, 33), mx.float16), backend="cuda"),
    "gelu_tanh_backward_bf16": lambda: zmlx.elementwise(gelu_tanh).grad_source(_x((4, 256), mx.bfloat16),
                                                                               backend="cuda"),
    "compute_f16": lambda: zmlx.elementwise(gelu_tanh, compute_dtype=mx.float16).source(
        _x((4, 256), mx.float16), backend="cuda"),
}


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="the type-check uses metal-sim's C++ compiler")
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_cuda_fast_spellings_type_check(case, tmp_path):
    src = CUDA_CASES[case]()
    assert _fast_in(src), src
    assert_cuda_type_checks(case, src, tmp_path)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
def test_compute_dtype_float16_on_metal_sim():
    """compute_dtype=float16: the float helpers take and return float, the stores round once."""
    x = _x((4, 256), mx.float16, low=-3.0, high=3.0)
    k = zmlx.elementwise(gelu_tanh, backend="metal-sim", compute_dtype=mx.float16)
    assert_same(k, gelu_tanh, x, atol=4e-3, rtol=4e-3)


@pytest.mark.parametrize("fn,kind", ROWS, ids=[f.__name__ for f, _ in ROWS])
def test_long_rows_online_normaliser(fn, kind, backend):
    """Rows past the register budget take the online max-and-sum (its exp is the fast one too):
    ordinary rows and rows holding -inf, +inf and NaN."""
    x = np.array(_x((5, 40000), mx.float32, low=-30.0, high=30.0))
    x[1, :] = -np.inf
    x[2, 7] = np.inf
    x[3, 123] = np.nan
    x[4, ::2] = -np.inf
    x = mx.array(x).astype(mx.bfloat16)
    assert_same(kernel_of(fn, backend, kind), rowwise(fn, [x]), x)


def divide_by_row(x, y):
    return x / mx.sum(y)


def test_per_row_divisor_becomes_a_reciprocal():
    """fast_math rows divide by a per-row value once: `x / s` is `x * (1 / s)` in the source (the
    per-element division is gone); precise rows keep the division."""
    x = _x((2, 64), mx.float16)
    fast = kernel_of(divide_by_row, "metal-sim" if HAVE_METAL_SIM else "mlx", "map_reduce", fast_math=True)
    precise = kernel_of(divide_by_row, "metal-sim" if HAVE_METAL_SIM else "mlx", "map_reduce", fast_math=False)
    src_fast, src_precise = fast.source(x, x, backend="metal"), precise.source(x, x, backend="metal")
    assert "1.0f / sum" in src_fast and " / sum" not in src_fast.replace("1.0f / sum", ""), src_fast
    assert "1.0f / sum" not in src_precise and " / sum" in src_precise, src_precise


@pytest.mark.parametrize("divisor", ["zero", "inf", "nan", "negative zero", "tiny"])
def test_per_row_reciprocal_special_divisors(divisor, backend):
    """x * (1 / s) equals x / s for zero, infinite and NaN per-row divisors (and for zero and
    infinite x): inf, NaN and signed zeros where MLX's division has them."""
    x = np.array(_x((3, 64), mx.float32))
    x[:, :4] = [0.0, -0.0, np.inf, -np.inf]
    s = {"zero": 0.0, "inf": np.inf, "nan": np.nan, "negative zero": -0.0, "tiny": 1e-30}[divisor]
    y = np.zeros((3, 64), np.float32)
    y[:, 0] = s
    x, y = mx.array(x).astype(mx.float16), mx.array(y).astype(mx.float16)
    k = kernel_of(divide_by_row, backend, "map_reduce", fast_math=True)
    assert_same(k, rowwise(divide_by_row, [x, y]), x, y)
