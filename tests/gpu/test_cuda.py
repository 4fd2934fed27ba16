"""The suite's kernels on the CUDA backend against the portable backend and MLX (skipped without CUDA)."""
import mlx.core as mx
import pytest

import zmlx_dsl as zmlx

pytestmark = pytest.mark.skipif(not mx.cuda.is_available(), reason="needs MLX's CUDA backend (a GPU)")


def _silu(x):
    return x * mx.sigmoid(x)


def _mix(x, y, a):
    if x > 0:
        z = mx.erf(x) * a
    else:
        z = mx.expm1(y) - x
    return z, mx.logaddexp(x, y)


def _softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def _rms(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 1000), (4, 5, 33)])
def test_elementwise_cuda(dtype, shape):
    x = mx.random.normal(shape).astype(dtype)
    k = zmlx.elementwise(_silu, backend="cuda")
    ref = zmlx.elementwise(_silu, backend="mlx")
    assert mx.allclose(k(x), ref(x), atol=1e-2 if dtype != mx.float32 else 1e-6).item()
    assert k(x).dtype == dtype and k(x).shape == shape


def test_broadcast_strided_multi_output_cuda():
    x = mx.random.normal((6, 5)).T
    y = mx.random.normal((5, 1))
    k = zmlx.elementwise(_mix, backend="cuda")
    ref = zmlx.elementwise(_mix, backend="mlx")
    for a, b in zip(k(x, y, 1.5), ref(x, y, 1.5)):
        assert a.shape == b.shape and mx.allclose(a, b, atol=1e-5).item()
    g = mx.grad(lambda u: (k(u, y, 1.5)[0] * u).sum())(x)
    gr = mx.grad(lambda u: (ref(u, y, 1.5)[0] * u).sum())(x)
    assert mx.allclose(g, gr, atol=1e-5).item()


@pytest.mark.parametrize("rows", [3, 8])
@pytest.mark.parametrize("D", [1, 7, 32, 33, 1000, 4096, 10000, 32768])
def test_rows_cuda(D, rows):
    x = mx.random.normal((rows, D))
    w = mx.random.normal((D,))
    sm = zmlx.map_reduce(_softmax, backend="cuda")
    rms = zmlx.map_reduce(_rms, backend="cuda")
    assert mx.allclose(sm(x), mx.softmax(x, axis=-1), atol=1e-6).item()
    assert mx.allclose(rms(x, w, 1e-5), mx.fast.rms_norm(x, w, 1e-5), atol=1e-4).item()
    ct = mx.random.normal(x.shape)
    got = mx.vjp(sm, [x], [ct])[1][0]
    want = mx.vjp(lambda z: mx.softmax(z, axis=-1), [x], [ct])[1][0]
    assert mx.allclose(got, want, atol=1e-5).item()


def _count_and_range(x):
    return (x * 2 > 1).sum(), x.max() - x.min()


@pytest.mark.parametrize("D", [33, 300, 4096, 32768])
def test_bool_sums_and_nan_rows_cuda(D):
    """int32 sums of comparisons, and a NaN anywhere in a row making its max/min NaN, as in MLX."""
    x = mx.random.normal((3, D))
    x = mx.concatenate([x[:1], mx.where(mx.arange(D) == D - 3, float("nan"), x[1:2]), x[2:]])
    k = zmlx.reduce(_count_and_range, backend="cuda")
    ref = zmlx.reduce(_count_and_range, backend="mlx")
    for a, b in zip(k(x), ref(x)):
        assert a.dtype == b.dtype and mx.allclose(a, b, equal_nan=True).item()
    assert mx.isnan(k(x)[1][1]).item()
