"""MLX spellings inside kernels, each checked against the undecorated body run as MLX (values, shape,
dtype) and, for float inputs, `mx.vjp` with random cotangents; on "mlx", "mlx:ir" (generated
derivatives) and "metal-sim" where it runs:
- constants: mx.finfo/mx.iinfo limits, mx.inf, math.inf, float("inf"), -float("inf"), float("nan"),
  a literal beyond the dtype (x + 1e39 is inf, as in MLX);
- mx.maximum/mx.minimum with scalars, mx.clip by keyword with None bounds;
- mlx.nn's functional activations, inlined from their Python source;
- row functions with the axis positional or by keyword, keepdims, precise=, ddof, mx.linalg.norm;
- values from outside that are one per row: (R,), (R, 1) and 0-d inputs, labels compared with
  positions, and reduce outputs built from them.
Row bodies are checked against `zmlx_dsl.testing.rowwise` (the body vmapped over the rows)."""
from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import pytest

from zmlx_dsl.frontend.table import NN_FUNCTIONS, NN_ROW_FUNCTIONS
from zmlx_dsl.testing import rowwise

from conftest import BACKENDS, GRAD_BACKENDS, assert_grads, assert_same, kernel_of, rand

X = rand((3, 16), low=-4.0, high=4.0)
X16 = X.astype(mx.float16)


def _args(kind_args):
    return kind_args() if callable(kind_args) else kind_args


# ---- elementwise spellings -----------------------------------------------------------------------

def finfo_limits(x):
    lo = mx.finfo(x.dtype).min
    return mx.where(x > 3.0, mx.finfo(mx.float32).max, mx.maximum(x, lo)) + mx.finfo(x.dtype).eps


def iinfo_limits(x):
    i = (x * 1000.0).astype(mx.int32)
    return mx.minimum(i, mx.iinfo(mx.int32).max - 1) + mx.iinfo(mx.int16).min


def infinities(x):
    a = mx.where(x > 1.0, mx.inf, x)
    b = mx.where(x < -1.0, -math.inf, a)
    return mx.where(x > 3.0, float("inf"), b) + mx.where(x < -3.5, -float("inf"), 0.0)


def not_a_number(x):
    return mx.where(x > 2.0, float("nan"), x * 2.0)


def beyond_the_dtype(x):
    return x + 1e39


def beyond_half(h):
    return h * 70000.0


def scalar_extremes(x):
    return mx.maximum(x, 0.5) + mx.minimum(-0.5, x) + mx.maximum(0, x) * mx.minimum(x, 1)


def clip_keywords(x):
    return (mx.clip(x, a_min=None, a_max=1.0) + mx.clip(x, -1.0, None) * 2.0
            + mx.clip(x, a_min=-0.5, a_max=0.5) * 3.0 + mx.clip(x, -2, 2) * 4.0)


ELEMENTWISE = [finfo_limits, infinities, not_a_number, beyond_the_dtype, scalar_extremes, clip_keywords]


@pytest.mark.parametrize("body", ELEMENTWISE + [iinfo_limits], ids=lambda f: f.__name__)
def test_elementwise_spelling(body, backend):
    assert_same(kernel_of(body, backend), body, X)


def test_beyond_the_dtype_is_inf_in_the_kernel(backend):
    assert_same(kernel_of(beyond_half, backend), beyond_half, X16)
    assert "INFINITY" in kernel_of(beyond_the_dtype, "metal").source(X, backend="metal")
    assert "INFINITY" in kernel_of(beyond_the_dtype, "cuda").source(X, backend="cuda")


@pytest.mark.parametrize("body", ELEMENTWISE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_elementwise_spelling_gradients(body, backend):
    assert_grads(kernel_of(body, backend), body, X)


# ---- mlx.nn activations, inlined from their source ------------------------------------------------

ACTIVATIONS = list(NN_FUNCTIONS)  # the README's table lists these


def _activation(name):
    fn = getattr(nn, name)

    def body(x):
        return fn(x)
    body.__name__ = f"nn_{name}"
    return body


def nn_with_parameters(x):
    return nn.leaky_relu(x, negative_slope=0.2) + nn.elu(x, alpha=0.5) + nn.celu(x, 2.0) + nn.softshrink(x, 0.25)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_nn_activation(name, backend):
    body = _activation(name)
    assert_same(kernel_of(body, backend), body, X)
    assert_same(kernel_of(body, backend), body, X16)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_nn_activation_gradient(name, backend):
    body = _activation(name)
    assert_grads(kernel_of(body, backend), body, X)


@pytest.mark.parametrize("gb", GRAD_BACKENDS)
def test_nn_activations_with_parameters(gb):
    assert_same(kernel_of(nn_with_parameters, gb), nn_with_parameters, X)
    assert_grads(kernel_of(nn_with_parameters, gb), nn_with_parameters, X)


# ---- row functions: MLX's signatures --------------------------------------------------------------

def softmax_positional(x):
    return mx.softmax(x, -1) + mx.softmax(x, axis=-1, precise=True) * 2.0


def logsumexp_keyword(x):
    return x - mx.logsumexp(x, axis=-1)


def sums_keepdims(x):
    return x * x.sum(-1, keepdims=True) - mx.max(x, 0, keepdims=True) + mx.mean(x, axis=(-1,))


def variance_ddof(x):
    return (x - x.mean()) / mx.std(x, ddof=1) + mx.var(x, -1, keepdims=True, ddof=0)


def norms(x):
    return (x / mx.linalg.norm(x) + mx.linalg.norm(x, 1) + mx.linalg.norm(x, ord=math.inf) * 2.0
            + mx.linalg.norm(x, -math.inf) + mx.linalg.norm(x, 3) * 0.5)


def nn_row_functions(x):  # NN_ROW_FUNCTIONS, which the README's table lists
    return nn.log_softmax(x) + nn.softmax(x, axis=-1) * 3.0


def keepdims_output(x):
    return mx.logsumexp(x, axis=-1, keepdims=True)


assert NN_ROW_FUNCTIONS == ("softmax", "log_softmax")

ROW = [softmax_positional, logsumexp_keyword, sums_keepdims, variance_ddof, norms, nn_row_functions]


@pytest.mark.parametrize("body", ROW + [keepdims_output], ids=lambda f: f.__name__)
def test_row_spelling(body, backend):
    assert_same(kernel_of(body, backend, "map_reduce"), rowwise(body, [X]), X)


@pytest.mark.parametrize("body", ROW, ids=lambda f: f.__name__)
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_row_spelling_gradients(body, backend):
    assert_grads(kernel_of(body, backend, "map_reduce"), rowwise(body, [X]), X)


# ---- values from outside, one per row -------------------------------------------------------------

def scaled_sum(x, a):
    return mx.sum(x) * a


def label_logit(x, y):
    return mx.sum(mx.where(mx.arange(x.shape[-1]) == y, x, 0.0))


def shifted(x, a):
    return x - a * x.max()


PER_ROW = {"0-d": mx.array(1.5), "(R,)": rand((3,), low=0.5, high=2.0), "(R, 1)": rand((3, 1), low=0.5, high=2.0)}


@pytest.mark.parametrize("shape", list(PER_ROW))
def test_reduce_output_from_a_per_row_value(shape, backend):
    a = PER_ROW[shape]
    k = kernel_of(scaled_sum, backend, "reduce")
    ref = rowwise(scaled_sum, [X, a])
    out = assert_same(k, ref, X, a)
    assert out.shape == ((3, 1) if shape == "(R, 1)" else (3,))  # a (1,) in the body keeps its axis, as MLX
    assert_grads(k, ref, X, a)
    k = kernel_of(shifted, backend, "map_reduce")
    assert_same(k, rowwise(shifted, [X, a]), X, a)
    assert_grads(k, rowwise(shifted, [X, a]), X, a)


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_a_label_compared_with_positions(shape, backend):
    y = mx.array([0, 15, 7], dtype=mx.int32).reshape(shape)
    k = kernel_of(label_logit, backend, "reduce")
    out = assert_same(k, rowwise(label_logit, [X, y]), X, y)
    assert out.tolist() == [X[0, 0].item(), X[1, 15].item(), X[2, 7].item()]
    assert_grads(k, rowwise(label_logit, [X, y]), X, y)
