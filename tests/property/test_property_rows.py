"""Property test for row kernels: random `map_reduce` bodies mixing the registry's elementwise ops
with the row reductions (sum, max, min, mean, var, logsumexp, softmax, counts of comparisons),
reductions of reductions, and inputs that are full rows, shared rows or one value per row. Each
kernel must return what its body returns when run in MLX on each row (values, shape, dtype), on
the portable backend and on metal-sim (the generated MSL run on the CPU); and its VJP with a random
cotangent must equal MLX's VJP of the body, and its JVP the transpose of that, through the
generated derivative programs ("mlx" with autodiff="ir", and metal-sim).

The bodies are written into a module file, as in test_property.py (kernels need source)."""
from __future__ import annotations

import inspect
from typing import Sequence

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import zmlx_dsl as zmlx
from conftest import HAVE_METAL_SIM, assert_values, examples, to_numpy
from zmlx_dsl.ir.interpret import interpret
from zmlx_dsl.ir.node import toposort
from test_property import BOOL_OPS, EAGER, FLOAT_OPS, expr_text, body_module

REDUCTIONS = ["{a}.sum()", "{a}.max()", "{a}.min()", "mx.mean({a})", "mx.var({a})", "mx.logsumexp({a})",
              "mx.softmax({a})", "({a} > 0.25).sum()", "mx.var({a}, ddof=1)"]
SHAPES = {"full": lambda r, d: (r, d), "shared": lambda r, d: (d,), "per_row": lambda r, d: (r, 1)}


@st.composite
def row_bodies(draw) -> str:
    leaves = ["x", "y", "w", "0.5", "2.0"]

    def sub(kind: str = "f") -> str:  # "a": an array expression (reductions need one)
        return expr_text(draw, FLOAT_OPS, BOOL_OPS, leaves, draw(st.integers(0, 2)), kind)

    def red(inner: str) -> str:
        return draw(st.sampled_from(REDUCTIONS)).format(a=f"({inner})")

    r1 = red(sub("a"))
    r2 = red(f"{sub('a')} - {red(sub('a'))}")  # a reduction of something that uses a reduction
    form = draw(st.sampled_from(["{e} + {r1}", "{e} * {r1}", "{r1}", "({e} - {r1}) / (mx.abs({r2}) + 1.0)",
                                 "{r2} + {r1}"]))
    return form.format(e=sub(), r1=r1, r2=r2)


def load_body(tmp_dir, text: str, lines: Sequence[str] = ()):
    """`def body(x, y, w): return <text>` in a fresh module (anchored on x when it reads no row);
    with `lines`, those statements (e.g. `m = mx.mean(x)`) come before the return."""
    if not lines and "x" not in text and "y" not in text and "w" not in text:
        text = f"({text}) + x * 0"
    return body_module(tmp_dir, "x, y, w", text, "zmlx_prop_rows", lines)


def _close(got, want, what: str, context: str, scale: float = 1.0, exact=None) -> None:
    """Same dtype and shape, values within 1e-4 relative and 1e-4 x the largest of `scale` and
    |want| absolute (integers and bools exactly). `exact`: the body's float64 result; where MLX's
    float32 `want` is itself off by more, the kernel may be off by up to 4x MLX's error (an
    ill-conditioned program, e.g. var(c + x) with c >> x: float32 evaluations in another order
    scatter around the exact value by about that much)."""
    if want.dtype == mx.float32:  # MLX's 0 * inf = NaN where the generated derivative has no term
        g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        w = np.where(np.isnan(w) & (g == 0), 0.0, w)
        if exact is not None and got.shape == want.shape:
            with np.errstate(invalid="ignore"):
                e = np.broadcast_to(np.asarray(exact, dtype=np.float64), w.shape)
                w = np.where(np.abs(g - e) <= 4 * np.abs(w - e), g, w)
        want = mx.array(w.astype(np.float32))
    finite = np.abs(np.asarray(want, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    scale = max(1.0, scale, float(finite.max()) if finite.size else 1.0)
    tol = 0 if want.dtype in (mx.int32, mx.int64, mx.uint32, mx.bool_) else 1e-4
    try:
        assert got.dtype == want.dtype and got.shape == want.shape, \
            f"{what}{got.dtype}{got.shape}, MLX {want.dtype}{want.shape}"
        assert_values(got, want, atol=tol * scale, rtol=tol, what=what)
    except AssertionError as e:
        raise AssertionError(f"{context}\n{e}") from None


def program_scale(kernel, args: Sequence[mx.array], D: int) -> float:
    """The largest finite |value| any float node of the kernel's program takes on these inputs (the
    float64 IR interpreter): float32 rounding errors are relative to it, so a result made small by
    cancellation (`mx.mean(x * x) - m * m` of large rows) is compared with that absolute slack."""
    names = list(inspect.signature(kernel.__wrapped__).parameters)
    return _largest(kernel.program(*args), {n: to_numpy(a) for n, a in zip(names, args)}, D)


def _largest(prog, values: dict, D: int) -> float:
    """The largest finite |value| (at least 1) of prog's float nodes on `values` (float64 interpreter)."""
    nodes = [n for n in toposort(prog.outputs) if n.dtype.is_float]
    scale = 1.0
    for v in interpret(nodes, values, mode="float64", rowsize=D):
        v = np.abs(np.asarray(v, dtype=np.float64))
        v = v[np.isfinite(v)]
        if v.size:
            scale = max(scale, float(v.max()))
    return scale


def backward_scale(kernel, args: Sequence[mx.array], ct: mx.array, D: int) -> float:
    """program_scale of the kernel's generated backward program (its cotangent ct): the largest
    |value| an adjoint takes on the way. A gradient made small by cancellation between paths
    (`s = c / m * (m * n)`: the adjoints of m, about c * n / m each, cancel) has rounding errors
    relative to it, not to the (cancelled) result."""
    bwd, roles, _, _ = kernel.compiled_for(tuple(args), {}, "mlx").backward
    out = kernel(*args)
    per_row = kernel.program(*args).output_lengths()[0] == 1 and out.ndim < args[0].ndim
    by_role = {("g", 0): ct.reshape(ct.shape + (1,)) if per_row else ct,
               ("y", 0): out.reshape(out.shape + (1,)) if per_row else out}
    values = {leaf.arg: to_numpy(args[k] if kind == "x" else by_role[(kind, k)])
              for (kind, k), leaf in zip(roles, bwd.program.inputs)}
    return _largest(bwd.program, values, D)


def forward_scale(kernel, args: Sequence[mx.array], tangents: Sequence[mx.array], D: int) -> float:
    """program_scale of the kernel's generated forward-mode program on these tangents: the largest
    |value| a tangent takes on the way (terms that cancel, as the adjoints in backward_scale)."""
    fwd, order, _ = kernel.compiled_for(tuple(args), {}, "mlx").forward_mode
    values = {leaf.arg: to_numpy(args[i] if kind == "x" else tangents[i])
              for (kind, i), leaf in zip(order, fwd.program.inputs)}
    return _largest(fwd.program, values, D)


def check_rows(tmp_dir, text: str, seed: int, y_mode: str, rows: int, D: int, backend: str,
           grads: bool = False, *, kind: str = "map_reduce", lines: Sequence[str] = (),
           scaled: bool = False) -> None:
    """The `kind` kernel ("map_reduce" or "reduce") of `def body(x, y, w): <lines>; return <text>`
    against the body run on each row in MLX: values, shape, dtype; with `grads`, its VJP with a
    random cotangent and its JVP (as the transpose). x is (rows, D), w (D,), y as `y_mode` says;
    `scaled`: absolute tolerances relative to the program's largest intermediate (program_scale)."""
    # var(ddof=1) of one element is 0/0: MLX's VJP then adds a zero cotangent times NaN to every
    # gradient, where the generated backward has no such term (a comparison's derivative is zero)
    if D == 1 and "ddof=1" in text + "".join(lines):
        assume(False)
    body, src = load_body(tmp_dir, text, lines)
    swap = next(iter(EAGER.items()))
    eager, _ = load_body(tmp_dir, text.replace(*swap), [t.replace(*swap) for t in lines])
    rng = np.random.default_rng(seed)
    x = mx.array(rng.uniform(-3, 3, size=(rows, D)).astype(np.float32))
    y = mx.array(rng.uniform(-3, 3, size=SHAPES[y_mode](rows, D)).astype(np.float32))
    w = mx.array(rng.uniform(-3, 3, size=(D,)).astype(np.float32))
    name, _, autodiff = backend.partition(":")
    kernel = getattr(zmlx, kind)(body, backend=name, **({"autodiff": autodiff} if autodiff else {}))

    def reference(x, y, w):  # the body on each row, as MLX runs it
        rows_y = [y if y_mode == "shared" else y[i] for i in range(rows)]  # per_row (rows, 1): a row of one
        return mx.stack([eager(x[i], rows_y[i], w) for i in range(rows)])

    context = f"{src}\nseed {seed}, y {y_mode}, rows {rows}, D {D} ({kind}, {backend})"
    want = reference(x, y, w)
    scale = program_scale(kernel, [x, y, w], D) if scaled else 1.0
    exact = _float64(lambda *a: [reference(*a)], [x, y, w])[0] if want.dtype == mx.float32 else None
    _close(kernel(x, y, w), want, "kernel vs MLX body: ", context, scale, exact)
    # MLX reduces a 1-element axis without its Reduce primitive, so a NaN max there passes the
    # cotangent on where the VJP of max (cotangent / count * mask) gives NaN: not compared
    if grads and want.dtype == mx.float32 and (D > 1 or bool(mx.all(mx.isfinite(want)).item())):
        ct = mx.array(rng.normal(size=want.shape).astype(np.float32))
        got_g = mx.vjp(kernel, [x, y, w], [ct])[1]
        want_g = mx.vjp(reference, [x, y, w], [ct])[1]
        exact_g = _float64(lambda *a: mx.vjp(reference, list(a[:3]), [a[3]])[1], [x, y, w, ct])
        # atol 1e-4 x the terms the gradient sums, or ~100 float32 ulps of the largest adjoint
        adjoint = 0.1 * backward_scale(kernel, [x, y, w], ct, D) if scaled else 0.0
        for arg, g, h, s, e in zip("xyw", got_g, want_g, _gradient_scales(eager, [x, y, w], ct), exact_g):
            _close(g, h, f"gradient of {arg}: ", context, max(s, adjoint), e)
        # Forward mode, checked as the transpose of MLX's VJP: <ct, J t> = <J^T ct, t>. (MLX's own
        # JVP of max/min takes the first arg-extremum where its VJP shares ties equally; the
        # generated tangent is consistent with the VJP.)
        tangents = [mx.array(rng.normal(size=a.shape).astype(np.float32)) for a in (x, y, w)]
        tangent = mx.jvp(kernel, [x, y, w], tangents)[1][0]
        lhs = float(mx.sum(ct * tangent).item())
        terms = [g * t for g, t in zip(want_g, tangents)]
        rhs = float(sum(mx.sum(p).item() for p in terms))
        size = float(sum(mx.sum(mx.abs(p)).item() for p in terms)) + abs(rhs)
        # or ~100 float32 ulps of the largest tangent on the way, per unit of |ct|
        cancelled = 1e-5 * forward_scale(kernel, [x, y, w], tangents, D) * float(mx.sum(mx.abs(ct)).item()) \
            if scaled else 0.0
        within = abs(lhs - rhs) <= max(1e-4 * max(1.0, size), cancelled)
        if not within and all(e is not None for e in exact_g):  # MLX's float32 VJP itself off (see _close)
            rhs64 = sum(float(np.sum(e * np.asarray(t, np.float64))) for e, t in zip(exact_g, tangents))
            within = abs(lhs - rhs64) <= 4 * abs(rhs - rhs64)
        if np.isfinite(rhs):
            assert within, f"{context}\nforward mode: <ct, J t> = {lhs}, <J^T ct, t> = {rhs}"


def _float64(fn, args: Sequence[mx.array]) -> list:
    """fn's results computed in float64 on the CPU (MLX's float64 is CPU-only), as NumPy arrays;
    Nones where an op has no float64 kernel."""
    try:
        with mx.stream(mx.cpu):
            outs = fn(*[a.astype(mx.float64) for a in args])
            return [np.asarray(o) for o in outs]
    except (ValueError, RuntimeError):
        return [None] * len(args)


def _gradient_scales(eager, args: Sequence[mx.array], ct: mx.array) -> list[float]:
    """Per argument, the size of the terms its gradient sums: the gradient of an input broadcast
    over rows (one value per row, or a shared row) adds one term per element it reaches, so its
    rounding error is relative to the sum of their magnitudes, not to the (possibly cancelled) sum."""
    full = args[0].shape

    def spread_body(*rows_of):  # the body on each row of full-shape arguments
        return mx.stack([eager(*[a[i] for a in rows_of]) for i in range(full[0])])
    terms = mx.vjp(spread_body, [mx.broadcast_to(a, full[:-1] + a.shape[-1:]) for a in args], [ct])[1]
    scales = []
    for a, t in zip(args, terms):
        axes = [i for i in range(len(full)) if i < len(full) - a.ndim or a.shape[i - len(full) + a.ndim] != full[i]]
        scales.append(float(mx.max(mx.sum(mx.abs(t), axis=axes) if axes else mx.abs(t)).item()))
    return scales


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop_rows")


@settings(max_examples=examples(120), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=row_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=st.sampled_from(sorted(SHAPES)),
       rows=st.sampled_from([1, 3]), D=st.sampled_from([1, 5, 37, 256]))
def test_random_row_bodies(prop_dir, eager_mlx, text, seed, y_mode, rows, D):
    check_rows(prop_dir, text, seed, y_mode, rows, D, "mlx")


@settings(max_examples=examples(60), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=row_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=st.sampled_from(sorted(SHAPES)),
       rows=st.sampled_from([1, 3]), D=st.sampled_from([1, 5, 37]))
def test_random_row_bodies_generated_gradients(prop_dir, eager_mlx, text, seed, y_mode, rows, D):
    check_rows(prop_dir, text, seed, y_mode, rows, D, "mlx:ir", grads=True)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
@settings(max_examples=examples(30), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=row_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=st.sampled_from(sorted(SHAPES)),
       rows=st.sampled_from([1, 3]), D=st.sampled_from([1, 5, 37, 256]))
def test_random_row_bodies_metal_sim(prop_dir, eager_mlx, text, seed, y_mode, rows, D):
    check_rows(prop_dir, text, seed, y_mode, rows, D, "metal-sim", grads=True)
