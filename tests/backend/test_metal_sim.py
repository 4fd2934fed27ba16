"""Conformance and failure tests of the metal-sim backend (hand-written MSL bodies vs NumPy)."""

import os

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from zmlx_dsl.backend.metal_sim import MetalSimError, metal_kernel  # noqa: E402
from zmlx_dsl.backend.metal_sim.compiler import find_compiler  # noqa: E402

pytestmark = pytest.mark.skipif(find_compiler() is None,
                                reason="metal-sim needs clang++-19 or the `ziglang` package (no compiler found)")

F32 = mx.float32


def run1(src, inputs, shape, grid, tg, names=None, dtype=F32, **kw):
    """Run a one-output kernel named after the test and return the output as NumPy."""
    names = names or [f"in{i}" for i in range(len(inputs))]
    opts = {k: kw.pop(k) for k in ("header", "ensure_row_contiguous", "atomic_outputs", "race_check",
                                    "strided_inputs", "timeout") if k in kw}
    k = metal_kernel(kw.pop("name", "t"), names, ["out"], src, **opts)
    (y,) = k(inputs=inputs, output_shapes=[shape], output_dtypes=[dtype], grid=grid, threadgroup=tg, **kw)
    return np.array(y.astype(mx.float32) if dtype in (mx.bfloat16, mx.float16) else y)


def test_elementwise_silu():
    x = mx.random.normal((1000,))
    y = run1("uint i = thread_position_in_grid.x; if (i < 1000) { float v = x[i]; out[i] = v / (1.0f + metal::exp(-v)); }",
             [x], (1000,), (1024, 1, 1), (256, 1, 1), names=["x"])
    xn = np.array(x)
    np.testing.assert_allclose(y, xn / (1 + np.exp(-xn)), rtol=1e-6, atol=1e-6)


def test_vectors_swizzles_and_constructors():
    x = mx.arange(16, dtype=mx.float32)
    src = """
    uint i = thread_position_in_grid.x;
    float4 v = ((const device float4*)x)[i];
    float4 w = float4(v.wz, v.y, 1.0f) + float4(2.0f);
    half4 h = half4(w);
    int2 k = int2(3, 4);
    ((device float4*)out)[i] = float4(h) * float(k.x + k.y) + select(float4(0.0f), float4(1.0f), v > 5.0f);
    """
    y = run1(src, [x], (16,), (4, 1, 1), (4, 1, 1), names=["x"]).reshape(4, 4)
    v = np.arange(16, dtype=np.float32).reshape(4, 4)
    w = np.stack([v[:, 3], v[:, 2], v[:, 1], np.ones(4)], 1) + 2
    np.testing.assert_allclose(y, w * 7 + (v > 5), rtol=1e-3)


def test_strided_via_shape_and_strides():
    x = mx.random.normal((6, 5))
    src = """
    uint i = thread_position_in_grid.x;
    int64_t loc = elem_to_loc(int64_t(i), x_shape, x_strides, x_ndim);
    out[i] = x[loc] * 2.0f;
    """
    y = run1(src, [x], (30,), (30, 1, 1), (32, 1, 1), names=["x"], ensure_row_contiguous=False,
             strided_inputs=True)
    np.testing.assert_allclose(y, np.array(x).reshape(-1) * 2)


def test_strided_inputs_expose_contiguity_assumption():
    x = mx.random.normal((6, 5))
    y = run1("uint i = thread_position_in_grid.x; out[i] = x[i];", [x], (30,), (30, 1, 1), (32, 1, 1),
             names=["x"], ensure_row_contiguous=False, strided_inputs=True)
    assert not np.allclose(y, np.array(x).reshape(-1), equal_nan=True)


SOFTMAX = """
uint row = threadgroup_position_in_grid.x, lid = thread_position_in_threadgroup.x;
uint lane = thread_index_in_simdgroup, sg = simdgroup_index_in_threadgroup;
threadgroup float part[32];
const device float* r = x + row * N;
float m = -INFINITY;
for (uint j = lid; j < N; j += TG) m = max(m, r[j]);
m = simd_max(m);
if (lane == 0) part[sg] = m;
threadgroup_barrier(mem_flags::mem_threadgroup);
m = lane < TG / 32 ? part[lane] : -INFINITY;
m = simd_max(m);
threadgroup_barrier(mem_flags::mem_threadgroup);
float s = 0.0f;
for (uint j = lid; j < N; j += TG) s += metal::fast::exp(r[j] - m);
s = simd_sum(s);
if (lane == 0) part[sg] = s;
threadgroup_barrier(mem_flags::mem_threadgroup);
s = lane < TG / 32 ? part[lane] : 0.0f;
for (ushort o = 16; o > 0; o /= 2) s += simd_shuffle_xor(s, o);
for (uint j = lid; j < N; j += TG) out[row * N + j] = metal::exp(r[j] - m) / s;
"""


def test_threadgroup_softmax_with_simd_and_barriers():
    x = mx.random.normal((8, 1000)) * 3
    y = run1(SOFTMAX, [x], (8, 1000), (8 * 128, 1, 1), (128, 1, 1), names=["x"],
             template=[("N", 1000), ("TG", 128)], race_check=True)
    xn = np.array(x)
    e = np.exp(xn - xn.max(1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_simd_ops_divergent_and_partial_groups():
    # 48 threads: the second simdgroup has 16 lanes; odd lanes take another branch.
    src = """
    uint i = thread_position_in_grid.x, lane = thread_index_in_simdgroup;
    float v = float(i);
    float r;
    if (lane % 2 == 0) { r = simd_sum(v); } else { r = simd_max(v) + 1000.0f; }
    float p = simd_prefix_exclusive_sum(1.0f);
    float b = simd_broadcast(v, 3);
    float d = simd_shuffle_down(v, 1);
    out[i * 4 + 0] = r; out[i * 4 + 1] = p; out[i * 4 + 2] = b; out[i * 4 + 3] = d;
    """
    y = run1(src, [mx.array(0.0)], (48, 4), (48, 1, 1), (64, 1, 1), names=["unused"]).reshape(48, 4)
    for i in range(48):
        base = i - i % 32
        lanes = np.arange(base, min(base + 32, 48))
        same = lanes[(lanes - base) % 2 == (i - base) % 2]
        assert y[i, 0] == (same.sum() if (i - base) % 2 == 0 else same.max() + 1000)
        assert y[i, 1] == i - base and y[i, 2] == base + 3
        if i + 1 < base + 32 and i + 1 < 48:
            assert y[i, 3] == i + 1
        elif i + 1 == base + 32:
            assert y[i, 3] == i  # the upper lane keeps its own value
        else:
            assert np.isnan(y[i, 3])  # reading a lane that does not exist gives poison


def test_quad_ops_and_2d_grid():
    src = """
    uint2 p = thread_position_in_grid.xy;
    uint i = p.y * threads_per_grid.x + p.x;
    out[i] = quad_sum(float(i)) + float(thread_index_in_quadgroup) * 0.25f;
    """
    y = run1(src, [mx.array(0.0)], (8, 8), (8, 8, 1), (4, 2, 1), names=["unused"]).reshape(-1)
    idx = np.arange(64)
    # threadgroups are 4x2: thread_index_in_threadgroup = x + 4y, quads = rows of 4
    ref = np.array([sum(r * 8 + q for q in range(((i % 8) // 4) * 4, ((i % 8) // 4) * 4 + 4)) for r, i in zip(idx // 8, idx)])
    np.testing.assert_allclose(y, ref + (idx % 4) * 0.25)


@pytest.mark.parametrize("dt", [mx.float16, mx.bfloat16])
def test_half_and_bfloat_round_per_operation(dt):
    x = mx.random.normal((256,)).astype(dt)
    y = run1("uint i = thread_position_in_grid.x; T a = x[i]; T b = a * a + a; out[i] = b * T(3);",
             [x], (256,), (256, 1, 1), (64, 1, 1), names=["x"], dtype=dt, template=[("T", dt)])
    xa = np.array(x.astype(mx.float32))
    if dt == mx.float16:
        h = xa.astype(np.float16)
        ref = ((h * h + h) * np.float16(3)).astype(np.float32)
    else:
        r = lambda v: np.array(mx.array(v).astype(mx.bfloat16).astype(mx.float32))  # noqa: E731
        ref = r(r(r(xa * xa) + xa) * 3)
    np.testing.assert_array_equal(y, ref)


def test_atomics_and_init_value():
    x = mx.arange(1000, dtype=mx.int32) % 10
    y = run1("uint i = thread_position_in_grid.x; atomic_fetch_add_explicit(&out[x[i]], 1, memory_order_relaxed);",
             [x], (10,), (1000, 1, 1), (128, 1, 1), names=["x"], dtype=mx.int32, atomic_outputs=True,
             init_value=0)
    np.testing.assert_array_equal(y, np.full(10, 100))
    xf = mx.ones((512,))
    yf = run1("""uint i = thread_position_in_grid.x;
      threadgroup atomic<float> acc;
      if (thread_index_in_threadgroup == 0) atomic_store_explicit(&acc, 0.0f, memory_order_relaxed);
      threadgroup_barrier(mem_flags::mem_threadgroup);
      atomic_fetch_add_explicit(&acc, x[i], memory_order_relaxed);
      threadgroup_barrier(mem_flags::mem_threadgroup);
      if (thread_index_in_threadgroup == 0) atomic_fetch_add_explicit(&out[0], atomic_load_explicit(&acc, memory_order_relaxed), memory_order_relaxed);""",
              [xf], (1,), (512, 1, 1), (128, 1, 1), names=["x"], atomic_outputs=True, init_value=1.5)
    assert yf[0] == 513.5


def test_scalars_small_constants_multiple_outputs_and_templates():
    k = metal_kernel("multi", ["x", "s", "c"], ["a", "b"],
                     "uint i = thread_position_in_grid.x; a[i] = x[i] * s + c[i % 3]; b[i] = T(K) + x_shape[0];")
    x = mx.arange(12, dtype=mx.float32)
    a, b = k(inputs=[x, 2.0, mx.array([1.0, 2.0, 3.0])], output_shapes=[(12,), (12,)],
             output_dtypes=[mx.float32, mx.int32], grid=(12, 1, 1), threadgroup=(32, 1, 1),
             template=[("T", mx.int32), ("K", 7)])
    np.testing.assert_allclose(np.array(a), np.arange(12) * 2 + np.array([1, 2, 3] * 4))
    np.testing.assert_array_equal(np.array(b), np.full(12, 19))


def test_malformed_signature_bug_of_mlx_is_reproduced():
    k = metal_kernel("bug", ["x"], ["a", "b"], "a[0] = x_shape[0]; b[0] = 1;")
    with pytest.raises(MetalSimError, match="failed to compile"):
        k(inputs=[mx.zeros((4,))], output_shapes=[(1,), (1,)], output_dtypes=[F32, F32],
          grid=(1, 1, 1), threadgroup=(1, 1, 1))


def test_unwritten_outputs_are_nan():
    y = run1("uint i = thread_position_in_grid.x; if (i % 2) out[i] = 1.0f;", [mx.array(0.0)], (8,),
             (8, 1, 1), (8, 1, 1), names=["u"])
    assert np.isnan(y[::2]).all() and (y[1::2] == 1).all()


# ---- failures ----------------------------------------------------------------------------------

def test_compile_error_quotes_body_line():
    with pytest.raises(MetalSimError) as e:
        run1("uint i = thread_position_in_grid.x;\nfloat v = x[i];\nout[i] = v + undefined_thing;",
             [mx.zeros((8,))], (8,), (8, 1, 1), (8, 1, 1), names=["x"], name="broken")
    assert "body line 3: `out[i] = v + undefined_thing;`" in str(e.value)
    assert "undefined_thing" in str(e.value)


def test_double_is_rejected():
    with pytest.raises(MetalSimError, match="double"):
        run1("double d = 1; out[0] = d;", [mx.zeros((8,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"])


def test_address_space_misuse_fails_to_compile():
    with pytest.raises(MetalSimError, match="body line 1"):
        run1("const constant float* p = x; out[0] = p[0];", [mx.zeros((64,))], (1,), (1, 1, 1), (1, 1, 1),
             names=["x"])


@pytest.mark.parametrize("access,kind", [("out[0] = x[i + 1];", "read"), ("out[i + 1] = x[i];", "write")])
def test_out_of_bounds_names_buffer_and_offset(access, kind):
    src = "uint i = thread_position_in_grid.x; if (i == 63) { " + access + " } else { out[i] = 0; }"
    name = "x" if kind == "read" else "out"
    with pytest.raises(MetalSimError, match=rf"out-of-bounds {kind} of buffer `{name}` at byte offset 256 "
                                            r"\(the buffer has 256 bytes\) by thread_position_in_grid \(63, 0, 0\)"):
        run1(src, [mx.zeros((64,))], (64,), (64, 1, 1), (64, 1, 1), names=["x"])


def test_partial_barrier_names_line():
    src = "uint i = thread_position_in_grid.x;\nif (i < 16) {\n  threadgroup_barrier(mem_flags::mem_threadgroup);\n}\nout[i] = 1;"
    with pytest.raises(MetalSimError, match=r"body line 3: `threadgroup_barrier\(mem_flags::mem_threadgroup\);` "
                                            r"is reached by only 16 of the 32 threads"):
        run1(src, [mx.zeros((1,))], (32,), (32, 1, 1), (32, 1, 1), names=["x"])


def test_divergent_barriers_are_an_error():
    src = ("uint i = thread_position_in_grid.x;\nif (i < 16) threadgroup_barrier(mem_flags::mem_threadgroup);\n"
           "else threadgroup_barrier(mem_flags::mem_threadgroup);\nout[i] = 1;")
    with pytest.raises(MetalSimError, match="wait at different barriers: 16 at body line 2"):
        run1(src, [mx.zeros((1,))], (32,), (32, 1, 1), (32, 1, 1), names=["x"])


def test_null_dereference_is_reported_and_worker_survives():
    with pytest.raises(MetalSimError, match=r"segmentation fault at address 0x0"):
        run1("device float* p = (device float*)0; out[0] = p[thread_position_in_grid.x * 0];",
             [mx.zeros((1,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"])
    assert run1("out[0] = 2.0f;", [mx.zeros((1,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"])[0] == 2


def test_endless_loop_times_out_and_worker_restarts():
    with pytest.raises(MetalSimError, match="did not finish within 1 s"):
        run1("uint i = 0; while (x[0] == 0.0f) { out[i % 8] = float(i); i++; }", [mx.zeros((8,))], (8,), (1, 1, 1),
             (1, 1, 1), names=["x"], timeout=1)
    assert run1("out[0] = 3.0f;", [mx.zeros((1,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"])[0] == 3


def test_race_check_detects_missing_barrier():
    src = """uint t = thread_position_in_threadgroup.x;
    threadgroup float buf[64];
    buf[t] = x[t];
    out[t] = buf[63 - t];"""
    x = mx.arange(64, dtype=mx.float32)
    with pytest.raises(MetalSimError, match="race check: output `out` differs"):
        run1(src, [x], (64,), (64, 1, 1), (64, 1, 1), names=["x"], race_check=True)
    ok = run1(src.replace("buf[t] = x[t];", "buf[t] = x[t];\n threadgroup_barrier(mem_flags::mem_threadgroup);"),
              [x], (64,), (64, 1, 1), (64, 1, 1), names=["x"], race_check=True)
    np.testing.assert_array_equal(ok, np.arange(64)[::-1])


def test_verbose_prints_mlx_text(capsys):
    run1("out[0] = x[0];", [mx.zeros((8,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"], verbose=True, name="vb")
    assert "[[kernel]] void custom_kernel_vb_float_float(" in capsys.readouterr().out


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    run1("out[0] = x[0] + 41.0f;", [mx.ones((8,))], (1,), (1, 1, 1), (1, 1, 1), names=["x"])
    assert any(p.name.startswith("k-") for p in (tmp_path / "metal-sim").iterdir())
    assert os.environ["ZMLX_DSL_CACHE"] == str(tmp_path)
