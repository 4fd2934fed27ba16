"""@zmlx.elementwise end to end: every kernel is compared with its own body run as MLX
(values, shape and dtype) -- "same function, same answer"."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import zmlx_dsl as zmlx
from conftest import assert_close, assert_same, kernel_of, rand, random_like, skip_if_traced, to_numpy

THIS = sys.modules[__name__]

# ---- bodies --------------------------------------------------------------------------------


def body_float(x, y):
    return x * mx.sigmoid(x) - mx.exp(-mx.abs(y)) + 0.5


def body_arith(x, y):  # floats and integers
    return (x * y + x) - mx.maximum(x, y) * 2


def body_bool(x, y):
    return mx.logical_or(mx.logical_and(x, mx.logical_not(y)), x == y)


def body_select(x, y):  # every dtype, bool included
    return mx.where(x > y, x, y)


def body_three(x, y, z):
    return x * y + z - mx.minimum(x, z)


SHAPE_PAIRS = [
    ((), ()),                   # 0-d scalars
    ((0,), (0,)),               # empty
    ((1,), (1,)),
    ((7,), (7,)),               # odd
    ((3, 5), (3, 5)),
    ((3, 5), (5,)),             # broadcast
    ((2, 0, 3), (3,)),          # empty with broadcast
    ((), (4, 3)),               # 0-d with 2-D
    ((33, 17), (1, 17)),
    ((2, 3, 4, 5), (3, 1, 5)),  # 4-D
    ((1, 1), (1,)),
]

DTYPE_BODIES = [
    (mx.float32, body_float), (mx.float16, body_float), (mx.bfloat16, body_float),
    (mx.float32, body_arith), (mx.float16, body_arith), (mx.bfloat16, body_arith), (mx.int32, body_arith),
    (mx.bool_, body_bool),
    (mx.float32, body_select), (mx.int32, body_select), (mx.bool_, body_select), (mx.bfloat16, body_select),
]


def _id(v):
    if isinstance(v, mx.Dtype):
        return str(v).split(".")[-1]
    if callable(v):
        return v.__name__
    return str(v)


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=_id)
@pytest.mark.parametrize("dtype,body", DTYPE_BODIES, ids=_id)
def test_shapes_and_dtypes(backend, rng, dtype, body, shapes):
    k = kernel_of(body, backend)
    x, y = rand(shapes[0], dtype, rng=rng), rand(shapes[1], dtype, rng=rng)
    # body_arith's intermediates reach |12|: MLX rounds each of its ops to 16 bits, the kernel
    # computes in float32 and rounds once, so allow ~3 half-ulps at that magnitude
    atol = {mx.float16: 2e-2, mx.bfloat16: 1.25e-1}.get(dtype) if body is body_arith else None
    assert_same(k, None, x, y, atol=atol)


@pytest.mark.parametrize("shapes", [
    ((2, 1, 3, 1), (1, 4, 1, 5), (5,)),
    ((3, 1, 1), (1, 1, 4, 1), ()),
    ((1,), (2, 3, 1, 1), (2, 1, 4, 1)),
    ((2, 3, 4, 5), (2, 3, 4, 5), (1, 1, 1, 1)),
    ((0, 1, 3), (2, 1, 1, 1), (3,)),
], ids=str)
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.int32], ids=_id)
def test_broadcast_three_inputs_4d(backend, rng, dtype, shapes):
    k = kernel_of(body_three, backend)
    args = [rand(s, dtype, rng=rng) for s in shapes]
    out = assert_same(k, None, *args)
    assert out.shape == tuple(np.broadcast_shapes(*shapes))


def test_mixed_dtypes_promote_like_mlx(backend, rng):
    k = kernel_of(body_arith, backend)
    for a, b in [(mx.float16, mx.float32), (mx.bfloat16, mx.float16), (mx.int32, mx.float16),
                 (mx.int32, mx.bfloat16), (mx.bool_, mx.int32), (mx.bool_, mx.float32)]:
        x, y = rand((3, 4), a, rng=rng), rand((4,), b, rng=rng)
        assert_same(k, None, x, y)
        assert_same(k, None, y, x)


def test_non_contiguous_inputs(backend, rng):
    k = kernel_of(body_three, backend)
    base = rand((6, 8), rng=rng)
    xt = base.T                                    # transposed
    ys = rand((16, 6), rng=rng)[::2]               # strided rows
    zb = mx.broadcast_to(rand((1, 6), rng=rng), (8, 6))  # stride-0 axis
    assert_same(k, None, xt, ys, zb)
    cube = rand((3, 4, 5), mx.float16, rng=rng)
    c1, c2 = mx.swapaxes(cube, 0, 2), mx.transpose(rand((5, 3, 4), mx.float16, rng=rng), (0, 2, 1))
    assert_same(k, None, c1, c2, rand((3,), mx.float16, rng=rng))
    assert_same(kernel_of(body_float, backend), None, rand((5, 7), rng=rng).T[1:, ::2],
                rand((3, 12), rng=rng)[:, ::2].T)


# ---- Python scalars, constants, caching ------------------------------------------------------


def axpb(x, a, b):
    return a * x + b


def test_runtime_scalars_do_not_recompile(backend, rng):
    k = kernel_of(axpb, backend)
    x = rand((5, 3), rng=rng)
    assert_same(k, None, x, 2.0, 1.0)
    prog = k.program(x, 2.0, 1.0)
    assert_same(k, None, x, -3.5, 0.25)
    assert_same(k, None, x, 1e3, -7.0)
    assert k.program(x, 7.0, 8.0) is prog
    assert len(k.entries) == 1
    # another shape and broadcast pattern, same dtypes: the same program
    assert_same(k, None, rand((2, 9), rng=rng), 0.5, 4.0)
    assert k.program(rand((2, 9), rng=rng), 0.5, 4.0) is prog
    assert len(k.entries) == 1
    # the scalar is a runtime input, not a baked constant
    assert "2.0" not in prog.text() and "7.0" not in prog.text()


def test_scalar_weak_typing(backend, rng):
    k = kernel_of(axpb, backend)
    for d in (mx.float16, mx.bfloat16, mx.int32, mx.float32):
        x = rand((4,), d, rng=rng)
        assert_same(k, None, x, 2, 1)         # ints keep the array's dtype
        assert_same(k, None, x, 2.5, -1.0)    # float scalar: int arrays become float32
    assert_same(k, None, rand((4,), mx.bool_, rng=rng), 3, 1)


def leaky(x, *, slope=0.01, shift=0.0):
    return mx.where(x > 0, x, x * slope) + shift


def test_keyword_only_constants(backend, rng):
    k = kernel_of(leaky, backend)
    x = rand((6, 5), rng=rng)
    assert_same(k, None, x)
    assert_same(k, None, x, kwargs={"slope": 0.2})
    assert_same(k, None, x, kwargs={"slope": 0.3, "shift": -1.0})
    assert k.program(x) is not k.program(x, slope=0.2)
    assert k.program(x, slope=0.2) is k.program(x, slope=0.2)
    # an int and a float constant of equal value type differently (weak scalars, as in MLX)
    xi = rand((6,), mx.int32, rng=rng)
    assert_same(k, None, xi, kwargs={"slope": 2})
    assert_same(k, None, xi, kwargs={"slope": 2.0})
    assert_same(k, None, xi, kwargs={"slope": 2})


def aug_alias(x, y):
    z = x
    z += y          # MLX updates the array in place: x is z
    w = z * x
    w *= 0.5
    return w - x


def test_augmented_assignment_updates_aliases_like_mlx(backend, rng):
    k = kernel_of(aug_alias, backend)
    x, y = rand((4, 3), rng=rng), rand((3,), rng=rng)
    want = aug_alias(x + 0, y)  # the eager body mutates its first argument: give it a copy
    assert_close(k(x, y), want)
    s = to_numpy(x) + to_numpy(y)
    assert_close(want, mx.array((0.5 * s * s - s).astype(np.float32)))


def bump(v):
    v += 1.0        # updates the caller's array in place (MLX semantics)
    return v * 2.0


def aug_through_helper(x, y):
    pair = (y, x)
    b = bump(y)     # y -- and the tuple slot holding it -- now read y + 1
    first, second = pair
    return x * b + first - second


def test_augmented_assignment_in_a_helper_updates_the_callers_arrays(backend, rng):
    k = kernel_of(aug_through_helper, backend)
    x, y = rand((4, 3), rng=rng), rand((3,), rng=rng)
    want = aug_through_helper(x + 0, y + 0)  # copies: the eager body mutates y
    assert_close(k(x, y), want)
    xs, ys = to_numpy(x), to_numpy(y) + 1
    assert_close(want, mx.array((xs * ys * 2 + ys - xs).astype(np.float32)))
    # gradients: mx.vjp of the body (its in-place update traced on copies) = through the kernel
    ct = random_like(want, np.random.default_rng(3))
    got_g = mx.vjp(k, [x, y], [ct])[1]
    want_g = mx.vjp(lambda a, b: aug_through_helper(a + 0, b + 0), [x, y], [ct])[1]
    for g, h in zip(got_g, want_g):
        assert_close(g, h)


def make_scaler(c):
    def scale(x):
        return x * c + 1.0
    return scale


def test_closure_constants(backend, rng):
    x = rand((3, 4), rng=rng)
    k2, k3 = kernel_of(make_scaler(2.0), backend), kernel_of(make_scaler(3.0), backend)
    assert_same(k2, None, x)
    assert_same(k3, None, x)
    assert_close(k3(x), x * 3.0 + 1.0)


def test_closure_change_recompiles(backend, rng):
    c = 2.0

    def body(x):
        return x * c

    k = kernel_of(body, backend)
    x = rand((4,), rng=rng)
    assert_same(k, None, x)
    c = 5.0  # noqa: F841 -- read through the closure cell
    assert_same(k, None, x)
    assert_close(k(x), x * 5.0)


GLOBAL_SCALE = 2.0


def global_body(x):
    return x * GLOBAL_SCALE - math.pi


def test_global_change_recompiles(backend, rng, monkeypatch):
    k = kernel_of(global_body, backend)
    x = rand((3, 3), rng=rng)
    assert_same(k, None, x)
    p1 = k.program(x)
    monkeypatch.setattr(THIS, "GLOBAL_SCALE", -4.0)
    assert_same(k, None, x)
    assert_close(k(x), x * -4.0 - math.pi)
    assert k.program(x) is not p1
    assert k.program(x).kernel_name != p1.kernel_name


def test_dtype_signatures_cached_separately(backend, rng):
    k = kernel_of(body_arith, backend)
    x32, x16 = rand((3,), rng=rng), rand((3,), mx.float16, rng=rng)
    assert_same(k, None, x32, x32)
    assert_same(k, None, x16, x16)
    assert k.program(x32, x32) is not k.program(x16, x16)
    assert k.program(x32, x32) is k.program(rand((9, 2), rng=rng), rand((2,), rng=rng))


# ---- multiple outputs ------------------------------------------------------------------------


def two_outputs(x, y):
    return x + y, x * y


def partial_outputs(x, y):
    return x * 2.0, x + y, mx.exp(y)


def test_multiple_outputs(backend, rng):
    k = kernel_of(two_outputs, backend)
    out = assert_same(k, None, rand((4, 3), rng=rng), rand((3,), rng=rng))
    assert isinstance(out, tuple) and len(out) == 2


def test_outputs_with_different_shapes(backend, rng):
    k = kernel_of(partial_outputs, backend)
    x, y = rand((3, 1), rng=rng), rand((1, 4), mx.float16, rng=rng)
    a, b, c = assert_same(k, None, x, y)
    assert (a.shape, b.shape, c.shape) == ((3, 1), (3, 4), (1, 4))
    assert c.dtype == mx.float16


# ---- control flow --------------------------------------------------------------------------


def piecewise(x):
    if x < -1:
        y = -x
    elif x < 1:
        y = x * x
    else:
        y = 2 * x - 1
    return y


def piecewise_ref(x):
    return mx.where(x < -1, -x, mx.where(x < 1, x * x, 2 * x - 1))


def early_return(x, y):
    if x > y:
        return x - y
    z = x * y
    return z + 1


def early_return_ref(x, y):
    return mx.where(x > y, x - y, x * y + 1)


def nested_if(x, y):
    r = x
    if x > 0:
        if y > 0:
            r = x + y
        else:
            r = x - y
    else:
        r = r * 0.5
    return r


def nested_if_ref(x, y):
    return mx.where(x > 0, mx.where(y > 0, x + y, x - y), x * 0.5)


def ternary(x):
    return x if x > 0 else 0.1 * x


def ternary_ref(x):
    return mx.where(x > 0, x, 0.1 * x)


def bool_logic(x, y):
    return mx.where((x > 0 and y > 0) or not (x > -1), x, y)


def bool_logic_ref(x, y):
    return mx.where(mx.logical_or(mx.logical_and(x > 0, y > 0), mx.logical_not(x > -1)), x, y)


def chained_compare(x):
    return mx.where(-1 < x <= 1, x, 0.0)


def chained_compare_ref(x):
    return mx.where(mx.logical_and(-1 < x, x <= 1), x, 0.0)


def loop_unrolled(x):
    acc = x
    for i in range(3):
        acc = acc * x + i
    return acc


def _helper_poly(a, b=2.0):
    return a * a + b


def _helper_outer(a):
    return _helper_poly(a) - _helper_poly(a, b=-1.0) * 0.5


def with_helpers(x, y):
    return _helper_outer(x) + _helper_poly(y, 3.0)


def aug_assign(x, y):
    z = x * 1.0
    z += y
    z *= 2.0
    z -= x
    z /= 3.0
    return z


def math_constants(x):
    return x * math.pi + math.e - math.sqrt(2.0) + math.tau * 0.0


def builtins_abs_min_max(x, y):
    return abs(x) + min(x, y) * max(x, 0.5) - max(x, y, 1.0)


def builtins_ref(x, y):
    return mx.abs(x) + mx.minimum(x, y) * mx.maximum(x, 0.5) - mx.maximum(mx.maximum(x, y), 1.0)


def astype_f16(x):
    return (x * 3.0).astype(mx.float16) + 1


def astype_chain(x):
    return (x.astype(mx.int32) * 2).astype(mx.float32) + x.astype(mx.bfloat16).astype(mx.float32)


@pytest.mark.parametrize("body,ref", [
    (piecewise, piecewise_ref), (early_return, early_return_ref), (nested_if, nested_if_ref),
    (ternary, ternary_ref), (bool_logic, bool_logic_ref), (chained_compare, chained_compare_ref),
    (loop_unrolled, None), (with_helpers, None), (aug_assign, None), (math_constants, None),
    (builtins_abs_min_max, builtins_ref), (astype_f16, None), (astype_chain, None),
], ids=_id)
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=_id)
def test_language_features(backend, rng, body, ref, dtype):
    k = kernel_of(body, backend)
    n = body.__code__.co_argcount
    args = [rand((5, 7), dtype, rng=rng)] + [rand((7,), dtype, rng=rng) for _ in range(n - 1)]
    assert_same(k, ref, *args)


def test_if_is_select_not_straight_line(backend):
    """Both branches are evaluated and merged: the result depends on the condition per element."""
    k = kernel_of(piecewise, backend)
    x = mx.array([-3.0, -1.0, 0.0, 0.5, 1.0, 4.0])
    assert_close(k(x), mx.array([3.0, 1.0, 0.0, 0.25, 1.0, 7.0]))


def int_floor_ops(x, y):
    return x // y, x % y


@pytest.mark.parametrize("dtype", [mx.int32, mx.float32], ids=_id)
def test_floor_division_and_remainder_negative(backend, dtype):
    k = kernel_of(int_floor_ops, backend)
    a = np.array([-7, 7, -7, 7, -6, 6, 0, -1, 1, -9, 9, 5], dtype=np.int64)
    b = np.array([2, -2, -2, 2, 3, -3, -5, 4, -4, 10, -10, 5], dtype=np.int64)
    x, y = mx.array(a).astype(dtype), mx.array(b).astype(dtype)
    q, r = assert_same(k, None, x, y)
    # Python / NumPy floor semantics as an independent oracle (C would truncate toward zero)
    assert (to_numpy(q) == np.floor_divide(a, b)).all()
    assert (to_numpy(r) == np.mod(a, b)).all()
    assert_same(k, None, mx.array(a[:, None]).astype(dtype), mx.array(b[None, :]).astype(dtype))


def test_float_remainder_negative(backend):
    k = kernel_of(int_floor_ops, backend)
    x = mx.array([-7.5, 7.5, -0.25, 5.0, -5.0])
    y = mx.array([2.0, -2.0, 1.0, -2.5, 2.5])
    q, r = assert_same(k, None, x, y)
    assert_close(r, mx.array(np.mod(to_numpy(x), to_numpy(y)).astype(np.float32)))


# ---- kernel object -----------------------------------------------------------------------------


def test_kernel_object(backend, rng):
    k = zmlx.elementwise(body_float, backend=backend)
    assert k.__wrapped__ is body_float
    assert k.__name__ == "body_float"
    x = rand((3,), rng=rng)
    text = k.ir(x, x)
    assert text.startswith("elementwise body_float(x: float32, y: float32)")
    assert "sigmoid" in text and "return" in text
    assert isinstance(k.source(x, x, backend=backend), str)
    prog = k.program(x, x)
    assert [n.arg for n in prog.inputs] == ["x", "y"] and prog.params == () and len(prog.outputs) == 1
    assert re.fullmatch(r"body_float_[0-9a-f]{12}", prog.kernel_name)


def test_decorator_forms(rng):
    @zmlx.elementwise
    def f1(x):
        return x + 1

    @zmlx.elementwise(name="custom_name", compute_dtype=mx.float32, backend="mlx")
    def f2(x):
        return x + 1

    x = rand((4,), mx.float16, rng=rng)
    assert_same(f1, None, x)
    assert_same(f2, None, x)
    assert f2.program(x).kernel_name.startswith("custom_name_")
    assert isinstance(f1, zmlx.Kernel)


def test_kernel_names_deterministic_across_processes(tmp_path):
    script = tmp_path / "names.py"
    script.write_text(textwrap.dedent("""
        import mlx.core as mx
        import zmlx_dsl as zmlx

        @zmlx.elementwise(backend="mlx")
        def gelu_ish(x, y, s):
            return x * mx.sigmoid(1.702 * x) + y * s

        @zmlx.elementwise(backend="mlx")
        def other(x, y, s):
            return x * mx.sigmoid(1.703 * x) + y * s

        a = mx.zeros((2, 3))
        print(gelu_ish.program(a, a, 1.0).kernel_name)
        print(other.program(a, a, 1.0).kernel_name)
        print(gelu_ish.program(a.astype(mx.float16), a, 1.0).kernel_name)
    """))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        env.pop("ZMLX_DSL_BACKEND", None)
        r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert outs[0] == outs[1]
    names = outs[0]
    assert len(set(names)) == 3, names  # different bodies / dtypes -> different names
    assert re.fullmatch(r"gelu_ish_[0-9a-f]{12}", names[0])


# ---- inside MLX transformations and modules ------------------------------------------------------


def test_inside_mx_compile(backend, rng):
    skip_if_traced(backend)
    k = kernel_of(body_float, backend)
    x, y = rand((4, 5), rng=rng), rand((5,), rng=rng)
    fk = mx.compile(lambda a, b: k(a, b) * 2.0 + a)
    fb = mx.compile(lambda a, b: body_float(a, b) * 2.0 + a)
    assert_close(fk(x, y), fb(x, y))
    assert_close(fk(y, x), fb(y, x))  # another shape through the same compiled function


def test_inside_mx_vmap(backend, rng):
    skip_if_traced(backend)
    k = kernel_of(two_outputs, backend)
    x, y = rand((3, 4), rng=rng), rand((4, 3), rng=rng)
    for axes in [(0, 1), (1, 0)]:
        got = mx.vmap(k, in_axes=axes)(x if axes[0] == 0 else y.T, y if axes[1] == 1 else x.T)
        want = mx.vmap(two_outputs, in_axes=axes)(x if axes[0] == 0 else y.T, y if axes[1] == 1 else x.T)
        for g, w in zip(got, want):
            assert_close(g, w)
    z = rand((3,), rng=rng)
    got = mx.vmap(k, in_axes=(1, None))(x, z)
    want = mx.vmap(two_outputs, in_axes=(1, None))(x, z)
    for g, w in zip(got, want):
        assert_close(g, w)


def silu_body(x):
    return x * mx.sigmoid(x)


class _MLP(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.l1 = nn.Linear(6, 8)
        self.l2 = nn.Linear(8, 3)
        self.act = act

    def __call__(self, x):
        return self.l2(self.act(self.l1(x)))


def test_inside_nn_module(backend, rng):
    mx.random.seed(3)
    m_kernel = _MLP(kernel_of(silu_body, backend))
    m_ref = _MLP(silu_body)
    m_ref.update(m_kernel.parameters())
    x = rand((5, 6), rng=rng)
    assert_close(m_kernel(x), m_ref(x))


# ---- backend choice ---------------------------------------------------------------------------


def test_backend_env_var(clean_backend_env, rng):
    from zmlx_dsl import backend as backends

    k = zmlx.elementwise(silu_body)  # no backend named: chosen at call time
    x = rand((4,), rng=rng)
    clean_backend_env.setenv("ZMLX_DSL_BACKEND", "mlx")
    assert backends.default() == "mlx"
    assert_same(k, None, x)
    assert "mlx" in k.entries[next(iter(k.entries))].compiled
    # a forced backend is honoured even where it cannot run: no silent fallback to another one
    if not mx.metal.is_available():
        clean_backend_env.setenv("ZMLX_DSL_BACKEND", "metal")
        assert backends.default() == "metal"
        with pytest.raises(Exception):
            mx.eval(zmlx.elementwise(silu_body)(x))
    clean_backend_env.setenv("ZMLX_DSL_BACKEND", "no-such-backend")
    with pytest.raises(zmlx.ZMLXBackendError, match="no-such-backend"):
        k(x)
    # an explicit backend= wins over the environment
    kk = zmlx.elementwise(silu_body, backend="mlx")
    assert_same(kk, None, x)


def test_default_backend_without_env(clean_backend_env):
    from zmlx_dsl import backend as backends
    want = "metal" if mx.metal.is_available() else "cuda" if mx.cuda.is_available() else "mlx"
    assert backends.default() == want


def one_sided_then_unused(x, y):
    if y > 0.0:
        if x > 0.0:
            b = x          # b is assigned on one side only, and never read afterwards
        a = x * 2.0
    else:
        b = y
        a = y
    return a


def constant_and_sum(x, y):
    return mx.maximum(1.5 * 1.5, 0.5 + 2.0), x + y


def test_a_name_assigned_on_one_side_and_never_read_is_fine(backend, rng):
    k = kernel_of(one_sided_then_unused, backend)
    x, y = rand((7,), rng=rng), rand((7,), rng=rng)
    assert_close(k(x, y), mx.where(y > 0, x * 2.0, y))


def test_an_output_that_reads_no_array_is_a_0d_array(backend):
    """mx.maximum(2.25, 2.5) is a 0-d array in MLX; the kernel returns the same on every backend."""
    assert_same(kernel_of(constant_and_sum, backend), constant_and_sum, mx.array([1.0, 2.0]), mx.array([3.0, 4.0]))
