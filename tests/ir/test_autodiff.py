"""Symbolic autodiff: mx.vjp / mx.grad / mx.jvp through a kernel equal the same transform
of its body in MLX -- random cotangents and tangents, every float input, broadcast inputs,
float32 and bfloat16 -- plus central finite differences in float64 through the IR interpreter,
second order, mx.compile, nn training, edge rules, and row kernels."""
from __future__ import annotations


import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest

from zmlx_dsl.ir.interpret import interpret
from conftest import (GRAD_BACKENDS, assert_close, assert_grads, assert_jvp, kernel_of, rand, random_like,
                      skip_if_traced, to_numpy)
from test_ops import DOMAIN, ELEMENTWISE_OPS, SPELL, arity, bodies  # noqa: F401  (bodies: fixture)


@pytest.fixture(params=GRAD_BACKENDS)
def backend(request) -> str:
    return request.param

# ---- every differentiable op ---------------------------------------------------------------------

BOOL_RESULT = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
               "isnan", "isinf", "isfinite"}
GRAD_OPS = [n for n in ELEMENTWISE_OPS if n in SPELL and n not in BOOL_RESULT]
GRAD_TOL = {mx.float32: (2e-5, 2e-5), mx.bfloat16: (3e-2, 3e-2)}


def _op_args(name, dtype, rng, xshape=(3, 4), yshape=(4,)):
    low, high = DOMAIN.get(name, (-2.0, 2.0))
    x = rand(xshape, dtype, rng=rng, low=low, high=high)
    y = rand(yshape, dtype, rng=rng, low=low, high=high)
    if name in ("floordiv", "mod"):  # keep x / y away from integers (the kinks of floor)
        x = rand(xshape, dtype, rng=rng, low=0.6, high=0.9) + mx.array(rng.integers(0, 3, xshape)).astype(dtype)
        y = mx.ones(yshape, dtype)
    if arity(name) == 1:
        return [x]
    if arity(name) == 3:
        return [rand(xshape, mx.bool_, rng=rng), x, y]
    return [x, y]


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("name", GRAD_OPS)
def test_op_vjp_and_jvp(bodies, backend, name, dtype):
    """Every op's derivative rule vs MLX's, with a broadcast second input (its gradient is
    summed back to shape (4,))."""
    rng = np.random.default_rng(sum(map(ord, name)))
    args = _op_args(name, dtype, rng)
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    ref = getattr(bodies, f"r_{name}")
    atol, rtol = GRAD_TOL[dtype]
    if name in ("power", "exp", "exp2", "sinh", "cosh", "tan") and dtype == mx.float32:
        rtol = 1e-4
    assert_grads(k, ref, *args, atol=atol, rtol=rtol)
    assert_jvp(k, ref, *args, atol=atol, rtol=rtol)


# ---- composite bodies ------------------------------------------------------------------------------


def silu(x, y):
    return x * mx.sigmoid(x) + y


def gelu_tanh(x, y):
    return 0.5 * x * (1 + mx.tanh(0.7978845608 * (x + 0.044715 * x * x * x))) * y


def softplus(x, y):
    return mx.logaddexp(x, 0.0) - mx.log1p(mx.exp(-mx.abs(y)))


def trig_mix(x, y):
    return mx.sin(x) * mx.exp(-y * y) + mx.cos(x * y)


def rational(x, y):
    return (x * x + 1) / (y * y + 2) - x / (1 + mx.abs(y))


def norm2(x, y):
    return mx.sqrt(x * x + y * y + 1.0) * mx.rsqrt(y * y + 0.5)


def atan_mix(x, y):
    return mx.arctan2(x, y + 3.0) * x + mx.arctan(y)


def erf_cosh(x, y):
    return mx.erf(x) * mx.cosh(y * 0.5) + mx.sinh(x * 0.3)


def power_mix(x, y):
    return mx.power(mx.abs(x) + 1.0, y * 0.5) + (x * x + 1) ** 1.5


def mish(x, y):
    return x * mx.tanh(mx.log1p(mx.exp(x))) * mx.square(y) + mx.expm1(y * 0.1)


def log_mix(x, y):
    return mx.log(x * x + 1.0) + mx.log2(y * y + 2.0) - mx.log10(x * x + y * y + 3.0)


def reused(x, y):
    t = mx.tanh(x * y)
    return t * t + t * x - mx.sigmoid(t)


COMPOSITES = [silu, gelu_tanh, softplus, trig_mix, rational, norm2, atan_mix, erf_cosh, power_mix,
              mish, log_mix, reused]
BROADCASTS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((), (2, 3)), ((4, 1), ())]


@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("body", COMPOSITES, ids=lambda f: f.__name__)
def test_composite_vjp_jvp(backend, body, shapes):
    rng = np.random.default_rng(5)
    k = kernel_of(body, backend)
    x, y = rand(shapes[0], rng=rng, low=-2, high=2), rand(shapes[1], rng=rng, low=-2, high=2)
    assert_grads(k, None, x, y, atol=3e-5, rtol=3e-5)
    assert_jvp(k, None, x, y, atol=3e-5, rtol=3e-5)


@pytest.mark.parametrize("body", COMPOSITES, ids=lambda f: f.__name__)
def test_composite_bfloat16(backend, body):
    rng = np.random.default_rng(6)
    k = kernel_of(body, backend)
    x, y = rand((4, 6), mx.bfloat16, rng=rng, low=-2, high=2), rand((6,), mx.bfloat16, rng=rng, low=-2, high=2)
    # MLX differentiates in bfloat16 op by op, the kernel in float32 rounded once: compare at the
    # bfloat16 scale of the values involved
    g = assert_grads(k, None, x, y, atol=0.15, rtol=0.05)
    assert all(gi.dtype == mx.bfloat16 for gi in g)


def test_grad_through_mx_grad(backend):
    k = kernel_of(silu, backend)
    x, y = rand((5,)), rand((5,))
    w = random_like(x, np.random.default_rng(2))
    gk = mx.grad(lambda a, b: (k(a, b) * w).sum(), argnums=(0, 1))(x, y)
    gb = mx.grad(lambda a, b: (silu(a, b) * w).sum(), argnums=(0, 1))(x, y)
    for a, b in zip(gk, gb):
        assert_close(a, b)


# ---- finite differences in float64 through the interpreter ------------------------------------------


@pytest.mark.parametrize("body", COMPOSITES, ids=lambda f: f.__name__)
def test_finite_differences_float64(backend, body):
    """<vjp(c), v> of the kernel (float32) vs the central difference of <F(x), c> along v, F being
    the kernel's own program run by the NumPy interpreter in float64 (the second oracle)."""
    rng = np.random.default_rng(11)
    k = kernel_of(body, backend)
    x, y = rand((3, 4), rng=rng, low=-1.5, high=1.5), rand((4,), rng=rng, low=-1.5, high=1.5)
    prog = k.program(x, y)
    out = k(x, y)
    c = random_like(out, rng)
    _, (gx, gy) = mx.vjp(k, [x, y], [c])
    vx, vy = rng.standard_normal(x.shape), rng.standard_normal(y.shape)
    x64, y64, c64 = to_numpy(x), to_numpy(y), to_numpy(c)

    def f(t):
        (o,) = interpret(prog.outputs, {"x": x64 + t * vx, "y": y64 + t * vy}, mode="float64")
        return float((o * c64).sum())

    h = 1e-5
    fd = (f(h) - f(-h)) / (2 * h)
    ad = float((to_numpy(gx) * vx).sum() + (to_numpy(gy) * vy).sum())
    assert abs(fd - ad) <= 1e-4 * (1 + abs(fd)), (fd, ad)


# ---- second order ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", COMPOSITES, ids=lambda f: f.__name__)
def test_grad_of_grad(backend, body):
    rng = np.random.default_rng(21)
    k = kernel_of(body, backend)
    x, y = rand((3, 4), rng=rng, low=-1.5, high=1.5), rand((4,), rng=rng, low=-1.5, high=1.5)
    w1, w2 = random_like(x, rng), random_like(x, rng)

    def second(fn):
        def inner(a, b):
            return (fn(a, b) * w1).sum()

        def outer(a, b):
            ga, gb = mx.grad(inner, argnums=(0, 1))(a, b)
            return (ga * w2).sum() + (gb * w2[0]).sum()
        return mx.grad(outer, argnums=(0, 1))(x, y)

    for gk, gb in zip(second(k), second(body)):
        assert_close(gk, gb, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("body", COMPOSITES, ids=lambda f: f.__name__)
def test_grad_of_jvp(backend, body):
    rng = np.random.default_rng(22)
    k = kernel_of(body, backend)
    x, y = rand((3, 4), rng=rng, low=-1.5, high=1.5), rand((3, 4), rng=rng, low=-1.5, high=1.5)
    tx, ty, w = random_like(x, rng), random_like(y, rng), random_like(x, rng)

    def via(fn):
        def f(a, b):
            _, (t,) = mx.jvp(lambda p, q: fn(p, q), [a, b], [tx, ty])
            return (t * w).sum()
        return mx.grad(f, argnums=(0, 1))(x, y)

    for gk, gb in zip(via(k), via(body)):
        assert_close(gk, gb, atol=1e-4, rtol=1e-4)


def test_third_order(backend):
    k = kernel_of(trig_mix, backend)
    x, y = mx.array([0.3, -1.2, 0.7]), mx.array([0.5, 0.1, -0.4])

    def d3(fn):
        f1 = mx.grad(lambda a: fn(a, y).sum())
        f2 = mx.grad(lambda a: f1(a).sum())
        return mx.grad(lambda a: f2(a).sum())(x)

    assert_close(d3(k), d3(trig_mix), atol=1e-4, rtol=1e-4)


# ---- mx.compile, nn training -----------------------------------------------------------------------


def test_compile_of_grad(backend):
    skip_if_traced(backend)
    k = kernel_of(gelu_tanh, backend)
    x, y = rand((4, 5)), rand((5,))
    w = random_like(mx.zeros((4, 5)), np.random.default_rng(3))
    gk = mx.compile(mx.grad(lambda a, b: (k(a, b) * w).sum(), argnums=(0, 1)))
    gb = mx.grad(lambda a, b: (gelu_tanh(a, b) * w).sum(), argnums=(0, 1))
    for _ in range(2):  # second call reuses the compiled graph
        for a, b in zip(gk(x, y), gb(x, y)):
            assert_close(a, b, atol=2e-5, rtol=2e-5)


def act_body(x):
    return x * mx.sigmoid(1.702 * x) + 0.1 * mx.tanh(x)


class _Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.l1 = nn.Linear(8, 16)
        self.l2 = nn.Linear(16, 1)
        self.act = act

    def __call__(self, x):
        return self.l2(self.act(self.l1(x)))


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_nn_training_matches_pure_mlx(backend, opt):
    mx.random.seed(0)
    net_k = _Net(kernel_of(act_body, backend))
    net_r = _Net(act_body)
    net_r.update(net_k.parameters())
    rng = np.random.default_rng(4)
    X = mx.array(rng.standard_normal((64, 8)).astype(np.float32))
    Y = mx.array(np.sin(rng.standard_normal((64, 1))).astype(np.float32))

    def train(net):
        o = optim.SGD(learning_rate=0.1) if opt == "sgd" else optim.Adam(learning_rate=0.01)
        loss_and_grad = nn.value_and_grad(net, lambda m, a, b: mx.mean((m(a) - b) ** 2))
        losses = []
        for _ in range(8):
            loss, grads = loss_and_grad(net, X, Y)
            o.update(net, grads)
            mx.eval(net.parameters(), o.state)
            losses.append(loss.item())
        return losses

    lk, lr = train(net_k), train(net_r)
    assert lk[-1] < lk[0] * 0.9
    np.testing.assert_allclose(lk, lr, rtol=1e-4, atol=1e-6)


# ---- edge rules --------------------------------------------------------------------------------------


def branchy(x, y):
    if x > y:
        r = x * y
    elif x < -1:
        r = mx.exp(x)
    else:
        r = y * y
    return r


def branchy_ref(x, y):
    return mx.where(x > y, x * y, mx.where(x < -1, mx.exp(x), y * y))


def where_body(x, y):
    return mx.where(x > 0, mx.sin(x) * y, y * 3.0) + (x if y > 0.5 else -x)


def where_ref(x, y):
    return mx.where(x > 0, mx.sin(x) * y, y * 3.0) + mx.where(y > 0.5, x, -x)


@pytest.mark.parametrize("body,ref", [(branchy, branchy_ref), (where_body, where_ref)],
                         ids=["if_elif_else", "where_and_ternary"])
def test_where_and_if_gradients(backend, body, ref):
    k = kernel_of(body, backend)
    x, y = rand((5, 6), low=-3, high=3), rand((6,), low=-2, high=2, rng=np.random.default_rng(9))
    assert_grads(k, ref, x, y)
    assert_jvp(k, ref, x, y)


def int_mix(x, i, b):
    return x * i.astype(mx.float32) + mx.where(b, x, 0.0)


def test_integer_and_bool_inputs_get_zero_gradients(backend):
    """Integer/bool inputs get zeros of their dtype, never None. (MLX itself pushes the float
    cotangent through astype and truncates it to int32; kernels give zeros, the derivative of the function.)"""
    k = kernel_of(int_mix, backend)
    x, i, b = rand((2, 3)), mx.array([[1, -2, 3]]), mx.array([True, False, True])
    ct = random_like(mx.zeros((2, 3)), np.random.default_rng(1))
    _, (gx, gi, gb) = mx.vjp(k, [x, i, b], [ct])
    assert_close(gx, (i.astype(mx.float32) + b.astype(mx.float32)) * ct)
    for g, a in ((gi, i), (gb, b)):
        assert g is not None and g.shape == a.shape and g.dtype == a.dtype
        assert not to_numpy(g).any()
    assert_grads(k, int_mix, x, i, b)  # the float input, against MLX


def scaled(x, s, t):
    return x * s + t * mx.sin(x)


def test_python_scalar_parameters(backend):
    k = kernel_of(scaled, backend)
    x = rand((3, 3))
    for s, t in ((2.0, 0.5), (-1.5, 3)):
        assert_grads(k, None, x, s, t)
        assert_jvp(k, None, x, s, t)
    # no recompilation for new scalar values under grad either
    p = k.program(x, 2.0, 0.5)
    mx.eval(mx.grad(lambda a: (k(a, 7.0, 1.5) * a).sum())(x))
    assert k.program(x, 7.0, 1.5) is p


def zero_d(x, s):
    return x * s + s * s


def test_zero_d_array_input_gradient_is_summed(backend):
    k = kernel_of(zero_d, backend)
    x, s = rand((4, 3)), mx.array(0.7)
    g = assert_grads(k, None, x, s)
    assert g[1].shape == ()


def kinks(x, y):
    return mx.abs(x) + mx.maximum(x, y) * 2.0 + mx.minimum(x, y) * 3.0 + mx.maximum(x, 0.0) + mx.clip(y, -1.0, 1.0)


def kinks_builtin(x, y):
    return abs(x) + max(x, y) * 2.0 + min(x, y) * 3.0 + max(x, 0.0) + mx.clip(y, -1.0, 1.0)


@pytest.mark.parametrize("body", [kinks, kinks_builtin], ids=["mx", "builtins"])
def test_kinks_match_mlx_convention(backend, body):
    """abs at ±0, maximum/minimum at ties, relu at 0, clip at its bounds: MLX's conventions."""
    k = kernel_of(body, backend)
    x = mx.array([0.0, -0.0, 1.0, -1.0, 2.0, 0.0, -1.0, 0.5])
    y = mx.array([0.0, 0.0, 1.0, -1.0, 1.0, 1.0, -1.0, 0.5])
    assert_grads(k, kinks, x, y)
    assert_jvp(k, kinks, x, y)


def multi(x, y):
    return x * y, mx.exp(x) - y, mx.sin(y)


def test_multiple_outputs_cotangent_per_output(backend):
    k = kernel_of(multi, backend)
    x, y = rand((3, 4)), rand((4,), rng=np.random.default_rng(2))
    assert_grads(k, None, x, y)
    assert_jvp(k, None, x, y)
    # only some outputs used: the others' cotangents are zeros
    for pick in (0, 1, 2):
        w = random_like(mx.zeros((3, 4)), np.random.default_rng(pick))
        gk = mx.grad(lambda a, b: (k(a, b)[pick] * w).sum(), argnums=(0, 1))(x, y)
        gb = mx.grad(lambda a, b: (multi(a, b)[pick] * w).sum(), argnums=(0, 1))(x, y)
        for a, b in zip(gk, gb):
            assert_close(a, b)


def mixed_shapes(x, y):
    return x * 2.0, x * y, mx.exp(y)


def test_outputs_of_different_shapes(backend):
    """(3,1), (3,4) and (1,4) outputs: each output's contribution summed once, not per broadcast."""
    k = kernel_of(mixed_shapes, backend)
    x, y = rand((3, 1)), rand((1, 4), rng=np.random.default_rng(3))
    assert_grads(k, None, x, y)
    assert_jvp(k, None, x, y)


def test_vmap_over_axis_1(backend):
    skip_if_traced(backend)
    k = kernel_of(silu, backend)
    x, y = rand((3, 5)), rand((5, 3), rng=np.random.default_rng(8))
    vk = mx.vmap(k, in_axes=(1, 0))
    vb = mx.vmap(silu, in_axes=(1, 0))
    assert_close(vk(x, y), vb(x, y))
    w = random_like(vb(x, y), np.random.default_rng(1))
    gk = mx.grad(lambda a, b: (vk(a, b) * w).sum(), argnums=(0, 1))(x, y)
    gb = mx.grad(lambda a, b: (vb(a, b) * w).sum(), argnums=(0, 1))(x, y)
    for a, b in zip(gk, gb):
        assert_close(a, b)


def test_grad_ir_is_inspectable(backend):
    k = kernel_of(silu, backend)
    x = rand((3,))
    text = k.grad_ir(x, x)
    assert "cotan0" in text and "sigmoid" in text
    assert text.splitlines()[0].startswith("elementwise silu_vjp(")


# ---- row kernels ---------------------------------------------------------------------------------------


def softmax_body(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def rmsnorm_body(x, w):
    return x * mx.rsqrt(mx.mean(x * x) + 1e-5) * w


def logsumexp_body(x):
    m = x.max()
    return m + mx.log(mx.sum(mx.exp(x - m)))


ROW_SHAPES = [(4, 16), (3, 33), (2, 3, 7), (1, 1)]


def _row_grads(fn, ref, args, rng, wrt, atol=2e-5, rtol=2e-5):
    out = ref(*args)
    c = random_like(out, rng)
    _, gk = mx.vjp(lambda *a: fn(*a), list(args), [c])
    _, gr = mx.vjp(lambda *a: ref(*a), list(args), [c])
    for i in wrt:
        assert gk[i].shape == args[i].shape
        assert_close(gk[i], gr[i], atol=atol, rtol=rtol, what=f"grad {i}: ")


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_softmax_map_reduce(backend, shape):
    k = kernel_of(softmax_body, backend, kind="map_reduce")
    rng = np.random.default_rng(31)
    x = rand(shape, rng=rng, low=-4, high=4)
    assert_close(k(x), mx.softmax(x, axis=-1), atol=1e-6, rtol=1e-5)
    _row_grads(k, lambda a: mx.softmax(a, axis=-1), [x], rng, [0])
    xb = x.astype(mx.bfloat16)
    assert_close(k(xb), mx.softmax(xb, axis=-1), atol=1e-2, rtol=2e-2)


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_rmsnorm_map_reduce(backend, shape):
    k = kernel_of(rmsnorm_body, backend, kind="map_reduce")
    rng = np.random.default_rng(32)
    x, w = rand(shape, rng=rng), rand(shape[-1:], rng=rng)
    ref = lambda a, b: mx.fast.rms_norm(a, b, 1e-5)  # noqa: E731
    assert_close(k(x, w), ref(x, w), atol=1e-5, rtol=1e-5)
    _row_grads(k, ref, [x, w], rng, [0, 1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
def test_logsumexp_reduce(backend, shape):
    k = kernel_of(logsumexp_body, backend, kind="reduce")
    rng = np.random.default_rng(33)
    x = rand(shape, rng=rng, low=-5, high=5)
    assert_close(k(x), mx.logsumexp(x, axis=-1), atol=1e-5, rtol=1e-5)
    _row_grads(k, lambda a: mx.logsumexp(a, axis=-1), [x], rng, [0])
    assert_jvp(k, lambda a: mx.logsumexp(a, axis=-1), x)


def test_row_max_ties_gradient(backend):
    """max over a row with ties: MLX shares the cotangent equally among the tied elements."""
    k = kernel_of(lambda_free_rowmax, backend, kind="reduce")
    x = mx.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    _row_grads(k, lambda a: mx.max(a, axis=-1), [x], np.random.default_rng(0), [0])


def lambda_free_rowmax(x):
    return x.max()


# ---- who differentiates: MLX (portable default) or the generated programs ------------------------

def swish(x):
    return x * mx.sigmoid(x)


def test_portable_backend_lets_mlx_fuse_around_the_kernel():
    """With autodiff="mlx" the kernel is plain MLX ops: mx.compile traces through it, and grad of
    the compiled whole equals the body's."""
    k = kernel_of(swish, "mlx")
    f = mx.compile(lambda x: (k(x) * 2.0).sum())
    g = mx.compile(lambda x: (swish(x) * 2.0).sum())
    x = rand((33,), rng=np.random.default_rng(3))
    assert_close(f(x), g(x))
    assert_close(mx.grad(f)(x), mx.grad(g)(x))


def test_autodiff_option_errors():
    with pytest.raises(TypeError, match=r"^swish: autodiff must be 'mlx' or 'ir', got 'jax'$"):
        kernel_of(swish, "mlx", autodiff="jax")
    k = kernel_of(swish, "cuda", autodiff="mlx")
    with pytest.raises(RuntimeError, match=r"^swish: autodiff='mlx' needs backend='mlx' \(MLX cannot "
                                         r"differentiate a cuda kernel\); use autodiff='ir'$"):
        k(mx.ones((4,)))


# ---- per-row values used at every element of the row ----------------------------------------------

def centred_total(x):
    return (x - x.sum()).sum()            # the gradient does not read x: the row length must still be known


def centred_mix(x):
    return mx.abs((x - x.sum()).sum()) + x


@pytest.mark.parametrize("body,kind", [(centred_total, "reduce"), (centred_mix, "map_reduce")],
                         ids=["reduce", "map_reduce"])
def test_per_row_value_used_at_every_element(backend, body, kind):
    """s = x.sum() feeds x - s at each of the D elements: its adjoint is the row's sum of those
    contributions (D times a per-row cotangent), as MLX's autodiff of the body gives."""
    k = kernel_of(body, backend, kind=kind)
    x = rand((3, 5), rng=np.random.default_rng(5))
    ct = random_like(mx.zeros((3,) if kind == "reduce" else (3, 5)), np.random.default_rng(6))
    got = mx.vjp(k, [x], [ct])[1][0]
    want = mx.vjp(lambda z: mx.stack([body(z[i]) for i in range(3)]), [x], [ct])[1][0]
    assert_close(got, want)


def plus_row_total(x, y):
    return x + y.sum()


def test_gradient_of_an_input_read_as_one_value_per_row(backend):
    """y of shape (rows, 1) is a row of one value beside x's rows of 5 (rows broadcast over their
    leading axes only, each keeps its own length): y.sum() is y, and its gradient sums the
    cotangent over the 5 positions it was broadcast to, as MLX's VJP of the body per row does."""
    k = kernel_of(plus_row_total, backend, kind="map_reduce")
    x, y = rand((3, 5), rng=np.random.default_rng(7)), rand((3, 1), rng=np.random.default_rng(8))
    ct = random_like(mx.zeros((3, 5)), np.random.default_rng(9))
    got = mx.vjp(k, [x, y], [ct])[1]
    want = mx.vjp(lambda a, b: mx.stack([plus_row_total(a[i], b[i]) for i in range(3)]), [x, y], [ct])[1]
    for g, h in zip(got, want):
        assert_close(g, h)


def twin_outputs(x):
    return x + 0.5, x + 0.5


def same_array_twice(x):
    return x, x


def test_equal_outputs_each_get_their_cotangent(backend):
    """Two outputs computing the same value are two arrays in MLX: both cotangents count. (The IR
    shares the node; the portable backend must still return two arrays, or MLX's VJP would drop
    one cotangent.)"""
    k = kernel_of(twin_outputs, backend)
    x = rand((6,), rng=np.random.default_rng(10))
    cts = [random_like(x, np.random.default_rng(11)), random_like(x, np.random.default_rng(12))]
    assert_close(mx.vjp(k, [x], cts)[1][0], mx.vjp(twin_outputs, [x], cts)[1][0])
    # Returning one array twice: MLX 0.32.4's own VJP counts only the first cotangent (one per
    # array object); kernels give the sum, the derivative of the function.
    k2 = kernel_of(same_array_twice, backend)
    assert_close(mx.vjp(k2, [x], cts)[1][0], cts[0] + cts[1])


def nan_row_max_plus_total(x):
    return x.max() + x.sum()


def test_row_max_gradient_with_a_nan_in_the_row(backend):
    """A row whose max is NaN: no element equals it, and MLX's VJP (cotangent / count * mask) gives
    NaN across that row; the other rows are unaffected."""
    k = kernel_of(nan_row_max_plus_total, backend, kind="reduce")
    x = mx.array([[0.5, float("nan"), 2.0], [1.0, -1.0, 3.0]])
    ct = mx.array([0.75, -1.25])
    got = mx.vjp(k, [x], [ct])[1][0]
    want = mx.vjp(lambda z: mx.stack([nan_row_max_plus_total(z[i]) for i in range(2)]), [x], [ct])[1][0]
    assert_close(got, want)
