"""metal-sim under adverse conditions: a bad cache directory or cached library, pathological source
lines, one-element overruns, and simd collectives given 64-bit types (exact messages)."""

import time
import warnings

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

import zmlx_dsl as zmlx  # noqa: E402
from zmlx_dsl import ZMLXBackendError  # noqa: E402
from zmlx_dsl.backend.metal_sim import MetalSimError, compiler, metal_kernel  # noqa: E402
from zmlx_dsl.backend.metal_sim.worker import WORKER_PROCESS  # noqa: E402

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None,
                                reason="metal-sim needs clang++-19 or the `ziglang` package (no compiler found)")

TRIPLE = "uint i = thread_position_in_grid.x; out[i] = x[i] * 3.0f;"
FIX = "set ZMLX_DSL_CACHE to a writable directory or unset it"


def run(src, x, name="t"):
    """One-output kernel over one float32 input `x`, one thread per output element; NumPy result."""
    n = x.size
    k = metal_kernel(name, ["x"], ["out"], src)
    (y,) = k(inputs=[x], output_shapes=[(n,)], output_dtypes=[mx.float32], grid=(n, 1, 1),
             threadgroup=(min(n, 256), 1, 1))
    return np.array(y)


# ---- 1. an unusable ZMLX_DSL_CACHE -------------------------------------------------------------

def test_cache_env_naming_a_file(tmp_path, monkeypatch):
    f = tmp_path / "a_file"
    f.write_text("")
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(f))
    with pytest.raises(ZMLXBackendError) as e:
        run(TRIPLE, mx.ones((8,)), name="cache_file")
    assert str(e.value) == (f"ZMLX_DSL_CACHE={str(f)!r} is not usable as metal-sim's cache: {str(f)!r} exists "
                            f"and is not a directory; {FIX}")


def test_cache_env_below_a_file(tmp_path, monkeypatch):
    f = tmp_path / "a_file"
    f.write_text("")
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(f / "sub"))
    with pytest.raises(ZMLXBackendError) as e:
        run(TRIPLE, mx.ones((8,)), name="cache_below_file")
    assert str(e.value) == (f"ZMLX_DSL_CACHE={str(f / 'sub')!r} is not usable as metal-sim's cache: cannot "
                            f"create {str(f / 'sub' / 'metal-sim')!r} (Not a directory); {FIX}")


def test_default_cache_below_a_file(tmp_path, monkeypatch):
    f = tmp_path / "a_file"
    f.write_text("")
    monkeypatch.delenv("ZMLX_DSL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(f))
    with pytest.raises(ZMLXBackendError) as e:
        run(TRIPLE, mx.ones((8,)), name="cache_default")
    assert str(e.value) == (f"metal-sim's default cache directory is not usable: cannot create "
                            f"{str(f / '.cache' / 'zmlx_dsl' / 'metal-sim')!r} (Not a directory); set "
                            "ZMLX_DSL_CACHE to a writable directory")


def test_cache_dir_that_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    where = str(tmp_path / "metal-sim")

    def refuse(**kw):
        raise PermissionError(13, "Permission denied", kw["dir"])

    monkeypatch.setattr(compiler.tempfile, "mkstemp", refuse)  # as root, chmod would not stop us
    with pytest.raises(ZMLXBackendError) as e:
        run(TRIPLE, mx.ones((8,)), name="cache_readonly")
    assert str(e.value) == (f"ZMLX_DSL_CACHE={str(tmp_path)!r} is not usable as metal-sim's cache: cannot "
                            f"write in {where!r} (Permission denied); {FIX}")


# ---- 2. an unusable cached library ------------------------------------------------------------

def _corrupt(path, junk):
    """Overwrite a cached library; the worker is stopped first (it keeps every library it has loaded)."""
    WORKER_PROCESS.stop()
    path.write_bytes(junk)


def _rebuilt_warning(path, reason):
    return (f"metal-sim: the cached library {path} was unusable ({reason}); it has been deleted and rebuilt "
            "from source")


@pytest.mark.parametrize("junk", [b"", b"garbage"])
def test_unusable_cached_kernel_is_rebuilt(tmp_path, monkeypatch, junk):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    x = mx.arange(10, dtype=mx.float32)
    np.testing.assert_array_equal(run(TRIPLE, x, name="rebuilt"), np.arange(10) * 3)
    (so,) = (tmp_path / "metal-sim").glob("k-*.so")
    _corrupt(so, junk)
    with pytest.warns(RuntimeWarning) as w:
        y = run(TRIPLE, x, name="rebuilt")
    np.testing.assert_array_equal(y, np.arange(10) * 3)
    assert [str(m.message) for m in w] == [_rebuilt_warning(so, f"{so}: file too short")]
    WORKER_PROCESS.stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is loaded as it is
        np.testing.assert_array_equal(run(TRIPLE, x, name="rebuilt"), np.arange(10) * 3)


def test_unusable_cached_runtime_and_kernel_are_both_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    x = mx.arange(4, dtype=mx.float32)
    run(TRIPLE, x, name="both")
    (rt,) = (tmp_path / "metal-sim").glob("runtime-*.so")
    (so,) = (tmp_path / "metal-sim").glob("k-*.so")
    _corrupt(so, b"")
    rt.write_bytes(b"garbage" * 20)
    with pytest.warns(RuntimeWarning) as w:
        np.testing.assert_array_equal(run(TRIPLE, x, name="both"), np.arange(4) * 3)
    assert [str(m.message) for m in w] == [_rebuilt_warning(rt, f"{rt}: invalid ELF header"),
                                           _rebuilt_warning(so, f"{so}: file too short")]


def test_library_still_unusable_after_rebuild_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    x = mx.arange(4, dtype=mx.float32)
    run(TRIPLE, x, name="hopeless")
    (so,) = (tmp_path / "metal-sim").glob("k-*.so")
    _corrupt(so, b"")

    def build_junk(args, src, out):
        out.write_bytes(b"")
        return ""

    monkeypatch.setattr(compiler, "_build", build_junk)
    with pytest.warns(RuntimeWarning), pytest.raises(MetalSimError) as e:
        run(TRIPLE, x, name="hopeless")
    assert str(e.value) == (f"metal-sim: kernel `hopeless`: {so} cannot be loaded even after rebuilding it "
                            f"from source: {so}: file too short")


def test_switching_cache_directories_within_a_process(tmp_path, monkeypatch):
    """Each cache holds its own runtime: kernels must run in the one they were linked against."""
    src = "uint i = thread_position_in_grid.x;\nout[i] = float(simd_sum(int(i)));"
    for cache in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.setenv("ZMLX_DSL_CACHE", str(cache))
        np.testing.assert_array_equal(run(src, mx.zeros((32,)), name="switch"), np.full(32, 496))


def test_build_interrupted_mid_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_CACHE", str(tmp_path))
    real = compiler.subprocess.run

    def crash(cmd, **kw):
        real(cmd, **kw)
        out = cmd[cmd.index("-o") + 1]
        with open(out, "r+b") as f:
            f.truncate(100)  # the compiler is killed while writing
        raise KeyboardInterrupt

    monkeypatch.setattr(compiler.subprocess, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        run("uint i = thread_position_in_grid.x; out[i] = x[i] + 0.5f;", mx.ones((4,)), name="crash")
    assert list((tmp_path / "metal-sim").iterdir()) == []


# ---- 3. the threadgroup rewrite is linear in the line length -------------------------------------

K = 65536
LINES = {
    "declarations": "".join(f"threadgroup float a{i}[4]; " for i in range(K // 26)),
    "expression": "float y = " + " + ".join(["x"] * (K // 4)) + ";",
    "words": "threadgroup " + "a " * 30000,
    "keywords": "threadgroup a " * (K // 14),
    "spaces": "threadgroup a" + " " * K + "b",
    "commas": "threadgroup a,threadgroup " * (K // 26),
}


@pytest.mark.parametrize("name", sorted(LINES))
def test_threadgroup_rewrite_of_a_64k_line_is_fast(name):
    line = LINES[name]
    t = time.perf_counter()
    out = compiler.rewrite_for_cpu(line)
    assert time.perf_counter() - t < 1.0  # the old regex took 10-20 s on "keywords" and "spaces"
    assert out.count("zsim_tg_slot(") == (K // 26 if name == "declarations" else 0)


def test_threadgroup_rewrite_output():
    src = "threadgroup vec<float, 4> v [2] [3] ;\nthreadgroup float\n  s;  threadgroup T a[N];"
    assert compiler.rewrite_for_cpu(src) == (
        "threadgroup vec<float, 4> (&v)[2][3] = *(threadgroup vec<float, 4> (*)[2][3])zsim_tg_slot(1, "
        "sizeof(vec<float, 4>[2][3]), alignof(vec<float, 4>));\nthreadgroup float &s = *(threadgroup float *)"
        "zsim_tg_slot(2, sizeof(float), alignof(float));  threadgroup T (&a)[N] = *(threadgroup T (*)[N])"
        "zsim_tg_slot(3, sizeof(T[N]), alignof(T));")


# ---- 4. one element past the end of a buffer -------------------------------------------------------

@pytest.mark.parametrize("n", [3, 1000])
@pytest.mark.parametrize("access,kind,buf", [("out[i] = x[i + 1];", "read", "x"),
                                             ("out[i] = out[i + 1];", "read", "out"),
                                             ("out[i + 1] = x[i];", "write", "out")])
def test_one_element_past_the_end_is_reported(n, access, kind, buf):
    src = f"uint i = thread_position_in_grid.x; if (i == {n - 1}) {{ {access} }} else {{ out[i] = x[i]; }}"
    with pytest.raises(MetalSimError) as e:
        run(src, mx.zeros((n,)), name="past_end")
    assert str(e.value) == (f"metal-sim: kernel `past_end`: out-of-bounds {kind} of buffer `{buf}` at byte "
                            f"offset {4 * n} (the buffer has {4 * n} bytes) by thread_position_in_grid "
                            f"({n - 1}, 0, 0)")


@pytest.mark.parametrize("n", [9, 10, 11, 1001])
def test_vector_accesses_to_buffers_of_any_size(n):
    """Buffers end at their guard page, so they start only element-aligned: float4 accesses still work."""
    src = "uint i = thread_position_in_grid.x; ((device float4*)out)[i] = ((const device float4*)x)[i] * 2.0f;"
    x = mx.arange(n, dtype=mx.float32)
    k = metal_kernel("vec4", ["x"], ["out"], src)
    (y,) = k(inputs=[x], output_shapes=[(n,)], output_dtypes=[mx.float32], grid=(n // 4, 1, 1),
             threadgroup=(32, 1, 1))
    m = n // 4 * 4
    np.testing.assert_array_equal(np.array(y)[:m], np.arange(m) * 2)


def axpy(x, y):
    return x * 2 + y


def test_generated_vector_path_on_a_buffer_of_odd_size():
    """4097 floats start 4 bytes off a 16-byte boundary; the generated kernel's vec<float, 4> path runs."""
    x = mx.arange(4097, dtype=mx.float32)
    y = zmlx.elementwise(axpy, backend="metal-sim")(x, x)
    np.testing.assert_array_equal(np.array(y), np.arange(4097) * 3)


# ---- 5. simd collectives reject 64-bit types ---------------------------------------------------

SIMD_64 = "simd collectives take 32-bit or smaller types on Metal (long/ulong: split into uint2 with as_type)"
CXX_NAMES = {"long": "long", "ulong": "unsigned long", "long2": "long __attribute__((ext_vector_type(2)))"}


@pytest.mark.parametrize("t", sorted(CXX_NAMES))
@pytest.mark.parametrize("call", ["simd_sum(v)", "simd_max(v)", "simd_shuffle_down(v, 1)",
                                  "simd_prefix_exclusive_sum(v)", "simd_broadcast(v, 0)", "quad_sum(v)"])
def test_simd_collective_of_64_bit_type_fails_to_compile(t, call):
    line = f"out[i] = float({call}{'.x' if t == 'long2' else ''});"
    with pytest.raises(MetalSimError) as e:
        run(f"uint i = thread_position_in_grid.x;\n{t} v = {t}(i);\n{line}", mx.zeros((32,)), name="simd64")
    assert str(e.value).split("\n")[:2] == [
        "metal-sim: kernel `simd64` failed to compile:",
        f"  body line 3: `{line}` (column 16): error: static assertion failed due to requirement "
        f"'metal::zsim_simd_type<{CXX_NAMES[t]}>::ok': {SIMD_64}"]


@pytest.mark.parametrize("t", ["int", "uint", "float", "half", "short", "uint2", "float4"])
def test_simd_collective_of_32_bit_type_runs(t):
    src = (f"uint i = thread_position_in_grid.x;\n{t} v = {t}(i);\n"
           f"out[i] = float(simd_sum(v){'.x' if t[-1].isdigit() else ''});")
    np.testing.assert_array_equal(run(src, mx.zeros((32,)), name="simd32"), np.full(32, 31 * 32 / 2))
