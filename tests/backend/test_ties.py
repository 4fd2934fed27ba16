"""Tie tests: a value compared with its own row's max or min (max/min's derivative shares the
gradient among the tied elements, its tangent averages over them; or `e == e.max()` written out).

A kernel that computes the value again in a later pass may round it differently (a compiler fuses
or vectorises each copy its own way): then no element ties, the tie count is 0 and the derivative
NaN, or a tied element loses its share. The value is computed once, held in registers
(c_rows.kept_between_passes); a row too long for registers runs as MLX ops (plan.row_plan's
`as_ops`). Checked against the body run as MLX ops, on every backend here."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.ir.rows import tie_operands

from conftest import BACKENDS, GRAD_BACKENDS, HAVE_METAL_SIM, assert_close, kernel_of

needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")


def nested_min(x, y, w):
    # found by the nested property test (scale 8): cosh(5.0) of the clip rounded differently in the
    # min's pass and in the tie test's pass on metal-sim, the forward-mode kernel gave NaN
    e = (mx.var(mx.logaddexp(x, y) + x, ddof=1) + mx.var(w)) * w
    m = 0.5 * mx.logsumexp(w)
    h = mx.cosh(mx.clip(e - m, -5.0, 5.0))
    return (-(mx.log(mx.abs(x) + 1.0) + h) + x).min()


def tied_max(x):
    return (mx.tanh(x * 0.7) * 2.0).max()


def saturated_argmax_mask(x):
    e = mx.exp(mx.clip(x, -1.0, 0.25))
    return x * (e == e.max())


def input_mask(x):
    return x * (x == x.max())


def _found_case():
    rng = np.random.default_rng(106460)
    args = [mx.array(rng.uniform(-3, 3, (1, 256)).astype(np.float32)) for _ in range(3)]
    rng.normal(size=(1,))
    tangents = [mx.array(rng.normal(size=(1, 256)).astype(np.float32)) for _ in range(3)]
    return args, tangents


@needs_sim
def test_forward_mode_of_a_tied_min_found_by_the_property_test():
    args, tangents = _found_case()
    kernel = zmlx.reduce(nested_min, backend="metal-sim")
    want = mx.jvp(nested_min, args, tangents)[1][0]
    got = mx.jvp(kernel, args, tangents)[1][0]
    assert np.isfinite(np.array(got)).all()
    assert_close(got.reshape(want.shape), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("D", [37, 1000, 40000])  # 40000: past the registers, runs as MLX ops
def test_an_extremum_shares_its_gradient_among_every_tie(backend, D):
    x = mx.array(np.random.default_rng(D).integers(-4, 5, (3, D)).astype(np.float32) / 2)  # ties
    ct = mx.array(np.random.default_rng(1).normal(size=(3,)).astype(np.float32))
    kernel = kernel_of(tied_max, backend, "reduce")
    ref = lambda v: mx.stack([tied_max(r) for r in v])  # noqa: E731
    assert_close(kernel(x).reshape(-1), ref(x), atol=1e-6, rtol=1e-6)
    got = mx.vjp(lambda v: kernel(v).reshape(-1), [x], [ct])[1][0]
    want = mx.vjp(ref, [x], [ct])[1][0]
    assert int((np.array(want) != 0).sum()) > 3  # ties: many elements share each row's gradient
    assert_close(got, want, atol=1e-6, rtol=1e-5)
    t = mx.array(np.random.default_rng(2).normal(size=(3, D)).astype(np.float32))
    assert_close(mx.jvp(lambda v: kernel(v).reshape(-1), [x], [t])[1][0], mx.jvp(ref, [x], [t])[1][0],
                 atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_written_out_tie_mask(backend):
    x = mx.array(np.random.default_rng(3).uniform(-3, 3, (4, 1000)).astype(np.float32))
    kernel = zmlx.map_reduce(saturated_argmax_mask, backend=backend)
    want = mx.stack([saturated_argmax_mask(r) for r in x])
    assert_close(kernel(x), want, atol=0, rtol=0)


def test_tie_operands_are_the_values_a_kernel_could_not_repeat():
    x = zmlx.map_reduce(saturated_argmax_mask).program(mx.zeros((2, 8)))
    (e,) = tie_operands(x.outputs)
    assert e.op == "exp"
    # an input compared with its max repeats exactly (a load): computed where it is read
    assert not tie_operands(zmlx.map_reduce(input_mask).program(mx.zeros((2, 8))).outputs)


@needs_sim
def test_a_tie_test_past_the_registers_runs_as_mlx_ops():
    kernel = zmlx.reduce(tied_max, backend="metal-sim")
    x = mx.zeros((2, 40000))
    assert "runs as MLX ops" in kernel.grad_source(x)
    assert "[[kernel]]" in kernel.source(x)  # the forward has no tie test: a kernel
    # computed once, in registers, and the tie test reads them
    assert "mul_r_0[k][j] == max1_0" in kernel.grad_source(mx.zeros((2, 1000)))


def plain_max(x):
    return x.max()


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_tangent_of_max_is_the_first_arg_extremum_as_mlx(backend):
    # MLX's forward mode of max/min takes the tangent at argmax (the first tie, the first NaN);
    # its reverse mode shares the cotangent among the ties
    x = mx.array([[1.0, 3.0, 3.0, 2.0], [1.0, float("nan"), 3.0, float("nan")], [0.0, 0.0, 0.0, 0.0]])
    t = mx.array([[10.0, 1.0, 2.0, 100.0], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    kernel = kernel_of(plain_max, backend, "reduce")
    got = mx.jvp(lambda v: kernel(v).reshape(-1), [x], [t])[1][0]
    assert np.array(got).tolist() == [1.0, 2.0, 5.0]
    want = mx.jvp(lambda v: mx.max(v, axis=-1), [x], [t])[1][0]
    assert np.array(got).tolist() == np.array(want).tolist()


def scan_tie(x):
    c = mx.tanh(mx.cummin(mx.pad(x, (0, 2), constant_values=1.0)) * 0.7)  # a second row length: no registers
    return (c * (c == c.max())).sum() + x.sum()


@needs_sim
def test_forward_mode_of_a_launch_run_as_mlx_ops():
    # a row not held in registers runs as MLX ops, inside the kernel's custom function: mx.jvp
    # walks in there too, and MLX has no forward mode of cummin (the generated rules have)
    x = mx.array(np.random.default_rng(4).integers(-4, 5, (2, 256)).astype(np.float32) / 2)
    t = mx.array(np.random.default_rng(5).normal(size=(2, 256)).astype(np.float32))
    kernel = zmlx.reduce(scan_tie, backend="metal-sim")
    assert "runs as MLX ops" in kernel.source(x)
    got = mx.jvp(lambda v: kernel(v).reshape(-1), [x], [t])[1][0]
    ref = zmlx.reduce(scan_tie, backend="mlx", autodiff="ir")  # the same tangent program, as MLX ops
    assert_close(got, mx.jvp(lambda v: ref(v).reshape(-1), [x], [t])[1][0], atol=1e-3, rtol=1e-5)
    want = mx.vjp(lambda v: mx.stack([scan_tie(r) for r in v]), [x], [mx.ones((2,))])[1][0]
    assert_close((want * t).sum(axis=-1), got, atol=1e-2, rtol=1e-4)  # <1, J t> = <J^T 1, t>
