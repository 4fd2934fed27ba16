"""The per-row shifts a body's outputs are invariant to (ir/shifts.py): found where the outputs
cannot depend on them, never elsewhere; the derivative programs then skip the shift's adjoint (no
tie count, one reduction pass less) and still equal MLX's VJP of the body."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from conftest import GRAD_BACKENDS, assert_grads, assert_jvp, kernel_of, rand
from zmlx_dsl.testing import rowwise
from zmlx_dsl.ir.shifts import invariant_shifts


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def logsumexp(x):
    m = x.max()
    return m + mx.log(mx.exp(x - m).sum())


def log_softmax(x):
    m = x.max()
    return x - m - mx.log(mx.sum(mx.exp(x - m)))


def tempered(x):
    e = mx.exp((x - x.max()) / 0.7)
    return e / mx.sum(e)


def xent(x, onehot):
    m = x.max()
    return m + mx.log(mx.exp(x - m).sum()) - (x * onehot).sum()


def shifted_only(x):  # x - max(x): depends on the max
    return x - x.max()


def unnormalised(x):
    return mx.exp(x - x.max())


def off_by_one(x):
    e = mx.exp(x - x.max())
    return e / (e.sum() + 1.0)


def scaled_max(x):
    return softmax(x) * x.max()


def user_stopped(x):
    m = mx.stop_gradient(x.max())
    e = mx.exp(x - m)
    return e / e.sum()


def _program(fn, *args):
    kind = "reduce" if fn in (logsumexp, xent) else "map_reduce"
    return getattr(zmlx, kind)(fn).compiled_for(args, {}, "mlx").program


@pytest.mark.parametrize("fn,invariant", [(softmax, True), (logsumexp, True), (log_softmax, True),
                                          (tempered, True), (xent, True), (shifted_only, False),
                                          (unnormalised, False), (off_by_one, False), (scaled_max, False),
                                          (user_stopped, False)], ids=lambda v: getattr(v, "__name__", str(v)))
def test_found_exactly_where_the_outputs_do_not_depend_on_the_shift(fn, invariant):
    x = mx.zeros((2, 8))
    args = (x, x) if fn is xent else (x,)
    outputs, shifted = invariant_shifts(_program(fn, *args).outputs)
    assert bool(shifted) == invariant
    for stop, m in shifted.items():
        assert stop.op == "stop_gradient" and stop.args[0] is m and m.op == "max"


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("fn", [softmax, logsumexp, log_softmax, tempered, scaled_max, off_by_one])
def test_derivatives_as_the_body(fn, backend):
    """Rows with ties at the max too: the body's VJP routes a rounding residue to the ties, the
    kernel none; both equal the true derivative."""
    rng = np.random.default_rng(3)
    x = rand((5, 64), rng=rng)
    x = mx.concatenate([x[:, :3] * 0 + 2.5, x[:, 3:]], axis=1)  # three-way ties at the row max
    kind = "reduce" if fn is logsumexp else "map_reduce"
    k = kernel_of(fn, backend, kind)
    body = rowwise(fn, [x])
    assert_grads(k, body, x, atol=1e-5, rtol=1e-4)
    assert_jvp(k, body, x, atol=1e-5, rtol=1e-4)


def test_softmax_backward_has_no_tie_count():
    text = zmlx.map_reduce(softmax).grad_source(mx.zeros((4, 1000)), backend="metal")
    assert "== max" not in text and text.count("threadgroup_barrier") == 6
