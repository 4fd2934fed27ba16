"""A weight's gradient summed over the rows inside the backward kernel (partial sums per group, then
added up), checked against MLX's VJP of the body: values, shapes and dtypes for any row count and
leading shape, and the derivatives of that gradient (second order, forward mode, vmap)."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from conftest import HAVE_METAL_SIM, assert_close, kernel_of, rand
from zmlx_dsl.api import pointwise
from zmlx_dsl.backend import plan as plans

# the portable backend with the generated derivative programs (mlx:ir), the kernels' MSL, and on
# a GPU machine the CUDA kernels (tests/gpu runs this file there too)
BACKENDS = ["mlx:ir"] + (["metal-sim"] if HAVE_METAL_SIM else []) + (["cuda"] if mx.cuda.is_available() else [])


def rmsnorm(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


def layernorm(x, w, b, eps):
    d = x - mx.mean(x)
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w + b


def rmsnorm_rows(x, w, eps):  # the bodies written for whole arrays: the references
    return x * mx.rsqrt(mx.mean(x * x, -1, keepdims=True) + eps) * w


def layernorm_rows(x, w, b, eps):
    d = x - mx.mean(x, -1, keepdims=True)
    return d * mx.rsqrt(mx.mean(d * d, -1, keepdims=True) + eps) * w + b


def _args(lead, D, dtype, seed=0, weight_shape=None):
    rng = np.random.default_rng(seed)
    x = rand(lead + (D,), dtype, rng=rng)
    w = rand(weight_shape or (D,), dtype, rng=rng)
    b = rand(weight_shape or (D,), dtype, rng=rng)
    c = rand(lead + (D,), dtype, rng=rng)
    return x, w, b, c


def _error(a: mx.array, truth: mx.array) -> float:
    return mx.max(mx.abs(a.astype(mx.float32) - truth)).item()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lead,D", [((1,), 256), ((2,), 256), ((5,), 256), ((37,), 256), ((3, 4), 256),
                                    ((2100,), 256), ((9,), 4096), ((600,), 4096)], ids=str)
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
def test_weight_gradients_are_the_rows_sum(backend, lead, D, dtype):
    x, w, b, c = _args(lead, D, dtype)
    k = kernel_of(rmsnorm, backend, "map_reduce")
    n = kernel_of(layernorm, backend, "map_reduce")
    rows = int(np.prod(lead))
    cases = [(lambda x, w: k(x, w, 1e-5), lambda x, w: rmsnorm_rows(x, w, 1e-5), [x, w]),
             (lambda x, w, b: n(x, w, b, 1e-5), lambda x, w, b: layernorm_rows(x, w, b, 1e-5), [x, w, b])]
    for ours, ref, primals in cases:
        got = mx.vjp(ours, primals, [c])[1]
        if dtype == mx.float32:
            want = mx.vjp(ref, primals, [c])[1]
            for i, (g, h, p) in enumerate(zip(got, want, primals)):
                assert g.shape == p.shape and g.dtype == p.dtype, (i, g.shape, g.dtype)
                assert_close(g, h, atol=2e-4 * rows ** 0.5, rtol=1e-4, what=f"gradient {i}: ")
            continue
        # 16-bit: at least as close to the float32 gradient as MLX's VJP of the body in bfloat16
        truth = mx.vjp(ref, [p.astype(mx.float32) for p in primals], [c.astype(mx.float32)])[1]
        theirs = mx.vjp(ref, primals, [c])[1]
        for i, (g, h, t, p) in enumerate(zip(got, theirs, truth, primals)):
            assert g.shape == p.shape and g.dtype == p.dtype, (i, g.shape, g.dtype)
            ulp = 2.0 ** -7 * mx.max(mx.abs(t)).item()
            assert _error(g, t) <= 1.5 * _error(h, t) + ulp, (i, _error(g, t), _error(h, t))


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_of_any_broadcast_shape(backend):
    """(1, 1, D) weights over (2, 3, D) rows: summed to their own shape."""
    x, w, b, c = _args((2, 3), 64, mx.float32, weight_shape=(1, 1, 64))
    n = kernel_of(layernorm, backend, "map_reduce")
    got = mx.vjp(lambda x, w, b: n(x, w, b, 1e-5), [x, w, b], [c])[1]
    want = mx.vjp(lambda x, w, b: layernorm_rows(x, w, b, 1e-5), [x, w, b], [c])[1]
    for g, h in zip(got, want):
        assert g.shape == h.shape
        assert_close(g, h, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="needs clang++-19 or the `ziglang` package")
@pytest.mark.parametrize("D", [256, 4096])
def test_the_backward_kernel_sums_the_weight(D):
    """The launch sums the weight's gradient in the kernel (short rows too, several per group):
    ROW_SUM_GROUPS groups at most, each writing a row of partial sums per row slot, never rows x D."""
    k = zmlx.map_reduce(rmsnorm, backend="metal-sim")
    x, w, _, _ = _args((4096,), D, mx.float32)
    text = k.grad_source(x, w, 1e-5, backend="metal-sim")
    assert "out1_sum[k][j] += " in text and "// this group's partial sums over its rows" in text
    compiled = k.compiled_for((x, w, 1e-5), {}, "metal-sim")
    launcher = compiled.backward[0].runner
    g = mx.ones_like(x)
    _, plan = launcher.row_sum_variant([x, w, g], compiled.row_sums([x, w]))
    assert plan.groups * plan.rows_per_group <= plans.ROW_SUM_GROUPS * 8 and plan.grid_stride
    assert plan.groups == min(plans.ROW_SUM_GROUPS, 4096 // (plans.ROW_SUM_MIN_ROWS * plan.rows_per_group))


@pytest.mark.parametrize("backend", BACKENDS)
def test_derivatives_of_the_weight_gradient(backend):
    """The summed gradient is itself differentiable: second order (w.r.t. the weight and x),
    forward mode and vmap, as MLX's of the body."""
    x, w, _, c = _args((6,), 128, mx.float32, seed=3)
    k = kernel_of(rmsnorm, backend, "map_reduce")

    def dw(f):
        return lambda x, w: mx.vjp(lambda w: f(x, w, 1e-5), [w], [c])[1][0]

    ours, ref = dw(k), dw(rmsnorm_rows)
    t = rand(w.shape, mx.float32, rng=np.random.default_rng(5))
    u = rand(w.shape, mx.float32, rng=np.random.default_rng(6))
    for wrt in ([0], [1]):
        g = mx.vjp(lambda *a: ours(*a), [x, w], [u])[1]
        h = mx.vjp(lambda *a: ref(*a), [x, w], [u])[1]
        for i in wrt:
            assert_close(g[i], h[i], atol=1e-4, rtol=1e-4, what=f"second order, argument {i}: ")
    assert_close(mx.jvp(lambda w: ours(x, w), [w], [t])[1][0], mx.jvp(lambda w: ref(x, w), [w], [t])[1][0],
                 atol=1e-4, rtol=1e-4, what="forward mode: ")
    if backend == "metal-sim":  # it evaluates its inputs on the host: no mx.vmap tracing
        return
    xs = rand((3,) + x.shape, mx.float32, rng=np.random.default_rng(7))
    if backend == "cuda":  # MLX 0.32.4 vmaps a custom function's inner graph: its kernel (README)
        with pytest.raises(ValueError, match=r"\[Primitive::vmap\] Not implemented for CustomKernel"):
            mx.eval(mx.vmap(lambda x: ours(x, w))(xs))
        return
    assert_close(mx.vmap(lambda x: ours(x, w))(xs), mx.vmap(lambda x: ref(x, w))(xs), atol=1e-4, rtol=1e-4,
                 what="vmap: ")


def test_forward_mode_never_differentiates_the_kernel(monkeypatch):
    """MLX's CustomKernel (every kernel on CUDA and Metal) has no JVP, and mx.jvp walks the graph
    inside a custom function too: the kernels read their inputs behind stop_gradient, so forward
    mode takes the generated rules only — of a kernel, of its gradient (the weight's summed over
    rows) and of a given-VJP op. Here the portable backend's outputs pass through mx.depends,
    which has no JVP either (the failure on the H200 before: "[Primitive::jvp] Not implemented
    for CustomKernel")."""
    from zmlx_dsl import backend as backends
    from zmlx_dsl.backend.base import BackendFunctions
    real = backends.BACKENDS["mlx"]

    def compile(program, target, fast_math=None):
        run = real.compile(program, target, fast_math)
        return lambda arrays: mx.depends(run(arrays), list(arrays)) if arrays else run(arrays)
    monkeypatch.setitem(backends.BACKENDS, "mlx", BackendFunctions(compile, real.source))
    x, w, _, c = _args((5,), 64, mx.float32, seed=4)
    t = rand(x.shape, mx.float32, rng=np.random.default_rng(8))
    s = rand(w.shape, mx.float32, rng=np.random.default_rng(9))
    k = kernel_of(rmsnorm, "mlx:ir", "map_reduce")
    got = mx.jvp(lambda x, w: k(x, w, 1e-5), [x, w], [t, s])[1][0]
    want = mx.jvp(lambda x, w: rmsnorm_rows(x, w, 1e-5), [x, w], [t, s])[1][0]
    assert_close(got, want, atol=1e-4, rtol=1e-4, what="jvp of the kernel: ")

    def dw(f):
        return lambda w: mx.vjp(lambda w: f(x, w, 1e-5), [w], [c])[1][0]
    assert_close(mx.jvp(dw(k), [w], [s])[1][0], mx.jvp(dw(rmsnorm_rows), [w], [s])[1][0], atol=1e-4, rtol=1e-4,
                 what="jvp of the weight gradient: ")
    softplus = pointwise("softplus_t", ["x"], "log(1 + exp(x))", ["g * (1 - exp(-y))"], backend="mlx")
    assert_close(mx.jvp(softplus, [x], [t])[1][0], mx.jvp(lambda z: mx.logaddexp(z, 0.0), [x], [t])[1][0],
                 atol=1e-5, rtol=1e-5, what="jvp of a given-VJP op: ")


def _scaled_by_weight_total(x, w):
    return x * (mx.abs(mx.sum(w)) + 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_weight_gradient_of_one_value_per_row(backend):
    """The weight's gradient is the same for every element of a row (it reads the weight only
    through sum(w)): the rows' sum is spread over the weight's elements (found by the nested
    property test: a reshape of the summed (1, 1) gradient to (D,) failed)."""
    x, w, _, c = _args((4,), 5, mx.float32, seed=2)
    k = kernel_of(_scaled_by_weight_total, backend, "map_reduce")
    got = mx.vjp(k, [x, w], [c])[1]
    want = mx.vjp(lambda x, w: x * (mx.abs(mx.sum(w)) + 1.0), [x, w], [c])[1]
    for g, h in zip(got, want):
        assert g.shape == h.shape
        assert_close(g, h, atol=1e-5, rtol=1e-5)
