"""metal-sim passes inputs as strided views when ensure_row_contiguous=False, as MLX does: the
pointer at the view's first element, x_strides signed (negative for a reversed axis, 0 for a
broadcast one). Strided offsets computed in signed 64-bit read exactly the inputs; the same
offsets computed in 32-bit unsigned arithmetic fail (a fault naming the buffer, or wrong values)."""

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import zmlx_dsl as zmlx  # noqa: E402
from zmlx_dsl.backend.metal_sim import MetalSimError, metal_kernel  # noqa: E402
from zmlx_dsl.backend.metal_sim.compiler import find_compiler  # noqa: E402
from zmlx_dsl.backend.metal_sim.kernel import _layout, _layout_option  # noqa: E402

pytestmark = pytest.mark.skipif(find_compiler() is None,
                                reason="metal-sim needs clang++-19 or the `ziglang` package (no compiler found)")

# Element i of x in row-major order, read through x_shape / x_strides.
SIGNED = """
uint i = thread_position_in_grid.x;
long idx = i, loc = 0;
for (int d = x_ndim - 1; d >= 0; --d) {
  loc += (idx % x_shape[d]) * x_strides[d];
  idx /= x_shape[d];
}
out[i] = x[loc];
"""
# The classic bug: the same arithmetic in uint (a stride of -1 becomes 2**32 - 1).
UNSIGNED = """
uint i = thread_position_in_grid.x;
uint idx = i, loc = 0;
for (int d = x_ndim - 1; d >= 0; --d) {
  loc += (idx % uint(x_shape[d])) * uint(x_strides[d]);
  idx /= uint(x_shape[d]);
}
out[i] = x[loc];
"""
SHAPES = [(8,), (3, 4), (5, 7, 3)]
VIEWS = {"x[::-1]": lambda x: x[::-1], "x[:, ::-1]": lambda x: x[:, ::-1], "x.T[::-1]": lambda x: x.T[::-1],
         "x[::-1, ::-2]": lambda x: x[::-1, ::-2], "x[1:, 2::3]": lambda x: x[1:, 2::3]}


@pytest.fixture(autouse=True)
def default_layout(monkeypatch):
    monkeypatch.delenv("ZMLX_METAL_SIM_STRIDED", raising=False)


def gather(src, x, name, **opts):
    k = metal_kernel(name, ["x"], ["out"], src, ensure_row_contiguous=False, **opts)
    (y,) = k(inputs=[x], output_shapes=[(x.size,)], output_dtypes=[x.dtype], grid=(x.size, 1, 1),
             threadgroup=(32, 1, 1))
    return np.array(y.astype(mx.float32) if y.dtype == mx.bfloat16 else y)


def arange(shape, dtype=mx.float32):
    return mx.arange(1, int(np.prod(shape)) + 1).astype(dtype).reshape(shape)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_views_layout_reverses_and_pads_axes(shape):
    """Element (i, j, ...) lies at the pointer + sum(i_d * stride_d) with signed strides; the
    innermost axis is stored reversed, so the pointer is not at the storage start."""
    x = arange(shape)
    data, offset, strides = _layout(x, "views")
    assert strides[-1] == -1 and offset > 0
    if len(shape) > 1:
        assert strides[-2] > shape[-1]  # padded rows: the view spans more storage than it has elements
    if len(shape) > 2:
        assert strides[-3] < 0
    storage = np.frombuffer(data, np.float32)
    assert np.isnan(storage).sum() == storage.size - x.size  # the gaps hold poison
    xn = np.array(x)
    for idx in np.ndindex(*shape):
        assert storage[offset // 4 + sum(i * s for i, s in zip(idx, strides))] == xn[idx]


def test_views_layout_keeps_broadcast_strides_and_the_view_order():
    a = arange((3, 4))
    assert _layout(mx.broadcast_to(mx.arange(4.0), (3, 4)), "views")[2] == [0, -1]
    assert _layout(mx.broadcast_to(mx.arange(3.0)[:, None], (3, 4)), "views")[2] == [-1, 0]
    assert _layout(a.T, "views")[2] == [-1, 7]  # a transpose stays column-major
    # "mlx": exactly the view MLX passes
    assert _layout(a[::-1], "mlx")[1:] == (8 * 4, [-4, 1])
    assert _layout(a[::2, ::-3], "mlx")[1:] == (3 * 4, [8, -3])
    assert _layout(mx.broadcast_to(mx.arange(4.0), (3, 4)), "mlx")[1:] == (0, [0, 1])


def test_layout_option(monkeypatch):
    assert [_layout_option(v) for v in (None, True, False, "views", "mlx", "contiguous", "padded")] == [
        "views", "padded", "contiguous", "views", "mlx", "contiguous", "padded"]
    with pytest.raises(ValueError, match="strided_inputs must be"):
        _layout_option("reversed")
    for env, want in (("1", "padded"), ("0", "contiguous"), ("MLX", "mlx"), ("", "views")):
        monkeypatch.setenv("ZMLX_METAL_SIM_STRIDED", env)
        assert _layout_option(None) == want
    monkeypatch.setenv("ZMLX_METAL_SIM_STRIDED", "2")
    with pytest.raises(ValueError, match=r"\$ZMLX_METAL_SIM_STRIDED must be"):
        _layout_option(None)


def test_views_is_the_default_and_passes_pointer_offsets():
    x = arange((3, 4))
    k = metal_kernel("default_views", ["x"], ["out"], SIGNED, ensure_row_contiguous=False)
    assert k.layout == "views"
    runs = k._runs([x], [])
    assert [r["why"] for r in runs] == ["", "views", "views"]
    assert runs[0]["buffers"][0][2] == 0  # as given: a contiguous array
    name, data, offset, itemsize, _ = runs[1]["buffers"][0]
    assert (name, offset, itemsize) == ("x", 3 * 4, 4)
    assert list(np.frombuffer(runs[1]["buffers"][2][1], np.int64)) == [7, -1]  # x_strides
    assert [r["buffers"][0][4] for r in runs] == [False, False, True]  # storage against each guard page
    assert metal_kernel("rc", ["x"], ["out"], SIGNED).layout == "contiguous"


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int32], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_signed_64bit_offsets_read_exactly_the_input(shape, dtype):
    x = arange(shape, dtype)
    for layout in ("views", "mlx"):
        np.testing.assert_array_equal(gather(SIGNED, x, "signed", strided_inputs=layout),
                                      np.array(x.astype(mx.float32) if dtype == mx.bfloat16 else x).reshape(-1))


@pytest.mark.parametrize("view", list(VIEWS))
def test_signed_offsets_of_mlx_views(view):
    """The views MLX itself makes, passed as MLX passes them (strided_inputs="mlx") and as the default."""
    v = VIEWS[view](arange((5, 7)))
    for layout in ("mlx", "views"):
        np.testing.assert_array_equal(gather(SIGNED, v, "signed_view", strided_inputs=layout),
                                      np.array(v).reshape(-1))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unsigned_offsets_fail_on_a_reversed_axis(shape):
    x = arange(shape)
    want = np.array(x).reshape(-1)
    # contiguous inputs hide the bug ...
    np.testing.assert_array_equal(gather(UNSIGNED, x, "unsigned", strided_inputs="contiguous"), want)
    # ... strided views expose it
    for layout in ("views", "mlx"):
        v = x if layout == "views" else x[::-1]
        try:
            got = gather(UNSIGNED, v, "unsigned", strided_inputs=layout)
        except MetalSimError as e:
            msg = str(e)
            assert ("out-of-bounds read of buffer `x`" in msg or "strided views" in msg
                    or "segmentation fault" in msg), msg
        else:
            assert not np.array_equal(got, np.array(v).reshape(-1), equal_nan=True)


def test_unsigned_wraparound_is_named():
    """A uint offset of -k reads element 2**32 - k: reported as a wrapped negative offset of `x`
    when that address faults (else it reads whatever is mapped there: wrong values)."""
    try:
        gather(UNSIGNED, arange((64,))[::-1], "unsigned_1d", strided_inputs="mlx")
    except MetalSimError as e:
        msg = str(e)
        if "segmentation fault at address" not in msg:
            assert "out-of-bounds read of buffer `x` at byte offset 17179869180 from its pointer, 2**32 " \
                   "elements past byte offset -4, which is inside its storage: a negative offset" in msg, msg
    else:
        pytest.fail("a wrapped 32-bit offset read the right values")


@pytest.mark.parametrize("layout", ["views", "mlx"])
def test_reads_past_either_end_of_a_view_fault(layout):
    """Beyond the view's extent on a reversed axis is below the storage start (or past its end):
    the runs with the storage against its leading (trailing) guard page catch it, naming the
    buffer and the offset from the kernel's pointer."""
    x = arange((4,)) if layout == "views" else arange((4,))[::-1]
    below = SIGNED.replace("out[i] = x[loc];", "out[i] = x[loc - (i == 0 ? 4 : 0)];")
    with pytest.raises(MetalSimError, match=r"out-of-bounds read of buffer `x` at byte offset -16 from its pointer "
                                            r"\(`x` is a strided view: its storage spans byte offsets -12 to 4 of "
                                            r"the pointer, which points at the view's first element\) by "
                                            r"thread_position_in_grid \(0, 0, 0\)"):
        gather(below, x, "below_start", strided_inputs=layout)
    past = SIGNED.replace("out[i] = x[loc];", "out[i] = x[loc - (i == 0 ? x_strides[0] : 0)];")
    with pytest.raises(MetalSimError, match=r"out-of-bounds read of buffer `x` at byte offset 4 from its pointer"):
        gather(past, x, "past_end", strided_inputs=layout)


def test_default_runs():
    x = arange((3, 4))
    k = metal_kernel("runs", ["x"], ["out"], SIGNED, ensure_row_contiguous=False)
    assert [r["why"] for r in k._runs([x], [])] == ["", "views", "views"]  # x as given: no negative stride
    assert [r["why"] for r in k._runs([x[::-1]], [])] == ["", "", "views", "views"]
    assert [r["why"] for r in k._runs([mx.array(1.0)], [])] == [""]
    k = metal_kernel("runs", ["x"], ["out"], SIGNED, ensure_row_contiguous=False, race_check=True)
    assert [r["why"] for r in k._runs([x], [])] == ["", "views", "views", "race"]


def test_contiguity_assumption_is_reported_as_a_layout_difference():
    with pytest.raises(MetalSimError, match=r"for the inputs as given but .* for the same inputs passed as other "
                                            r"strided views"):
        gather("uint i = thread_position_in_grid.x; out[i] = x[i] + x_strides[0] * 0;", arange((6, 5)), "assumes")


def axpb(x, y):
    return x * 2.0 + y


@pytest.mark.parametrize("view", ["x[::-1]", "x[:, ::-1]", "x.T[::-1]", "x[::-1, ::-2]"])
@pytest.mark.parametrize("shape", [(3, 4), (5, 7, 3)], ids=str)
def test_elementwise_on_strided_views(shape, view):
    """The generated kernel reads strided inputs through zmlx_loc (signed 64-bit offsets)."""
    v = VIEWS[view](mx.random.normal(shape, key=mx.random.key(0)))
    y = mx.random.normal(v.shape, key=mx.random.key(1))
    k = zmlx.elementwise(axpb, backend="metal-sim")
    for a, b in ((v, y), (y, v), (v, v)):
        got, want = k(a, b), axpb(a, b)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6, atol=1e-6)


def test_elementwise_on_broadcast_views():
    """An irregular broadcast is passed as a stride-0 view, as MLX does."""
    x = mx.random.normal((3, 5, 7), key=mx.random.key(2))
    b = mx.random.normal((5, 1), key=mx.random.key(3))
    k = zmlx.elementwise(axpb, backend="metal-sim")
    np.testing.assert_allclose(np.array(k(x[::-1], b)), np.array(axpb(x[::-1], b)), rtol=1e-6, atol=1e-6)
