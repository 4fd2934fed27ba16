"""Every op of the registry (zmlx_dsl.ir.registry.OPS, row reductions aside): the kernel equals
the body run in MLX and the NumPy IR interpreter in float64, per dtype; and the IR's type rule
gives MLX's result dtype for every op and dtype combination.

Bodies are written as Python source (one module generated from the tables below) because kernels
are parsed from source files."""
from __future__ import annotations

import importlib.util
import itertools

import mlx.core as mx
import numpy as np
import pytest

from zmlx_dsl.ir import dtypes as dt
from zmlx_dsl.ir.build import apply
from zmlx_dsl.ir.node import Node
from zmlx_dsl.ir.registry import OPS
from conftest import BACKENDS, assert_close, assert_values, interpret_kernel, kernel_of, rand, to_numpy

# metal-sim (the generated MSL run on the CPU) checks every op at float32, float16, int32 and bool,
# mixed signs and IEEE special values; bfloat16 and the backend-independent checks (alias spellings
# resolve to the same IR, type rules come from the IR) run on the portable backend only.
PORTABLE = pytest.mark.parametrize("backend", ["mlx"])

# op -> (kernel body expression, reference expression for MLX or None = the same text)
# Operands: x, y (arrays), c (a bool array, the condition of where).
SPELL = {
    "add": "x + y", "sub": "x - y", "mul": "x * y", "div": "x / y", "floordiv": "x // y",
    "mod": "x % y", "power": "x ** y", "maximum": "mx.maximum(x, y)", "minimum": "mx.minimum(x, y)",
    "arctan2": "mx.arctan2(x, y)", "logaddexp": "mx.logaddexp(x, y)",
    "eq": "x == y", "ne": "x != y", "lt": "x < y", "le": "x <= y", "gt": "x > y", "ge": "x >= y",
    "logical_and": "mx.logical_and(x, y)", "logical_or": "mx.logical_or(x, y)",
    "logical_not": "mx.logical_not(x)", "where": "mx.where(c, x, y)",
    "neg": "-x", "abs": "mx.abs(x)", "sign": "mx.sign(x)", "square": "mx.square(x)",
    "reciprocal": "mx.reciprocal(x)", "sqrt": "mx.sqrt(x)", "rsqrt": "mx.rsqrt(x)",
    "floor": "mx.floor(x)", "ceil": "mx.ceil(x)", "round": "mx.round(x)",
    "exp": "mx.exp(x)", "exp2": ("np.exp2(x)", "mx.power(2.0, x)"), "expm1": "mx.expm1(x)",
    "log": "mx.log(x)", "log2": "mx.log2(x)", "log10": "mx.log10(x)", "log1p": "mx.log1p(x)",
    "sigmoid": "mx.sigmoid(x)", "erf": "mx.erf(x)", "erfinv": "mx.erfinv(x)",
    "sin": "mx.sin(x)", "cos": "mx.cos(x)", "tan": "mx.tan(x)", "arcsin": "mx.arcsin(x)",
    "arccos": "mx.arccos(x)", "arctan": "mx.arctan(x)", "sinh": "mx.sinh(x)", "cosh": "mx.cosh(x)",
    "tanh": "mx.tanh(x)", "arcsinh": "mx.arcsinh(x)", "arccosh": "mx.arccosh(x)",
    "arctanh": "mx.arctanh(x)", "isnan": "mx.isnan(x)", "isinf": "mx.isinf(x)",
    "isfinite": "mx.isfinite(x)", "stop_gradient": "mx.stop_gradient(x)",
}
# Alternative spellings resolved through the registry's Python names (math.*, builtins, methods).
ALIASES = {
    "abs": ["abs(x)", "x.abs()"], "power": ["mx.power(x, y)", "pow(x, y)"], "exp": ["x.exp()"],
    "sqrt": ["x.sqrt()"], "maximum": ["max(x, y)"], "minimum": ["min(x, y)"], "round": ["round(x)"],
    "add": ["mx.add(x, y)"], "div": ["mx.divide(x, y)"], "mod": ["mx.remainder(x, y)"],
    "floordiv": ["mx.floor_divide(x, y)"], "neg": ["mx.negative(x)"], "logical_not": ["not x"],
    "logical_and": ["x and y"], "logical_or": ["x or y"], "eq": ["mx.equal(x, y)"],
}
ALIAS_REF = {"round(x)": "mx.round(x)", "max(x, y)": "mx.maximum(x, y)", "min(x, y)": "mx.minimum(x, y)",
             "not x": "mx.logical_not(x)", "x and y": "mx.logical_and(x, y)", "x or y": "mx.logical_or(x, y)"}

# Input domain (low, high) per op for float inputs (x, y share it); well-conditioned regions.
DOMAIN = {
    "div": (0.5, 3.0), "floordiv": (0.5, 4.0), "mod": (0.5, 4.0), "power": (0.2, 2.5),
    "reciprocal": (0.3, 3.0), "sqrt": (0.0, 4.0), "rsqrt": (0.2, 4.0), "log": (0.1, 5.0),
    "log2": (0.1, 5.0), "log10": (0.1, 5.0), "log1p": (-0.8, 5.0), "erfinv": (-0.95, 0.95),
    "arcsin": (-0.95, 0.95), "arccos": (-0.95, 0.95), "arctanh": (-0.9, 0.9), "arccosh": (1.1, 5.0),
    "tan": (-1.2, 1.2), "exp": (-5.0, 5.0), "exp2": (-5.0, 5.0), "expm1": (-3.0, 3.0),
    "sinh": (-4.0, 4.0), "cosh": (-4.0, 4.0),
}
BINARY_NEGATIVE = {"floordiv", "mod"}  # also checked with mixed-sign operands below

INT_OPS = ["add", "sub", "mul", "floordiv", "mod", "power", "maximum", "minimum", "eq", "ne", "lt", "le",
           "gt", "ge", "logical_and", "logical_or", "logical_not", "where", "neg", "abs", "sign",
           "square", "floor", "ceil", "round", "isnan", "isinf", "isfinite", "stop_gradient",
           "exp", "sqrt", "sin", "div", "arctan2", "logaddexp", "sigmoid"]
BOOL_OPS = ["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "where",
            "maximum", "minimum", "add", "mul", "abs", "isnan", "isfinite", "exp", "sqrt", "square",
            "floor", "ceil", "round", "sign", "stop_gradient"]

ELEMENTWISE_OPS = sorted(n for n, op in OPS.items() if not op.reduction and not op.position)


def arity(name: str) -> int:
    return OPS[name].arity


def _texts(name: str) -> tuple[str, str]:
    s = SPELL[name]
    return (s, s) if isinstance(s, str) else s


def _params(name: str) -> str:
    return {1: "x", 2: "x, y", 3: "c, x, y"}[arity(name)]


@pytest.fixture(scope="module")
def bodies(tmp_path_factory):
    """A module with `k_<op>` (kernel body) and `r_<op>` (MLX reference) per op, plus aliases."""
    lines = ["import math", "import mlx.core as mx", "import numpy as np", ""]
    for name in ELEMENTWISE_OPS:
        if name not in SPELL:
            continue
        k, r = _texts(name)
        p = _params(name)
        lines += [f"def k_{name}({p}):", f"    return {k}", "", f"def r_{name}({p}):", f"    return {r}", ""]
    for name, alts in ALIASES.items():
        for i, a in enumerate(alts):
            p = _params(name)
            lines += [f"def a_{name}_{i}({p}):", f"    return {a}", "",
                      f"def ar_{name}_{i}({p}):", f"    return {ALIAS_REF.get(a, a)}", ""]
    path = tmp_path_factory.mktemp("ops") / "zmlx_op_bodies.py"
    path.write_text("\n".join(lines))
    spec = importlib.util.spec_from_file_location("zmlx_op_bodies", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_op_has_a_test():
    missing = [n for n in ELEMENTWISE_OPS if n not in SPELL]
    assert not missing, f"ops in the registry without a spelling in test_ops.SPELL: {missing}"


def make_args(name: str, dtype, rng, shape=(4, 5), yshape=(5,)):
    low, high = DOMAIN.get(name, (-3.0, 3.0))
    if dtype in (mx.int32, mx.uint32, mx.int64):
        low, high = (max(1, low), max(4, high)) if name in ("floordiv", "mod", "div") else (0, 3) \
            if name in ("power", "sqrt") else (-4, 4)
    x = rand(shape, dtype, rng=rng, low=low, high=high)
    y = rand(yshape, dtype, rng=rng, low=low, high=high)
    if arity(name) == 1:
        return [x]
    if arity(name) == 3:
        return [rand(shape, mx.bool_, rng=rng), x, y]
    return [x, y]


def interp_inputs(args, names):
    return {n: to_numpy(a) for n, a in zip(names, args)}


TOL64 = {mx.float32: (2e-6, 2e-5), mx.float16: (1e-3, 1e-3), mx.bfloat16: (8e-3, 8e-3)}
TOL_BODY = {mx.float16: (1e-3, 2e-3), mx.bfloat16: (8e-3, 1.6e-2)}


def check_op(bodies, backend, name, args, *, tol_interp=None):
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    ref = getattr(bodies, f"r_{name}")
    want = ref(*args)
    got = k(*args)
    mx.eval(got)
    d = want.dtype
    assert got.dtype == d, f"{name}: dtype {got.dtype}, MLX gives {d}"
    assert got.shape == want.shape
    atol, rtol = TOL_BODY.get(d, (1e-6, 1e-6) if d == mx.float32 else (0, 0))
    if name in ("power", "exp", "exp2", "sinh", "cosh", "expm1") and d == mx.float32:
        rtol = 4e-6  # large results: a couple of float32 ulps between implementations
    assert_values(got, want, atol=atol, rtol=rtol, what=f"{name} vs MLX: ")
    # the oracle: the kernel's own program in the float64 interpreter
    (oracle,) = interpret_kernel(k, *args, mode="float64")
    a64, r64 = tol_interp or TOL64.get(d, (0, 0))
    if d.__eq__(mx.bool_) or d in (mx.int32, mx.uint32, mx.int64):
        a64 = r64 = 0
    expected = oracle.astype(np.float64) if oracle.dtype.kind == "f" else oracle
    assert_values(got, np.broadcast_to(expected, got.shape), atol=a64, rtol=r64, what=f"{name} vs interpreter: ")


def _id(v):
    return str(v).split(".")[-1] if isinstance(v, mx.Dtype) else str(v)


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL])
def test_op_float32(bodies, backend, name, eager_mlx):
    rng = np.random.default_rng(sum(map(ord, name)))
    check_op(bodies, backend, name, make_args(name, mx.float32, rng))


@pytest.mark.parametrize("backend,dtype", [(b, d) for b in BACKENDS for d in (mx.float16, mx.bfloat16)
                                           if b == "mlx" or d == mx.float16], ids=_id)
@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL])
def test_op_half(bodies, backend, name, dtype, eager_mlx):
    rng = np.random.default_rng(sum(map(ord, name)) + 7)
    check_op(bodies, backend, name, make_args(name, dtype, rng))


@pytest.mark.parametrize("name", INT_OPS)
def test_op_int32(bodies, backend, name, eager_mlx):
    rng = np.random.default_rng(sum(map(ord, name)) + 11)
    check_op(bodies, backend, name, make_args(name, mx.int32, rng), tol_interp=(2e-6, 2e-5))


@pytest.mark.parametrize("name", BOOL_OPS)
def test_op_bool(bodies, backend, name, eager_mlx):
    rng = np.random.default_rng(sum(map(ord, name)) + 13)
    check_op(bodies, backend, name, make_args(name, mx.bool_, rng), tol_interp=(2e-6, 2e-5))


@pytest.mark.parametrize("name", sorted(BINARY_NEGATIVE))
@pytest.mark.parametrize("dtype", [mx.int32, mx.float32], ids=_id)
def test_floor_ops_mixed_signs(bodies, backend, name, dtype, eager_mlx):
    a = np.array([-7, 7, -7, 7, -1, 1, 0, 9, -9, -8, 8], dtype=np.float64)
    b = np.array([2, -2, -2, 2, 5, -5, 3, -4, 4, 4, -4], dtype=np.float64)
    x, y = mx.array(a.astype(np.float32)).astype(dtype), mx.array(b.astype(np.float32)).astype(dtype)
    check_op(bodies, backend, name, [x, y])
    py = np.floor_divide(a, b) if name == "floordiv" else np.mod(a, b)
    got = to_numpy(kernel_of(getattr(bodies, f"k_{name}"), backend)(x, y))
    assert (got == py).all(), (got, py)


SPECIAL_VALUES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -2.5, 2.5, np.inf, -np.inf, np.nan,
                           1e-30, -1e-30, 80.0, -80.0, 100.0, 3e38], dtype=np.float32)


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL and arity(n) == 1])
def test_unary_special_values(bodies, backend, name, eager_mlx):
    """IEEE edge values (±0, ±inf, NaN, overflow, ties of round) match MLX exactly in class."""
    x = mx.array(SPECIAL_VALUES)
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    want, got = getattr(bodies, f"r_{name}")(x), k(x)
    # metal-sim: MLX's CPU erf flushes erf(+-1e-30) to 0; the kernel's 1.13e-30 is the true value
    atol = 1.2e-30 if backend == "metal-sim" and name == "erf" else 0
    assert_close(got, want, atol=atol, rtol=4e-6, what=f"{name}: ")


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL and arity(n) == 2])
def test_binary_special_values(bodies, backend, name, eager_mlx):
    v = SPECIAL_VALUES[:12]
    x, y = mx.array(np.repeat(v, len(v))), mx.array(np.tile(v, len(v)))
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    want, got = getattr(bodies, f"r_{name}")(x, y), k(x, y)
    assert_close(got, want, atol=0, rtol=4e-6, what=f"{name}: ")


@PORTABLE
@pytest.mark.parametrize("name,i,text", [(n, i, a) for n, alts in ALIASES.items() for i, a in enumerate(alts)])
def test_alias_spellings(bodies, backend, name, i, text, eager_mlx):
    rng = np.random.default_rng(i)
    dtype = mx.bool_ if name.startswith("logical") else mx.float32
    args = make_args(name, dtype, rng)
    k = kernel_of(getattr(bodies, f"a_{name}_{i}"), backend)
    want = getattr(bodies, f"ar_{name}_{i}")(*args)
    assert_close(k(*args), want, atol=1e-6, rtol=1e-6)
    assert f"{name}(" in k.ir(*args)


# ---- type rules ---------------------------------------------------------------------------------

TYPE_DTYPES = [mx.bool_, mx.int32, mx.int64, mx.uint32, mx.float16, mx.bfloat16, mx.float32]


def _mlx_result(ref, arrays):
    try:
        out = ref(*arrays)
        mx.eval(out)
        return out.dtype
    except (ValueError, TypeError, RuntimeError) as e:
        return e


@PORTABLE
@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL])
def test_type_rules_match_mlx(bodies, backend, name, eager_mlx):
    """For every dtype combination: the IR node's dtype and the kernel's output dtype are MLX's
    result dtype; where MLX refuses the combination, so does the kernel (never a silent result)."""
    ref = getattr(bodies, f"r_{name}")
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    n_arr = arity(name) if name != "where" else 2
    failures = []
    for combo in itertools.product(TYPE_DTYPES, repeat=n_arr):
        arrays = [mx.ones((2,), d) for d in combo]
        if name == "where":
            arrays = [mx.array([True, False])] + arrays
        want = _mlx_result(ref, arrays)
        nodes = [Node("input", (), dt.from_mx(a.dtype), f"a{i}") for i, a in enumerate(arrays)]
        if isinstance(want, Exception):
            try:
                got = k(*arrays)
                mx.eval(got)
                failures.append(f"{combo}: MLX raises ({want}) but the kernel returned {got.dtype}")
            except Exception:
                pass
            continue
        ir_dtype = apply(name, *nodes).dtype.mx if name != "exp2" else None
        got = k(*arrays).dtype
        if (ir_dtype is not None and ir_dtype != want) or got != want:
            failures.append(f"{combo}: MLX {want}, IR {ir_dtype}, kernel {got}")
    assert not failures, f"{name}:\n" + "\n".join(failures)


@PORTABLE
@pytest.mark.parametrize("name", [n for n in ELEMENTWISE_OPS if n in SPELL and arity(n) == 2])
@pytest.mark.parametrize("scalar", [2, 2.5, True], ids=str)
def test_weak_scalar_type_rules(bodies, backend, name, scalar, eager_mlx):
    """An array with a Python scalar (MLX's weak typing), either side."""
    ref = getattr(bodies, f"r_{name}")
    k = kernel_of(getattr(bodies, f"k_{name}"), backend)
    failures = []
    for d in TYPE_DTYPES:
        a = mx.ones((2,), d)
        for args in ((a, scalar), (scalar, a)):
            want = _mlx_result(ref, args)
            if isinstance(want, Exception):
                continue
            got = k(*args)
            if got.dtype != want:
                failures.append(f"{d} {args[0] if not isinstance(args[0], mx.array) else 'array'} "
                                f"{args[1] if not isinstance(args[1], mx.array) else 'array'}: MLX {want}, kernel {got.dtype}")
            else:
                assert_close(got, ref(*args))
    assert not failures, f"{name} with {scalar!r}:\n" + "\n".join(failures)


def test_every_op_has_a_c_spelling_and_the_registry_no_c_text():
    """The registry says what an op is; its C text lives in backend/c_ops.py (one entry per op)."""
    from zmlx_dsl.backend.c_ops import SPELLINGS
    from zmlx_dsl.backend.cuda import RENDERER as CUDA
    # a fold is rendered as a loop, positions by the row writer: neither is spelled
    assert set(SPELLINGS) == set(OPS) - {"fold"} - {n for n, op in OPS.items() if op.position}
    assert set(CUDA.spellings) == set(SPELLINGS)
    import inspect
    import zmlx_dsl.ir.registry as registry
    assert "{0}" not in inspect.getsource(registry) and "zmlx_" not in inspect.getsource(registry)
