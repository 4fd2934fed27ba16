"""Shared helpers for the zmlx_dsl test suite.

The principle every test checks (DESIGN.md): a kernel returns what its undecorated body returns
when run as MLX code -- same values (within floating-point tolerance), same shape, same dtype --
and `mx.vjp` / `mx.jvp` through the kernel equal the same transform of the body.

Helpers here:
- `BACKENDS` / the `backend` fixture: the backends every kernel test runs on: "mlx" (portable)
  always; other backends ("metal-sim", ...) are appended here when they can run on this machine.
- `rand(shape, dtype, rng=..., low=..., high=...)`: random inputs for float32/float16/bfloat16/
  int32/bool (and any other MLX dtype the IR knows).
- `assert_close(actual, expected, ...)`, `assert_same(kernel, body, *args, ...)`: values + shape +
  dtype; a NaN in the kernel where the reference has NaN counts as a match, infinities must match.
- `assert_grads(kernel, body, *args, ...)`: `mx.vjp` with RANDOM cotangents (never `.sum()`, which
  hides a forgotten cotangent), every float array input differentiated.
- `assert_jvp(kernel, body, *args, ...)`: `mx.jvp` with random tangents.
- `eager_mlx`: a fixture that disables `mx.compile` for one test (see its docstring why).
- `examples(n)`: a property test's example count, scaled by $ZMLX_PROPERTY_SCALE (default 1):
  `ZMLX_PROPERTY_SCALE=20 pytest tests/property` runs 20x as many locally.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx

# ---- property tests: how many examples --------------------------------------------------

PROPERTY_SCALE = float(os.environ.get("ZMLX_PROPERTY_SCALE", "") or 1.0)
"""$ZMLX_PROPERTY_SCALE: a factor on every property test's example count (CI runs the default 1;
set e.g. 10 locally for a longer search)."""


def examples(n: int) -> int:
    """`max_examples` for a property test that runs n examples at the default scale."""
    return max(1, int(n * PROPERTY_SCALE))


# ---- backends ----------------------------------------------------------------------------

def _have_metal_sim() -> bool:
    try:
        from zmlx_dsl.backend.metal_sim.compiler import find_compiler
    except ImportError:
        return False
    return find_compiler() is not None


HAVE_METAL_SIM = _have_metal_sim()
"""metal-sim (the generated MSL compiled as C++ and run on the CPU) needs clang++-19 or `ziglang`."""

BACKENDS = ["mlx"] + (["metal-sim"] if HAVE_METAL_SIM else [])
"""Backends that kernels are checked on: the portable "mlx" backend always, and "metal-sim" (the
Metal launch path, its MSL executed on the CPU) wherever a C++ compiler for it is found."""


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


GRAD_BACKENDS = ["mlx", "mlx:ir"] + BACKENDS[1:]
"""Derivative tests add "mlx:ir": the generated backward and forward-mode programs run as MLX ops
(fast, any machine), where plain "mlx" leaves differentiation to MLX."""


def skip_if_traced(backend: str) -> None:
    """metal-sim runs a kernel on the host when it is called (it evaluates its inputs), so it can't
    run inside mx.compile / mx.vmap, which trace with placeholder arrays; those tests skip it."""
    if backend == "metal-sim":
        pytest.skip("metal-sim evaluates its inputs on the host: no mx.compile / mx.vmap tracing")


def kernel_of(fn: Callable, backend: str, kind: str = "elementwise", **kw) -> "zmlx.Kernel":
    """`zmlx.elementwise(fn, backend=backend)` (or reduce / map_reduce); "mlx:ir" names the portable
    backend with the generated derivative programs (autodiff="ir") instead of MLX's own."""
    name, _, autodiff = backend.partition(":")
    return getattr(zmlx, kind)(fn, backend=name, **({"autodiff": autodiff} if autodiff else {}), **kw)


@pytest.fixture
def eager_mlx():
    """Run MLX without `mx.compile` for one test.

    On the CPU, `mx.compile` JIT-compiles every new fused graph to C++ with the system compiler
    (~1.2 s per graph; cached under $TMPDIR/mlx only after the first run). Tests that build
    hundreds of distinct programs (every op x dtype, random bodies) check the semantics of the
    IR -> MLX-op lowering, which is the same with compilation disabled; the compiled path is
    covered by test_elementwise.py and test_autodiff.py.
    """
    mx.disable_compile()
    try:
        yield
    finally:
        mx.enable_compile()


# ---- inputs ------------------------------------------------------------------------------

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16,
          "int32": mx.int32, "bool": mx.bool_}
FLOATS = (mx.float32, mx.float16, mx.bfloat16)


def is_float(d) -> bool:
    return d in FLOATS


def rand(shape: Sequence[int], dtype=mx.float32, *, rng: Optional[np.random.Generator] = None,
         low: float = -3.0, high: float = 3.0) -> mx.array:
    """Random values of `dtype`: uniform in [low, high) for floats, integers in [low, high] for
    ints (unsigned: [0, high]), fair coins for bool."""
    rng = rng if rng is not None else np.random.default_rng(0)
    shape = tuple(shape)
    if dtype == mx.bool_:
        return mx.array(rng.random(shape) < 0.5)
    if dtype in (mx.int32, mx.int64, mx.uint32):
        lo = 0 if dtype == mx.uint32 else int(np.floor(low))
        v = rng.integers(lo, int(np.ceil(high)) + 1, size=shape)
        return mx.array(v.astype(np.int64)).astype(dtype)
    v = rng.uniform(low, high, size=shape).astype(np.float32)
    return mx.array(v).astype(dtype)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---- comparison --------------------------------------------------------------------------

TOL = {  # (atol, rtol) per result dtype
    mx.float32: (1e-5, 1e-5),
    mx.float16: (2e-3, 2e-3),
    mx.bfloat16: (2e-2, 2e-2),
}


def tol_for(dtype, atol: Optional[float] = None, rtol: Optional[float] = None) -> tuple[float, float]:
    a, r = TOL.get(dtype, (0.0, 0.0))
    return (a if atol is None else atol), (r if rtol is None else rtol)


def to_numpy(a: Any) -> np.ndarray:
    """An mx.array (any dtype) or NumPy value as NumPy: floats as float64, ints int64, bool bool."""
    if isinstance(a, mx.array):
        if a.dtype in FLOATS:
            return np.array(a.astype(mx.float32)).astype(np.float64)
        if a.dtype == mx.bool_:
            return np.array(a)
        return np.array(a).astype(np.int64)
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    return a


def assert_values(actual: np.ndarray, expected: np.ndarray, *, atol: float, rtol: float, what: str = "") -> None:
    """Elementwise |a - e| <= atol + rtol |e|; NaN in `actual` where `expected` is NaN matches,
    infinities must match exactly, integers and bools exactly (when atol = rtol = 0)."""
    actual, expected = to_numpy(actual), to_numpy(expected)
    assert actual.shape == expected.shape, f"{what}shape {actual.shape} != expected {expected.shape}"
    if actual.dtype.kind in "biu" and expected.dtype.kind in "biu" and atol == 0 and rtol == 0:
        bad = actual != expected
    else:
        a, e = actual.astype(np.float64), expected.astype(np.float64)
        with np.errstate(invalid="ignore"):
            both_nan = np.isnan(a) & np.isnan(e)
            inf = np.isinf(e) | np.isinf(a)
            close = np.abs(a - e) <= atol + rtol * np.abs(e)
            bad = ~(both_nan | np.where(inf, a == e, close))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        detail = ", ".join(f"{tuple(int(i) for i in ix)}: got {actual[tuple(ix)]!r} want {expected[tuple(ix)]!r}"
                           for ix in idx)
        raise AssertionError(f"{what}{int(bad.sum())} of {bad.size} elements differ "
                             f"(atol={atol}, rtol={rtol}): {detail}")


def assert_close(actual: Any, expected: Any, *, atol: Optional[float] = None, rtol: Optional[float] = None,
                 check_dtype: bool = True, what: str = "") -> None:
    """One output: same dtype (mx arrays), same shape, values within the dtype's tolerance."""
    if isinstance(expected, mx.array) and isinstance(actual, mx.array) and check_dtype:
        assert actual.dtype == expected.dtype, f"{what}dtype {actual.dtype} != expected {expected.dtype}"
    a_tol, r_tol = tol_for(expected.dtype if isinstance(expected, mx.array) else None, atol, rtol)
    assert_values(actual, expected, atol=a_tol, rtol=r_tol, what=what)


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def assert_same(kernel, body: Optional[Callable], *args: Any, atol: Optional[float] = None,
                rtol: Optional[float] = None, kwargs: Optional[dict] = None) -> Any:
    """kernel(*args) equals body(*args) run as MLX (`body=None`: the kernel's own undecorated
    function, `kernel.__wrapped__`): number of outputs, and per output dtype, shape and values.
    Returns the kernel's result."""
    kwargs = kwargs or {}
    body = kernel.__wrapped__ if body is None else body
    expected = body(*args, **kwargs)
    got = kernel(*args, **kwargs)
    mx.eval(got)
    assert isinstance(got, tuple) == isinstance(expected, tuple), \
        f"kernel returned {type(got).__name__}, body returned {type(expected).__name__}"
    got_t, exp_t = _as_tuple(got), _as_tuple(expected)
    assert len(got_t) == len(exp_t), f"{len(got_t)} outputs, body has {len(exp_t)}"
    for k, (g, e) in enumerate(zip(got_t, exp_t)):
        if not isinstance(e, mx.array):
            e = mx.array(e)
        assert isinstance(g, mx.array), f"output {k} is {type(g).__name__}, not an mx.array"
        assert_close(g, e, atol=atol, rtol=rtol, what=f"output {k}: ")
    return got


def float_positions(args: Sequence[Any]) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, mx.array) and is_float(a.dtype)]


def _restrict(fn: Callable, args: Sequence[Any], pos: Sequence[int], kwargs: dict) -> Callable:
    """fn as a function of the arrays at `pos` only (the other arguments held fixed); its
    outputs always as a list (what mx.vjp / mx.jvp expect)."""
    def g(*xs):
        full = list(args)
        for i, x in zip(pos, xs):
            full[i] = x
        return list(_as_tuple(fn(*full, **kwargs)))
    return g


def random_like(a: mx.array, rng: np.random.Generator, scale: float = 1.0) -> mx.array:
    """Random normal values with a's shape and dtype (random cotangents/tangents)."""
    return mx.array((rng.standard_normal(a.shape) * scale).astype(np.float32)).astype(a.dtype)


def assert_grads(kernel, body: Optional[Callable], *args: Any, atol: Optional[float] = None,
                 rtol: Optional[float] = None, kwargs: Optional[dict] = None, seed: int = 0,
                 wrt: Optional[Sequence[int]] = None) -> list:
    """mx.vjp through the kernel equals mx.vjp through the body: random cotangent per output
    (same shape and dtype as the body's output), gradients w.r.t. every float array argument
    (or the positions `wrt`). Gradients must have the input's shape and dtype. Returns the
    kernel's gradients."""
    kwargs = kwargs or {}
    body = kernel.__wrapped__ if body is None else body
    rng = np.random.default_rng(seed)
    pos = list(wrt) if wrt is not None else float_positions(args)
    assert pos, "no float array argument to differentiate"
    primals = [args[i] for i in pos]
    outs = _as_tuple(body(*args, **kwargs))
    cots = [random_like(o, rng) if is_float(o.dtype) else mx.zeros_like(o) for o in outs]
    _, g_body = mx.vjp(_restrict(body, args, pos, kwargs), primals, cots)
    _, g_kern = mx.vjp(_restrict(kernel, args, pos, kwargs), primals, cots)
    mx.eval(g_kern)
    assert len(g_kern) == len(g_body)
    for i, gk, gb, x in zip(pos, g_kern, g_body, primals):
        assert gk is not None, f"gradient of argument {i} is None"
        assert gk.shape == x.shape, f"grad {i}: shape {gk.shape} != input shape {x.shape}"
        assert_close(gk, gb, atol=atol, rtol=rtol, what=f"grad of argument {i}: ")
    return g_kern


def assert_jvp(kernel, body: Optional[Callable], *args: Any, atol: Optional[float] = None,
               rtol: Optional[float] = None, kwargs: Optional[dict] = None, seed: int = 1,
               wrt: Optional[Sequence[int]] = None) -> list:
    """mx.jvp through the kernel equals mx.jvp through the body, random tangents for every float
    array argument."""
    kwargs = kwargs or {}
    body = kernel.__wrapped__ if body is None else body
    rng = np.random.default_rng(seed)
    pos = list(wrt) if wrt is not None else float_positions(args)
    primals = [args[i] for i in pos]
    tans = [random_like(x, rng) for x in primals]
    _, t_body = mx.jvp(_restrict(body, args, pos, kwargs), primals, tans)
    _, t_kern = mx.jvp(_restrict(kernel, args, pos, kwargs), primals, tans)
    mx.eval(t_kern)
    assert len(t_kern) == len(t_body)
    for k, (tk, tb) in enumerate(zip(t_kern, t_body)):
        assert_close(tk, tb, atol=atol, rtol=rtol, what=f"tangent of output {k}: ")
    return t_kern


def interpret_kernel(kernel, *args: Any, mode: str = "float64", kwargs: Optional[dict] = None) -> list[np.ndarray]:
    """The kernel's program evaluated by the NumPy IR interpreter (the oracle)."""
    from zmlx_dsl.ir.interpret import interpret
    kwargs = kwargs or {}
    prog = kernel.program(*args, **kwargs)
    names = [p.name for p in __import__("inspect").signature(kernel.__wrapped__).parameters.values()]
    values = {}
    for name, a in zip(names, args):
        values[name] = to_numpy(a) if isinstance(a, mx.array) else a
    return interpret(prog.outputs, values, mode=mode)


@pytest.fixture
def clean_backend_env(monkeypatch):
    """No ZMLX_DSL_BACKEND leaking into a test (tests that want it set it themselves)."""
    monkeypatch.delenv("ZMLX_DSL_BACKEND", raising=False)
    return monkeypatch


def pytest_report_header(config):
    return [f"zmlx_dsl backends under test: {', '.join(BACKENDS)}; "
            f"ZMLX_DSL_BACKEND={os.environ.get('ZMLX_DSL_BACKEND', '')!r}"]


# ---- the CUDA type-check (generated CUDA compiled against a stub of CUDA and MLX's headers) ----

CUDA_STUB = Path(__file__).parent / "cuda_stub" / "mlx_cuda_stub.h"


def cuda_type_errors(src: str, tmp_dir, stem: str = "kernel") -> list[str]:
    """The C++ compiler's errors for a generated CUDA source (`kernel.source(..., backend="cuda")`
    or `grad_source`), compiled with `-fsyntax-only` against the stub header; [] when it
    type-checks. `tmp_dir` receives `<stem>.cpp`."""
    from zmlx_dsl.backend.metal_sim.compiler import find_compiler
    src = src.replace('#include "mlx/backend/cuda/device/utils.cuh"', f'#include "{CUDA_STUB}"')
    src = src.replace("#include <cooperative_groups.h>", "").replace("namespace cg = cooperative_groups;", "")
    path = Path(tmp_dir) / f"{stem}.cpp"
    path.write_text(src)
    cmd = find_compiler()
    cmd = cmd[:1] + ["c++"] if cmd[-1] == "cc" else cmd
    r = subprocess.run(cmd + ["-std=c++17", "-fsyntax-only", str(path)], capture_output=True, text=True)
    return [line for line in r.stderr.splitlines() if "error" in line and "failed to rename" not in line]


def assert_cuda_type_checks(name: str, src: str, tmp_dir, stem: str = "kernel") -> None:
    errors = cuda_type_errors(src, tmp_dir, stem)
    assert not errors, f"{name}:\n" + "\n".join(errors[:10]) + f"\n--- source ---\n{src}"


def restricted(fn, args, pos):
    """fn as a function of the arrays at `pos` (the others held fixed), its outputs as a list."""
    def g(*xs):
        full = list(args)
        for i, x in zip(pos, xs):
            full[i] = x
        out = fn(*full)
        return list(out) if isinstance(out, tuple) else [out]
    return g
