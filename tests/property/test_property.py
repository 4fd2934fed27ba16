"""Property test: random kernel bodies over the registry's ops, rendered as Python source
into a module file, imported and decorated. For each: the IR interpreter (NumPy, every node
rounded to its dtype) = the portable backend = the body run in MLX; and on "metal-sim" (the generated
MSL run on the CPU; a C++ compile per program, so fewer examples) = the interpreter = the MLX body.
For float bodies, also mx.vjp with random cotangents and mx.jvp with random tangents = the same
transforms of the body: through the generated derivative programs (the portable backend with
autodiff="ir", and metal-sim) and the portable default.

Operands of ops with restricted domains are wrapped (log(|a| + 1), arcsin(tanh(a) * 0.99), ...)
so that NaN and inf do not dominate. `mx.compile` is disabled here (see conftest.eager_mlx): each
random program would otherwise JIT-compile C++ on the CPU (~1 s each); the compiled path is
exercised by the other test files, and a few examples here run compiled as well."""
from __future__ import annotations

import importlib.util
import itertools
import re

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import zmlx_dsl as zmlx
from zmlx_dsl.ir.interpret import interpret
from zmlx_dsl.ir.node import toposort
from zmlx_dsl.ir.registry import OPS
from conftest import HAVE_METAL_SIM, assert_values, examples, to_numpy

# {a}, {b}: float operands; {p}, {q}: bool operands
FLOAT_OPS = {
    "add": "({a} + {b})", "sub": "({a} - {b})", "mul": "({a} * {b})",
    "div": "({a} / (mx.abs({b}) + 0.5))", "floordiv": "({a} // (mx.abs({b}) + 0.5))",
    "mod": "({a} % (mx.abs({b}) + 0.5))", "power": "mx.power(mx.abs({a}) + 0.5, mx.tanh({b}))",
    "maximum": "mx.maximum({a}, {b})", "minimum": "mx.minimum({a}, {b})",
    "arctan2": "mx.arctan2({a}, {b})", "logaddexp": "mx.logaddexp({a}, {b})",
    "where": "mx.where({p}, {a}, {b})",
    "neg": "(-{a})", "abs": "mx.abs({a})", "sign": "mx.sign({a})", "square": "mx.square({a})",
    "reciprocal": "mx.reciprocal(mx.abs({a}) + 0.5)", "sqrt": "mx.sqrt(mx.abs({a}))",
    "rsqrt": "mx.rsqrt(mx.abs({a}) + 0.5)", "floor": "mx.floor({a})", "ceil": "mx.ceil({a})",
    "round": "mx.round({a})", "exp": "mx.exp(mx.clip({a}, -10.0, 10.0))",
    "exp2": "np.exp2(mx.clip({a}, -10.0, 10.0))", "expm1": "mx.expm1(mx.clip({a}, -10.0, 10.0))",
    "log": "mx.log(mx.abs({a}) + 1.0)", "log2": "mx.log2(mx.abs({a}) + 1.0)",
    "log10": "mx.log10(mx.abs({a}) + 1.0)", "log1p": "mx.log1p(mx.abs({a}))",
    "sigmoid": "mx.sigmoid({a})", "erf": "mx.erf({a})", "erfinv": "mx.erfinv(mx.tanh({a}) * 0.9)",
    "sin": "mx.sin({a})", "cos": "mx.cos({a})", "tan": "mx.tan(mx.tanh({a}))",
    "arcsin": "mx.arcsin(mx.tanh({a}) * 0.99)", "arccos": "mx.arccos(mx.tanh({a}) * 0.99)",
    "arctan": "mx.arctan({a})", "sinh": "mx.sinh(mx.clip({a}, -5.0, 5.0))",
    "cosh": "mx.cosh(mx.clip({a}, -5.0, 5.0))", "tanh": "mx.tanh({a})", "arcsinh": "mx.arcsinh({a})",
    "arccosh": "mx.arccosh(mx.abs({a}) + 1.0)", "arctanh": "mx.arctanh(mx.tanh({a}) * 0.9)",
    "stop_gradient": "mx.stop_gradient({a})",
}
BOOL_OPS = {
    "eq": "({a} == {b})", "ne": "({a} != {b})", "lt": "({a} < {b})", "le": "({a} <= {b})",
    "gt": "({a} > {b})", "ge": "({a} >= {b})", "logical_and": "mx.logical_and({p}, {q})",
    "logical_or": "mx.logical_or({p}, {q})", "logical_not": "mx.logical_not({p})",
    "isnan": "mx.isnan({a})", "isinf": "mx.isinf({a})", "isfinite": "mx.isfinite({a})",
}
# The eager-MLX spelling where the kernel spelling is not an MLX function.
EAGER = {"np.exp2(": "mx.power(2.0, "}

INT_OPS = {
    "add": "({a} + {b})", "sub": "({a} - {b})", "mul": "({a} * {b})",
    "floordiv": "({a} // (mx.abs({b}) + 1))", "mod": "({a} % (mx.abs({b}) + 1))",
    "maximum": "mx.maximum({a}, {b})", "minimum": "mx.minimum({a}, {b})", "neg": "(-{a})",
    "abs": "mx.abs({a})", "sign": "mx.sign({a})", "square": "mx.square({a})",
    "where": "mx.where({p}, {a}, {b})",
}
INT_BOOL = {"eq": "({a} == {b})", "lt": "({a} < {b})", "ge": "({a} >= {b})",
            "logical_not": "mx.logical_not({p})", "logical_and": "mx.logical_and({p}, {q})"}


def test_generator_covers_every_op():
    ops = {n for n, op in OPS.items() if not op.reduction and not op.position}
    assert ops - set(FLOAT_OPS) - set(BOOL_OPS) == set()


def expr_text(draw, table, btable, leaves, depth: int, kind: str) -> str:
    if kind == "a":  # first operands are arrays: eager MLX rejects Python scalars in some
        kind = "f"      # functions (mx.stop_gradient(0.5), mx.clip(2, ...))
        leaves = [v for v in leaves if v in ("x", "y", "z")]
    if kind == "b":
        name = draw(st.sampled_from(sorted(btable)))
        tmpl = btable[name]
    else:
        if depth == 0 or draw(st.integers(0, 4)) == 0:
            return draw(st.sampled_from(leaves))
        name = draw(st.sampled_from(sorted(table)))
        tmpl = table[name]
    sub = {}
    for slot in ("a", "b"):
        if "{" + slot + "}" in tmpl:
            sub[slot] = expr_text(draw, table, btable, leaves, max(depth - 1, 0), "a" if slot == "a" else "f")
    for slot in ("p", "q"):
        if "{" + slot + "}" in tmpl:
            sub[slot] = expr_text(draw, table, btable, leaves, max(depth - 1, 0), "b")
    return tmpl.format(**sub)


@st.composite
def float_bodies(draw):
    leaves = ["x", "y", "z", "0.5", "2.0", "(-1.25)", "s"]
    n_out = draw(st.integers(1, 2))
    outs = [expr_text(draw, FLOAT_OPS, BOOL_OPS, leaves, draw(st.integers(1, 4)), "f") for _ in range(n_out)]
    return outs


@st.composite
def int_bodies(draw):
    leaves = ["x", "y", "z", "3", "(-2)", "s"]
    return [expr_text(draw, INT_OPS, INT_BOOL, leaves, draw(st.integers(1, 4)), "f") for _ in range(draw(st.integers(1, 2)))]


_counter = itertools.count()


def load_body(tmp_dir, outs: list[str], eager: bool = False):
    """Write `def body(x, y, z, s): return <outs>` to a fresh module file and import it."""
    texts = outs
    if eager:
        texts = [o for o in outs]
        for k, v in EAGER.items():
            texts = [t.replace(k, v) for t in texts]
    # an output made only of literals/the scalar would not be an array: anchor it on x
    texts = [t if re.search(r"\b[xyz]\b", t) else f"({t} + x * 0)" for t in texts]
    ret = ", ".join(texts) + ("," if len(texts) > 1 else "")
    return body_module(tmp_dir, "x, y, z, s", ret, f"zmlx_prop_{'e' if eager else 'k'}")


def body_module(tmp_dir, params: str, returned: str, prefix: str, lines=()):
    """`def body(<params>): <lines>; return <returned>` written to a fresh module file (kernels
    need a source file) and imported; returns (body, source)."""
    src = f"import mlx.core as mx\nimport numpy as np\n\n\ndef body({params}):\n" + \
        "".join(f"    {t}\n" for t in lines) + f"    return {returned}\n"
    name = f"{prefix}_{next(_counter)}"
    path = tmp_dir / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.body, src


SHAPES = [((3, 4), (4,), (3, 1)), ((5,), (5,), (5,)), ((2, 3, 2), (3, 1), ()), ((0, 3), (3,), (1, 3))]


def check_rows(tmp_dir, outs, dtype, seed, shapes, scalar, backend, tol):
    body_k, src = load_body(tmp_dir, outs)
    body_e, _ = load_body(tmp_dir, outs, eager=True)
    rng = np.random.default_rng(seed)
    if dtype == mx.int32:
        args = [mx.array(rng.integers(-6, 7, size=s).astype(np.int32)) for s in shapes]
    else:
        args = [mx.array(rng.uniform(-3, 3, size=s).astype(np.float32)) for s in shapes]
    k = zmlx.elementwise(body_k, backend=backend)
    got = k(*args, scalar)
    want = body_e(*args, scalar)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    prog = k.program(*args, scalar)
    inputs = {n: to_numpy(a) for n, a in zip("xyz", args)}
    inputs["s"] = scalar
    oracle = interpret(prog.outputs, inputs, mode="faithful")
    # scale for the absolute tolerance: the largest finite intermediate value of the program
    nodes = [n for n in toposort(prog.outputs) if n.dtype.is_float]
    scale = 1.0
    for v in interpret(nodes, inputs, mode="faithful"):
        v = np.abs(np.asarray(v, dtype=np.float64))
        v = v[np.isfinite(v)]
        if v.size:
            scale = max(scale, float(v.max()))
    for i, (g, w, o) in enumerate(zip(got, want, oracle)):
        assert g.dtype == w.dtype, f"{src}\noutput {i}: kernel {g.dtype}, MLX {w.dtype}"
        assert g.shape == w.shape, f"{src}\noutput {i}: kernel {g.shape}, MLX {w.shape}"
        atol, rtol = (0, 0) if dtype == mx.int32 else (tol * scale, tol)
        try:
            assert_values(g, w, atol=atol, rtol=rtol, what="kernel vs MLX body: ")
            o = np.broadcast_to(np.asarray(o), g.shape)
            assert_values(g, o.astype(np.float64) if o.dtype.kind == "f" else o,
                          atol=atol, rtol=rtol, what="kernel vs interpreter: ")
        except AssertionError as e:
            raise AssertionError(f"{src}\nargs seed {seed}, shapes {shapes}, s={scalar}\noutput {i}: {e}") from None


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop")


@settings(max_examples=examples(300), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES),
       scalar=st.sampled_from([0.75, -2.0, 3]))
def test_random_float_bodies(prop_dir, eager_mlx, outs, seed, shapes, scalar):
    for b in ["mlx"]:
        check_rows(prop_dir, outs, mx.float32, seed, shapes, scalar, b, tol=2e-5)


@settings(max_examples=examples(150), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=int_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES),
       scalar=st.sampled_from([2, -3]))
def test_random_int_bodies(prop_dir, eager_mlx, outs, seed, shapes, scalar):
    for b in ["mlx"]:
        check_rows(prop_dir, outs, mx.int32, seed, shapes, scalar, b, tol=0)


@settings(max_examples=examples(8), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1))
def test_random_bodies_compiled(prop_dir, outs, seed):
    """A few random programs through the real (mx.compile'd) portable backend."""
    for b in ["mlx"]:
        check_rows(prop_dir, outs, mx.float32, seed, SHAPES[0], 0.75, b, tol=2e-5)


needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")


@needs_sim
@settings(max_examples=examples(60), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES),
       scalar=st.sampled_from([0.75, -2.0, 3]))
def test_random_float_bodies_metal_sim(prop_dir, eager_mlx, outs, seed, shapes, scalar):
    check_rows(prop_dir, outs, mx.float32, seed, shapes, scalar, "metal-sim", tol=2e-5)


@needs_sim
@settings(max_examples=examples(30), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=int_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES),
       scalar=st.sampled_from([2, -3]))
def test_random_int_bodies_metal_sim(prop_dir, eager_mlx, outs, seed, shapes, scalar):
    check_rows(prop_dir, outs, mx.int32, seed, shapes, scalar, "metal-sim", tol=0)


# ---- gradients: mx.vjp through the kernel = mx.vjp of the body, random cotangents ---------------

def _check_vjp(tmp_dir, outs, seed, shapes, scalar, backend):
    """backend may be "mlx:ir" (the generated backward, run as MLX ops). Skipped: one array
    returned twice or an output cut off by stop_gradient, where MLX 0.32.4's own VJP pairs
    cotangents with outputs by array object (it drops or shifts one); kernels differentiate the
    function, so they differ from MLX there by design."""
    assume(not any(o == p and o.isidentifier() for i, o in enumerate(outs) for p in outs[:i]))
    assume(not any(o.startswith("mx.stop_gradient(") for o in outs))
    body_k, src = load_body(tmp_dir, outs)
    body_e, _ = load_body(tmp_dir, outs, eager=True)
    rng = np.random.default_rng(seed)
    args = [mx.array(rng.uniform(-3, 3, size=s).astype(np.float32)) for s in shapes]
    name, _, autodiff = backend.partition(":")
    k = zmlx.elementwise(body_k, backend=name, **({"autodiff": autodiff} if autodiff else {}))
    want_out = body_e(*args, scalar)
    want_out = want_out if isinstance(want_out, tuple) else (want_out,)
    assume(all(o.dtype == mx.float32 and o.size for o in want_out))
    cts = [mx.array(rng.normal(size=o.shape).astype(np.float32)) for o in want_out]
    want = mx.vjp(lambda *a: body_e(*a, scalar), args, cts)[1]
    got = mx.vjp(lambda *a: k(*a, scalar), args, cts)[1]
    tangents = [mx.array(rng.normal(size=a.shape).astype(np.float32)) for a in args]
    got_t = mx.jvp(lambda *a: k(*a, scalar), args, tangents)[1]
    want_t = mx.jvp(lambda *a: body_e(*a, scalar), args, tangents)[1]
    pairs = [(f"gradient of {'xyz'[i]}: ", g, w) for i, (g, w) in enumerate(zip(got, want))]
    pairs += [(f"tangent of output {i}: ", g, w) for i, (g, w) in enumerate(zip(got_t, want_t))]
    for what, g, w in pairs:
        # where an op with zero derivative (floor, ceil, round, sign, a comparison) feeds one with
        # an infinite derivative (sqrt at 0), MLX multiplies 0 by inf and gets NaN; the generated
        # derivative has no term for a zero factor and gives 0 -- accepted, only at such points
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        w = np.where(np.isnan(w) & (g == 0), 0.0, w)
        finite = np.abs(np.asarray(w, dtype=np.float64))
        finite = finite[np.isfinite(finite)]
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        try:
            assert_values(g, w, atol=1e-4 * scale, rtol=1e-4, what=what)
        except AssertionError as e:
            raise AssertionError(f"{src}\n{backend}, args seed {seed}, shapes {shapes}, s={scalar}\n{e}") from None


@settings(max_examples=examples(150), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES),
       scalar=st.sampled_from([0.75, -2.0]))
def test_random_float_gradients(prop_dir, eager_mlx, outs, seed, shapes, scalar):
    _check_vjp(prop_dir, outs, seed, shapes, scalar, "mlx:ir")


@settings(max_examples=examples(40), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES))
def test_random_float_gradients_native(prop_dir, eager_mlx, outs, seed, shapes):
    """The portable default (MLX differentiates the kernel's ops): shared output nodes included."""
    _check_vjp(prop_dir, outs, seed, shapes, 0.75, "mlx")


@needs_sim
@settings(max_examples=examples(20), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(outs=float_bodies(), seed=st.integers(0, 2**31 - 1), shapes=st.sampled_from(SHAPES))
def test_random_float_gradients_metal_sim(prop_dir, eager_mlx, outs, seed, shapes):
    _check_vjp(prop_dir, outs, seed, shapes, -2.0, "metal-sim")
