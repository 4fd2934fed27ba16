"""The silently-wrong classes on a real GPU (CUDA backend; skipped without CUDA): nested per-row
values with gradients, integer rows past a warp, launches past the 32-bit grid (at full size and
with the limit lowered), MLX's real strided views (negative strides), integer // and % edges and
constants beyond a dtype's range."""
import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.backend import plan as plans

pytestmark = pytest.mark.skipif(not mx.cuda.is_available(), reason="needs MLX's CUDA backend (a GPU)")


def per_row(fn):
    return lambda x, *rest: mx.stack([fn(x[i], *rest) for i in range(x.shape[0])])


def nested(x):
    v = mx.mean(x * x) + 1.0
    return mx.sum(x * mx.rsqrt(v)) / v


def moments_norm(x, w):
    m = mx.mean(x)
    var = mx.mean(x * x) - m * m
    return (x - m) * mx.rsqrt(var + 1e-5) * w


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def row_sum(x):
    return x.sum()


def row_max(x):
    return x.max()


def row_min(x):
    return x.min()


def shift(x, y):
    return x * 2.0 + y


def divmod_(x, y):
    return x // y, x % y


def close(a, b, tol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape and np.allclose(a, b, atol=tol, rtol=tol), np.abs(a - b).max()


@pytest.mark.parametrize("D", [5, 64, 1000, 5000])
def test_nested_per_row_values_and_gradients(D):
    rng = np.random.default_rng(D)
    x = mx.array(rng.normal(size=(6, D)).astype(np.float32))
    w = mx.array(rng.normal(size=(D,)).astype(np.float32))
    close(zmlx.reduce(nested, backend="cuda")(x), per_row(nested)(x))
    k = zmlx.map_reduce(moments_norm, backend="cuda")
    ct = mx.array(rng.normal(size=(6, D)).astype(np.float32))
    got = mx.vjp(lambda a, b: k(a, b), [x, w], [ct])[1]
    want = mx.vjp(per_row(moments_norm), [x, w], [ct])[1]
    for g, h in zip(got, want):
        close(g, h, 1e-3)


@pytest.mark.parametrize("fn,rows,dtype", [
    (row_max, [[0] * 256 + [16777217]], mx.int32), (row_sum, [[1_000_001] * 257], mx.int32),
    (row_sum, [[2**33 + 1] * 300], mx.int64), (row_min, [[0] * 4000 + [-(2**40) - 1]], mx.int64),
    (row_sum, [[2**31 + 3] * 300], mx.uint32)])
def test_integer_rows(fn, rows, dtype):
    x = mx.array(rows, dtype)
    got, want = zmlx.reduce(fn, backend="cuda")(x), per_row(fn)(x)
    assert got.dtype == want.dtype and np.array(got).tolist() == np.array(want).tolist()


def test_rows_past_the_grid_at_full_size():
    """2**27 + 8 rows of one element: rows x 32 threads is past 2**31 - 1 (all but 8 were lost)."""
    x = mx.random.normal((2**27 + 8, 1))
    got = zmlx.map_reduce(softmax, backend="cuda")(x)
    mx.eval(got)
    assert bool(mx.all(got == 1.0).item())
    last = x[-1000:]
    close(zmlx.reduce(row_max, backend="cuda")(x)[-1000:], last[:, 0])


@pytest.mark.parametrize("shape", [(40, 1), (40, 100), (24, 1000), (9, 3)])
def test_grid_stride_loops_with_a_lowered_limit(monkeypatch, shape):
    monkeypatch.setattr(plans, "MAX_GRID_THREADS", 64 * 3)
    x = mx.array(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    close(zmlx.map_reduce(softmax, backend="cuda")(x), per_row(softmax)(x), 1e-5)
    close(zmlx.reduce(nested, backend="cuda")(x), per_row(nested)(x))
    monkeypatch.setattr(plans, "MAX_GRID_THREADS", 256 * 3)
    y = mx.ones(shape[-1:])
    close(zmlx.elementwise(shift, backend="cuda")(x, y), shift(x, y))


def test_negative_stride_views():
    x = mx.arange(60).astype(mx.float32).reshape(5, 4, 3)
    k = zmlx.elementwise(shift, backend="cuda")
    for v in [x[::-1], x[:, ::-1], x[::-1, ::-2], mx.swapaxes(x, 0, 2)[::-1]]:
        close(k(v, mx.ones(v.shape)), shift(v, mx.ones(v.shape)), 0)


def test_integer_division_edges():
    x, y = mx.array([5, -5, 7, -2**31, 9], mx.int32), mx.array([0, 0, -1, -1, 2], mx.int32)
    q, r = zmlx.elementwise(divmod_, backend="cuda")(x, y)
    assert np.array(q).tolist() == [0, 0, -7, -2**31, 4] and np.array(r).tolist() == [5, -5, 0, 0, 1]


def test_constants_beyond_the_dtype():
    def huge(x):
        return x + 1e39
    assert np.isinf(np.array(zmlx.elementwise(huge, backend="cuda")(mx.ones((3,))))).all()
