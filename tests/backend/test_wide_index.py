"""64-bit indexing (arrays of >= 2**31 elements): the plan switches index arithmetic to size_t.
Such arrays do not fit a test, so the wide variant is rendered for small inputs and run on
metal-sim, where it must give the same answer as the 32-bit one."""
import mlx.core as mx
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.backend import plan as plans
from zmlx_dsl.backend.metal_sim.compiler import find_compiler

pytestmark = pytest.mark.skipif(find_compiler() is None, reason="metal-sim needs a C++ compiler (zig or clang)")


def gate(x, w):
    return x * mx.sigmoid(w)


def rms(x, w):
    return x * mx.rsqrt(mx.mean(x * x) + 1e-5) * w


@pytest.fixture
def wide_plans(monkeypatch):
    """Every plan made from now on claims 64-bit indexing."""
    monkeypatch.setattr(plans, "WIDE_INDEX_ELEMENTS", 0)


def test_wide_elementwise_source_and_values(wide_plans):
    k = zmlx.elementwise(gate, backend="metal-sim")
    x, w = mx.random.normal((5, 67)), mx.random.normal((67,))
    src = k.source(x, w, backend="metal")
    assert "const size_t n =" in src and "const size_t base" in src
    assert mx.allclose(k(x, w), gate(x, w), atol=1e-6).item()


def test_wide_row_source_and_values(wide_plans):
    k = zmlx.map_reduce(rms, backend="metal-sim")
    x, w = mx.random.normal((6, 300)), mx.random.normal((300,))
    assert "const size_t row =" in k.source(x, w, backend="metal")
    assert mx.allclose(k(x, w), mx.fast.rms_norm(x, w, 1e-5), atol=1e-5).item()
