"""Elementwise broadcasting on the Metal launch path: inputs broadcast along trailing dims
(a (D,) weight), leading dims (a (B, 1) column), irregularly (stride-0 views) and size-1, with
contiguous and with non-contiguous (padded-pitch) memory layouts, against the body in MLX."""
import mlx.core as mx
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.backend.metal_sim.compiler import find_compiler

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="metal-sim needs a C++ compiler (zig or clang)")

CASES = [  # (x, w, b): suffix, prefix, irregular, scalar and full operands
    ((3, 5, 8), (8,), (3, 1, 1)),
    ((3, 5, 8), (1, 8), (3, 5, 1)),
    ((4, 6), (6,), (4, 1)),
    ((4, 6), (4, 6), (1, 6)),
    ((3, 5, 7), (7,), (5, 1)),
    ((6,), (1,), (6,)),
    ((2, 9), (1, 1), (9,)),
]


def axpb(x, w, b, a):
    return mx.erf(x) * w + b * a


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "padded-pitch"])
@pytest.mark.parametrize("xs,ws,bs", CASES)
def test_broadcast_modes_match_mlx(xs, ws, bs, strided, monkeypatch):
    monkeypatch.setenv("ZMLX_METAL_SIM_STRIDED", "1" if strided else "0")
    k = zmlx.elementwise(axpb, backend="metal-sim")  # a fresh kernel: the layout option applies
    x, w, b = (mx.random.normal(s) for s in (xs, ws, bs))
    got, want = k(x, w, b, 1.5), axpb(x, w, b, 1.5)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert mx.allclose(got, want, atol=1e-5).item()
    ct = mx.random.normal(want.shape)
    g_got = mx.vjp(lambda *a: k(*a, 1.5), [x, w, b], [ct])[1]
    g_want = mx.vjp(lambda *a: axpb(*a, 1.5), [x, w, b], [ct])[1]
    for g, h in zip(g_got, g_want):
        assert g.shape == h.shape and mx.allclose(g, h, atol=1e-4).item()


def test_trailing_and_leading_broadcasts_take_the_vector_path():
    src = zmlx.elementwise(axpb).source(mx.ones((4, 64)), mx.ones((64,)), mx.ones((4, 1)), 1.0, backend="metal")
    assert "w[(first + c * 1024 + k) % w_size]" in src and "b[(first + c * 1024 + k) / b_run]" in src
    assert "x_v[c] = *(const device vec<float, 4>*)(x + first + c * 1024);" in src
