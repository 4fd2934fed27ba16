"""The classes of silently wrong generated code, each pinned by its reproducer and by what covers
the class: per-row values nested in arithmetic (and their gradients), integer row reductions
longer than a simdgroup, grids past MLX's 32-bit launch size (the loop form run on metal-sim with
the limit lowered, the real sizes checked statically), strided offsets (signed 64-bit), constants
(MLX's value or MLX's error, exact texts), integer `//` and `%` at 0 and -1, MLX calls on Python
scalars typed strongly, `.T`, and renders that do not depend on other threads."""
from __future__ import annotations

import inspect
import threading

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.backend import plan as plans
from zmlx_dsl.backend.metal import RENDERER as METAL
from zmlx_dsl.backend.launch import Launcher
from conftest import BACKENDS, GRAD_BACKENDS, HAVE_METAL_SIM, assert_close, assert_grads, kernel_of

FILE = inspect.getsourcefile(lambda: None)
needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or `ziglang`")


def located(fn, snippet: str, message: str) -> str:
    """The full text of an error located at `snippet` on its line of fn's source."""
    lines, first = inspect.getsourcelines(fn)
    i, line = next((i, line) for i, line in enumerate(lines) if snippet in line)
    col = line.index(snippet) + 1
    return f"{FILE}:{first + i}:{col}: {message}\n    {line.rstrip()}\n    {' ' * (col - 1)}^"


def per_row(rows_fn):
    """rows_fn applied to each row (the reference for a row kernel), stacked."""
    return lambda x, *rest: mx.stack([rows_fn(x[i], *rest) for i in range(x.shape[0])])


# ---- 1. per-row values nested in arithmetic ------------------------------------------------------

def nested_mean(x):
    v = mx.mean(x * x) + 1.0
    return mx.sum(x * mx.rsqrt(v)) / v


def centred_scaled(x, eps):
    return (x - mx.mean(x)) * mx.rsqrt(mx.mean(x * x) + eps)


def group_norm_moments(x, w):
    m = mx.mean(x)
    var = mx.mean(x * x) - m * m
    return (x - m) * mx.rsqrt(var + 1e-5) * w


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_per_row_value(backend):
    x = mx.array(np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32))
    got = kernel_of(nested_mean, backend, "reduce")(x)
    assert_close(got, per_row(nested_mean)(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
@pytest.mark.parametrize("D", [5, 64, 1000])
def test_nested_per_row_gradients(backend, D):
    rng = np.random.default_rng(D)
    x = mx.array(rng.normal(size=(3, D)).astype(np.float32))
    w = mx.array(rng.normal(size=(D,)).astype(np.float32))
    k = kernel_of(centred_scaled, backend, "map_reduce")
    assert_grads(k, per_row(centred_scaled), x, 1e-6, atol=1e-4, rtol=1e-4)
    k = kernel_of(group_norm_moments, backend, "map_reduce")
    assert_grads(k, per_row(group_norm_moments), x, w, atol=1e-4, rtol=1e-4)


def test_rendered_per_row_value_keeps_its_brackets():
    text = zmlx.reduce(nested_mean).source(mx.zeros((4, 64)), backend="metal")
    assert "out0[row] = sum2_0 / (sum1_0 / 64.0f + 1.0f);" in text


# ---- 2. integer row reductions ---------------------------------------------------------------------

def row_max(x):
    return x.max()


def row_min(x):
    return x.min()


def row_sum(x):
    return x.sum()


INTEGER_ROWS = [
    (row_max, [[0] * 256 + [16777217]], mx.int32),
    (row_sum, [[1_000_001] * 257], mx.int32),
    (row_sum, [[2**33 + 1] * 300, [-(2**40)] * 299 + [7]], mx.int64),
    (row_min, [[0] * 300 + [-(2**40) - 1]], mx.int64),
    (row_max, [[2**62 + 1] + [2**62] * 999], mx.int64),
    (row_sum, [[2**31 + 3] * 300], mx.uint32),     # wraps, as MLX's uint32 sum does
    (row_max, [[2**32 - 1] + [0] * 4095], mx.uint32),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn,rows,dtype", INTEGER_ROWS, ids=lambda v: getattr(v, "__name__", str(v))[:12])
def test_integer_rows_exact(backend, fn, rows, dtype):
    x = mx.array(rows, dtype)
    got, want = kernel_of(fn, backend, "reduce")(x), per_row(fn)(x)
    assert got.dtype == want.dtype and np.array(got).tolist() == np.array(want).tolist()


def test_integer_partials_meet_in_their_own_type():
    text = zmlx.reduce(row_sum).source(mx.zeros((2, 1000), mx.int64), backend="metal")
    assert "threadgroup long zmlx_scratch_int64[32];" in text and "float(" not in text
    assert "as_type<uint2>" in text  # Metal's simd collectives take 32-bit types


# ---- 3. grids larger than one launch ---------------------------------------------------------------

def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def sum_times_max(x, y):
    return (x * y).sum() * x.max()


def silu_shift(x, y):
    return x * mx.sigmoid(x) + y


def test_launch_plans_for_more_rows_than_a_grid():
    """2**27 + 8 rows of 1 (rows x 32 threads wrapped the grid) and 2**26 rows of 100."""
    k = zmlx.map_reduce(softmax, backend="metal")
    for shape in [(2**27 + 8, 1), (2**26, 100)]:
        launcher = Launcher(k.program(mx.zeros((1, shape[1]))), METAL, None, "metal")
        _, plan = launcher.row_plan([mx.zeros(shape)])
        assert plan.grid_stride and plan.grid[0] <= 2**31 - 1
        assert plan.grid[0] == plans.grid_groups(shape[0] // plan.rows_per_group, plan.group_threads) * plan.group_threads
        text = METAL.row(launcher.program, plan)[1]
        idx = "size_t" if plan.wide_index else "uint"
        assert f"for ({idx} group = {METAL.index('threadgroup_position_in_grid.x', idx)}; group < ngroups; " \
               f"group += {METAL.index('threadgroups_per_grid.x', idx)}) {{" in text
        assert ("threadgroup_barrier" in text) == (plan.threads > 32)  # shared memory is reused per row
    small = Launcher(k.program(mx.zeros((1, 100))), METAL, None, "metal")
    plan = small.row_plan([mx.zeros((2**20, 100))])[1]
    assert not plan.grid_stride and plan.grid[0] == 2**20 * plan.threads
    e = zmlx.elementwise(silu_shift, backend="metal")
    big = (2**25, 2**10)  # 2**35 elements: 2**32 threads moving 8 floats each
    _, plan = plans.elementwise_plan(e.program(mx.zeros((1, 1)), mx.zeros((1,))),
                                     [mx.zeros(big), mx.zeros(big[-1:])], big)
    assert plan.grid_stride and plan.wide_index and plan.grid[0] <= 2**31 - 1


@needs_sim
@pytest.mark.parametrize("shape", [(40, 1), (40, 100), (24, 1000), (16, 5), (9, 3)])
def test_rows_loop_over_a_grid_too_small(monkeypatch, shape):
    monkeypatch.setattr(plans, "MAX_GRID_THREADS", 64 * 3)
    rng = np.random.default_rng(shape[0])
    x = mx.array(rng.normal(size=shape).astype(np.float32))
    y = mx.array(rng.normal(size=shape[-1:]).astype(np.float32))
    assert_close(zmlx.map_reduce(softmax, backend="metal-sim")(x), per_row(softmax)(x), atol=1e-6, rtol=1e-5)
    got = zmlx.reduce(sum_times_max, backend="metal-sim")(x, y)
    assert_close(got, per_row(sum_times_max)(x, y), atol=1e-4, rtol=1e-5)
    serial = zmlx.api.reduce(init="0.0f", update="acc * 0.5f + v", name="ema", backend="metal-sim")
    want = np.zeros(shape[0], np.float32)
    for j in range(shape[1]):
        want = want * 0.5 + np.array(x)[:, j]
    assert_close(serial(x), mx.array(want), atol=1e-5, rtol=1e-5)


@needs_sim
@pytest.mark.parametrize("shape", [(40, 1), (4000, 10), (24, 1000)])
def test_elementwise_loops_over_a_grid_too_small(monkeypatch, shape):
    monkeypatch.setattr(plans, "MAX_GRID_THREADS", 256 * 3)
    x = mx.array(np.random.default_rng(1).normal(size=shape).astype(np.float32))
    y = mx.ones(shape[-1:])
    k = zmlx.elementwise(silu_shift, backend="metal-sim")
    assert_close(k(x, y), silu_shift(x, y))
    assert_close(k(x.T, y[:1]), silu_shift(x.T, y[:1]))  # the strided path


# ---- 4. strided offsets ----------------------------------------------------------------------------

def test_strided_offsets_are_signed_64_bit():
    for backend, off in [("metal", "long"), ("cuda", "int64_t")]:
        text = zmlx.elementwise(silu_shift).source(mx.zeros((3, 4)), mx.zeros((4,)), backend=backend)
        assert f"{off} zmlx_loc(I index, const S& shape, const St& strides, int ndim)" in text
        assert f"loc += {off}(index % I(shape[d])) * {off}(strides[d]);" in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_stride_views(backend):
    x = mx.arange(12).astype(mx.float32).reshape(3, 4)
    k = zmlx.elementwise(silu_shift, backend=backend)
    for v in [x[::-1], x[:, ::-1], x[::-1, ::-2], x.T[::-1]]:
        assert_close(k(v, mx.ones(v.shape)), silu_shift(v, mx.ones(v.shape)))


# ---- 5. constants and integer edge cases -----------------------------------------------------------

def plus_huge(x):
    return x + 1e39


def scaled_past_f16(x):
    return x * 70000.0 * 1e-4


def plus_big_int(x):
    return x + 2**40


def add_k(x, k):
    return x + k


def floor_div_mod(x, y):
    return x // y, x % y


@pytest.mark.parametrize("backend", BACKENDS)
def test_constants_hold_mlx_values(backend):
    for fn, x in [(plus_huge, mx.ones((3,))), (scaled_past_f16, mx.ones((3,), mx.float16))]:
        got, want = kernel_of(fn, backend)(x), fn(x)
        assert got.dtype == want.dtype and np.array(got).tolist() == np.array(want).tolist()  # inf
    assert "INFINITY" in zmlx.elementwise(plus_huge).source(mx.ones((3,)), backend="metal")


def test_integer_constant_out_of_range():
    with pytest.raises(ValueError):  # MLX's own behaviour
        plus_big_int(mx.ones((3,), mx.int32))
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.elementwise(plus_big_int, backend="mlx")(mx.ones((3,), mx.int32))
    assert str(e.value) == located(plus_big_int, "x + 2**40", (
        "the constant 1099511627776 does not fit int32, the type it takes beside an array of int32 (MLX "
        "raises 'Converting 1099511627776 to int32 would result in overflow'); write it as a float, or "
        "cast the array (e.g. .astype(mx.int64))"))


@pytest.mark.parametrize("x,k,lo,hi", [(mx.ones((3,), mx.int32), 2**40, -2**31, 2**31 - 1),
                                       (mx.ones((3,), mx.uint32), -3, 0, 2**31 - 1)])
def test_integer_argument_out_of_range(x, k, lo, hi):
    with pytest.raises(ValueError):  # MLX's own behaviour
        add_k(x, k)
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.elementwise(add_k, backend="mlx")(x, k)
    assert str(e.value) == (
        f"add_k(): argument 'k' = {k} does not fit the integer type it takes in the kernel ({lo} to {hi}; "
        f"MLX raises 'Converting {k} ... would result in overflow'); pass a value in that range, or an "
        "mx.array of the type you mean")
    assert np.array(zmlx.elementwise(add_k, backend="mlx")(x, 5)).tolist() == [6, 6, 6]


INT_DIVISIONS = [
    (mx.array([5, -5, 7, 0, -7, 9], mx.int32), mx.array([0, 0, -1, 0, 2, -4], mx.int32)),
    (mx.array([5, 7, 2**32 - 1, 8], mx.uint32), mx.array([0, 2**32 - 1, 2**32 - 1, 3], mx.uint32)),
    (mx.array([5, 9, -(2**40)], mx.int64), mx.array([0, -1, 3], mx.int64)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x,y", INT_DIVISIONS)
def test_integer_division_edges_as_mlx(backend, x, y):
    got, want = kernel_of(floor_div_mod, backend)(x, y), floor_div_mod(x, y)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array(g).tolist() == np.array(w).tolist()


@needs_sim
def test_most_negative_by_minus_one_wraps():
    """MLX's CPU faults on INT_MIN // -1 (and % -1); kernels define them: the wrapped quotient, 0."""
    k = zmlx.elementwise(floor_div_mod, backend="metal-sim")
    for d, lo in [(mx.int32, -2**31), (mx.int64, -2**63)]:
        q, r = k(mx.array([lo, lo], d), mx.array([-1, 1], d))
        assert np.array(q).tolist() == [lo, lo] and np.array(r).tolist() == [0, 0]


# ---- 6. frontend typing and shapes -----------------------------------------------------------------

def where_of_scalars(b):
    return b + mx.where(False, 1.0, 2.0)


def exp_of_scalar(b):
    return b * mx.exp(0.5)


def transposed(x):
    return x.T * 2


def row_transposed(x):
    return x.T - x.max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlx_calls_on_scalars_are_strong(backend):
    b = mx.array([1.0, 2.0], mx.bfloat16)
    for fn in (where_of_scalars, exp_of_scalar):
        got, want = kernel_of(fn, backend)(b), fn(b)
        assert got.dtype == want.dtype == mx.float32
        assert_close(got, want)


def test_transpose_in_elementwise_body():
    with pytest.raises(zmlx.ZMLXSyntaxError) as e:
        zmlx.elementwise(transposed, backend="mlx")(mx.ones((2, 3)))
    assert str(e.value) == located(transposed, "x.T", (
        "'.T' transposes the array, which an elementwise kernel cannot do (the body sees one element); "
        "pass the transposed array instead (kernel(x.T))"))
    x = mx.array(np.random.default_rng(2).normal(size=(3, 7)).astype(np.float32))
    assert_close(zmlx.map_reduce(row_transposed, backend="mlx")(x), per_row(row_transposed)(x))


# ---- 7. renders are per call -----------------------------------------------------------------------

def test_renders_from_threads_agree():
    k = zmlx.map_reduce(group_norm_moments)
    args = (mx.zeros((4, 1000)), mx.zeros((1000,)))
    want = k.grad_source(*args, backend="metal")
    texts, errors = [], []

    def work():
        try:
            for _ in range(40):
                texts.append(k.grad_source(*args, backend="metal"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(texts) == 320 and all(t == want for t in texts)
