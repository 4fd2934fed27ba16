"""`reduce`/`map_reduce` strings whose update is not `acc ⊕ f(v)` for an associative ⊕: a serial
fold over the row (the registry's "fold"). Values against a Python loop on "mlx" and "metal-sim",
the NumPy interpreter agreeing, a serial pass feeding associative ones (and the reverse), and the
gradient error: a fold has no derivative, so asking for one must fail loudly, never be zero."""
import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl
from zmlx_dsl.api import map_reduce, reduce
from zmlx_dsl.ir.interpret import interpret

from conftest import BACKENDS

LENGTHS = [1, 7, 33, 1000]
LEADING = [(), (4,)]
DTYPES = [mx.float32, mx.float16]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", request.param)
    return request.param


def loop(x: np.ndarray, init: float, step) -> np.ndarray:
    """The reference: acc = init; acc = step(acc, x[..., i]) for each i, in float64."""
    x = np.asarray(x, np.float64)
    acc = np.full(x.shape[:-1], init)
    for i in range(x.shape[-1]):
        acc = step(acc, x[..., i])
    return acc


def tol(dtype):
    return dict(rtol=2e-3, atol=2e-3) if dtype == mx.float16 else dict(rtol=1e-4, atol=1e-5)


def check(y: mx.array, ref: np.ndarray, dtype) -> None:
    assert y.shape == ref.shape and y.dtype == dtype
    np.testing.assert_allclose(np.array(y.astype(mx.float32)), ref, **tol(dtype))


def sample(shape, dtype, low, high, seed=0) -> mx.array:
    return mx.array(np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)).astype(dtype)


EMA = dict(init="0.0f", update="acc * 0.5f + v")
PROD = dict(init="1.0f", update="acc * v")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16"])
@pytest.mark.parametrize("lead", LEADING, ids=["1d", "2d"])
@pytest.mark.parametrize("D", LENGTHS)
def test_ema_and_product(backend, D, lead, dtype):
    ema = reduce(**EMA, name="ema")
    prod = reduce(**PROD, name="prod")
    x = sample(lead + (D,), dtype, -2.0, 2.0)
    check(ema(x), loop(np.array(x.astype(mx.float32)), 0.0, lambda a, v: a * 0.5 + v), dtype)
    p = sample(lead + (D,), dtype, 0.9, 1.1, seed=1)  # products of ~1 stay in range
    check(prod(p), loop(np.array(p.astype(mx.float32)), 1.0, lambda a, v: a * v), dtype)


@pytest.mark.parametrize("D", LENGTHS)
def test_interpreter_agrees(D):
    ema = reduce(**EMA, name="ema", finalize="acc / D")
    x = sample((3, D), mx.float32, -2.0, 2.0)
    ref = loop(np.array(x), 0.0, lambda a, v: a * 0.5 + v) / D
    prog = ema.program(x)
    assert "fold(" in prog.text() and "lambda acc, v0" in prog.text()
    for mode in ("float64", "faithful"):
        (got,) = interpret(prog.outputs, {"x": np.array(x)}, mode=mode, rowsize=D)
        np.testing.assert_allclose(got.reshape(3), ref, rtol=1e-5, atol=1e-6)


def test_other_non_associative_updates(backend):
    x = sample((5, 33), mx.float32, -1.0, 1.0)
    xs = np.array(x)
    cases = [  # (kernel, reference)
        (reduce(init="0.0f", update="acc + acc * v"), loop(xs, 0.0, lambda a, v: a + a * v)),
        (reduce(init="2.0f", update="v - acc"), loop(xs, 2.0, lambda a, v: v - a)),
        (reduce(init="0.0f", update="v"), xs[..., -1]),                          # the last element
        (reduce(init="0.0f", update="acc > v ? acc : v * D"), loop(xs, 0.0, lambda a, v: np.where(a > v, a, v * 33))),
        (reduce(init="1.0f", update="acc * 0.5f + 1.0f"), loop(xs, 1.0, lambda a, v: a * 0.5 + 1.0)),  # no v
    ]
    for k, ref in cases:
        assert "fold(" in k.ir(x)
        check(k(x), ref, mx.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f16"])
@pytest.mark.parametrize("D", LENGTHS)
def test_map_reduce_serial_pass1_then_associative_pass2(backend, D, dtype):
    k = map_reduce(pass1={"init": "0.0f", "update": "acc1 * 0.5f + x", "reduce": "a + b"},
                   pass2={"init": "0.0f", "update": "acc2 + (x - s1) * (x - s1)", "reduce": "a + b"},
                   write="(x - s1) * rsqrt(s2 / D + 1.0f)", name="ema_norm")
    x = sample((4, D), dtype, -2.0, 2.0)
    xs = np.array(x.astype(mx.float32), np.float64)
    s1 = loop(xs, 0.0, lambda a, v: a * 0.5 + v)[..., None]
    s2 = ((xs - s1) ** 2).sum(-1, keepdims=True)
    check(k(x), (xs - s1) / np.sqrt(s2 / D + 1.0), dtype)


@pytest.mark.parametrize("D", LENGTHS)
def test_map_reduce_associative_pass1_then_serial_pass2(backend, D):
    # pass2's update reads s1 per row (tanh(s1): an operand of the fold) and per element (x - s1 / D)
    k = map_reduce(pass1={"init": "0.0f", "update": "acc1 + x", "reduce": "a + b"},
                   pass2={"init": "0.0f", "update": "acc2 * tanh(s1) + (x - s1 / D)", "reduce": "a + b"},
                   write="x * s2", name="sum_then_ema")
    x = sample((2, 3, D), mx.float32, -1.0, 1.0)
    xs = np.array(x, np.float64)
    s1 = xs.sum(-1)
    s2 = np.zeros(xs.shape[:-1])
    for i in range(D):
        s2 = s2 * np.tanh(s1) + (xs[..., i] - s1 / D)
    check(k(x), xs * s2[..., None], mx.float32)


def test_map_reduce_two_serial_passes(backend):
    k = map_reduce(pass1={"init": "1.0f", "update": "acc1 * x"},
                   pass2={"init": "0.0f", "update": "acc2 * 0.5f + x * s1"},
                   write="x + s2", name="two_folds")
    x = sample((3, 40), mx.float16, 0.9, 1.1)
    xs = np.array(x.astype(mx.float32), np.float64)
    s1 = loop(xs, 1.0, lambda a, v: a * v)[..., None]
    s2 = np.zeros(xs.shape[:-1])
    for i in range(xs.shape[-1]):
        s2 = s2 * 0.5 + xs[..., i] * s1[..., 0]
    check(k(x), xs + s2[..., None], mx.float16)


GRAD_ERROR = (
    "cannot differentiate kernel '{}': its row reduction runs as a serial loop (the update is not "
    "'acc + f(v)', 'acc - f(v)', 'max(acc, f(v))' or 'min(acc, f(v))' with f free of acc), which has no "
    "derivative; use an associative update, or pass the gradient around the kernel (mx.stop_gradient on "
    "its input)")


def test_gradient_through_a_fold_raises(backend):
    ema = reduce(**EMA, name="ema")
    x = sample((4, 16), mx.float32, -1.0, 1.0)
    with pytest.raises(zmlx_dsl.ZMLXGradientError) as info:
        mx.grad(lambda z: (ema(z) * mx.arange(4)).sum())(x)
    assert str(info.value) == GRAD_ERROR.format("ema")
    with pytest.raises(zmlx_dsl.ZMLXGradientError) as info:       # forward mode too
        mx.jvp(ema, [x], [mx.ones_like(x)])
    assert str(info.value) == GRAD_ERROR.format("ema")
    k = map_reduce(pass1={"init": "0.0f", "update": "acc1 * 0.5f + x"},
                   pass2={"init": "0.0f", "update": "acc2 + x", "reduce": "a + b"},
                   write="x - s1 + s2", name="ema_mr")
    with pytest.raises(zmlx_dsl.ZMLXGradientError) as info:
        mx.vjp(k, [x], [mx.ones_like(x)])
    assert str(info.value) == GRAD_ERROR.format("ema_mr")
    # what the message suggests works: the gradient stopped at the kernel's input
    g = mx.grad(lambda z: (ema(mx.stop_gradient(z)) + z.sum(-1)).sum())(x)
    assert mx.array_equal(g, mx.ones_like(x))


def test_associative_updates_stay_parallel_reductions():
    for update in ("acc + v * v", "max(acc, v)", "fmin(2.0f * v, acc)", "acc - v"):
        assert "fold(" not in reduce(init="0.0f", update=update).ir(mx.zeros((2, 8)))


def test_metal_source_runs_the_loop_in_one_thread():
    src = reduce(**EMA, name="ema").source(mx.zeros((4, 1000)), backend="metal")
    assert "if (lid == 0) {" in src and "for (int zmlx_i = 0; zmlx_i < D; ++zmlx_i)" in src
    assert "zmlx_fold1_0_acc = zmlx_fold1_0_acc * 0.5f + x[row * D + zmlx_i];" in src
    assert "threadgroup_barrier(mem_flags::mem_threadgroup);" in src
