"""The op registry: the single source of truth for every operation.

One `Op` per operation holds its Python spellings, arity, type rule, derivative rule (as IR),
its NumPy and MLX implementations and its C spelling (shared by the Metal and CUDA renderers,
with per-backend overrides and helper functions emitted only when used). Adding an op means
adding one entry here; no frontend, autodiff or backend code changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import mlx.core as mx
import numpy as np

from ..errors import ZMLXGradientError
from . import dtypes as dt
from .build import apply, cast, where
from .node import Node

# A derivative rule: (args, y, g) -> one adjoint (or None) per argument; y is the op's own node.
GradRule = Callable[[tuple[Node, ...], Node, Node], tuple[Optional[Node], ...]]
TypeRule = Callable[[tuple[dt.DType, ...]], tuple[Optional[dt.DType], dt.DType]]


@dataclass(frozen=True)
class Helper:
    """A C function an op needs on some backend; `code` uses {q} for the function qualifier."""

    name: str
    code: str


@dataclass(frozen=True)
class Op:
    """One operation. `c` spells it in C ({0}, {1}… are operands; a dict keys it by dtype kind
    'f'/'i'/'u'/'b'); `c_by_backend` overrides it per backend; `prec` is the C precedence of the
    spelling (for parenthesisation), 0 for function-call form."""

    name: str
    arity: int
    names: tuple[str, ...]
    types: TypeRule
    np: Callable
    mx: Callable
    c: object
    grad: Optional[GradRule] = None
    prec: int = 0
    c_by_backend: dict = field(default_factory=dict)
    helpers: dict = field(default_factory=dict)       # backend ('c' = every C backend) -> Helper
    keep_type_args: tuple[int, ...] = ()
    reduction: bool = False
    jvp: Optional[GradRule] = None  # forward-mode rule (args, y, t_arg); only reductions need one
    identity: Optional[float] = None  # associative reductions: the combine's neutral element
    # The node carries a `Lambda` in `arg` ("fold"): `np` and `mx` are then called as
    # fn(node, run, *args), where run(lam, values) evaluates lam's body with its parameters bound
    # to values, in the caller's semantics (the interpreter's mode; MLX ops).
    graph: bool = False

    def spelling(self, backend: str, kind: str) -> str:
        c = self.c_by_backend.get(backend, self.c)
        return c.get(kind, c.get("*")) if isinstance(c, dict) else c

    def helper(self, backend: str) -> Optional[Helper]:
        return self.helpers.get(backend, self.helpers.get("c"))


OPS: dict[str, Op] = {}
BY_PY_NAME: dict[str, str] = {}


def _register(op: Op) -> None:
    OPS[op.name] = op
    for n in op.names:
        BY_PY_NAME[n] = op.name


# ---- type rules ----------------------------------------------------------------------------

def _common(ts):
    out = ts[0]
    for t in ts[1:]:
        out = dt.promote(out, t)
    return out


def same(ts):          # result has the promoted operand type
    c = _common(ts)
    return c, c


def floating(ts):      # exp, sqrt, / ...: ints and bool computed as float32
    c = dt.float_of(_common(ts))
    return c, c


def predicate(ts):     # comparisons: operands promoted, result bool
    return _common(ts), dt.bool_


def float_predicate(ts):  # isnan...: no conversion of the operand
    return None, dt.bool_


def logical(ts):
    return dt.bool_, dt.bool_


def select(ts):
    c = dt.promote(ts[1], ts[2])
    return c, c


def row_reduce(ts):
    return ts[0], ts[0]


def row_sum(ts):
    """MLX sums booleans as int32."""
    t = dt.int32 if ts[0] == dt.bool_ else ts[0]
    return t, t


# ---- numpy helpers (the interpreter's definitions) -----------------------------------------

_np_erf = np.vectorize(math.erf, otypes=[np.float64])


def _np_erfinv(y):
    y = np.asarray(y, dtype=np.float64)
    # Giles' single-precision approximation, then Newton steps on erf in float64.
    w = -np.log(np.maximum((1.0 - y) * (1.0 + y), 1e-300))
    x = np.where(w < 5.0, _giles_small(w - 2.5), _giles_large(np.sqrt(w) - 3.0)) * y
    for _ in range(3):
        with np.errstate(all="ignore"):
            x = x - (_np_erf(x) - y) / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    x = np.where(np.abs(y) == 1.0, np.copysign(np.inf, y), x)
    return np.where(np.abs(y) > 1.0, np.nan, x)


def _giles_small(w):
    p = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
              -0.00417768164, 0.246640727, 1.50140941):
        p = c + p * w
    return p


def _giles_large(w):
    p = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
              0.00943887047, 1.00167406, 2.83297682):
        p = c + p * w
    return p


def _np_round(x):
    return np.round(x)  # half to even, as MLX


def _np_sign(x):
    x = np.asarray(x)
    return x if x.dtype == np.bool_ else np.sign(x)  # NumPy has no bool sign; MLX's is the identity


def _np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _np_rowmax(x):
    return np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.full(x.shape[:-1] + (1,), -np.inf, x.dtype)


def _np_rowmin(x):
    return np.min(x, axis=-1, keepdims=True) if x.shape[-1] else np.full(x.shape[:-1] + (1,), np.inf, x.dtype)


# ---- C helpers (plain C, valid Metal and CUDA; {q} is the backend's function qualifier) ----

ERF = Helper("zmlx_erf", """\
{q} float zmlx_erf(float x) {{
  // Abramowitz-Stegun 7.1.26 is too coarse; this is the rational fit used by XLA (|err| < 1e-7).
  if (isnan(x)) return x;  // the clamp below (fmin/fmax drop a NaN operand) would give -1
  const float clamped = fmin(fmax(x, -4.0f), 4.0f);
  const float x2 = clamped * clamped;
  float p = -2.72614225801306e-10f;
  p = fma(p, x2, 2.77068142495902e-08f);
  p = fma(p, x2, -2.10102402082508e-06f);
  p = fma(p, x2, -5.69250639462346e-05f);
  p = fma(p, x2, -7.34990630326855e-04f);
  p = fma(p, x2, -2.95459980854025e-03f);
  p = fma(p, x2, -1.60960333262415e-02f);
  float q = -1.45660718464996e-05f;
  q = fma(q, x2, -2.13374055278905e-04f);
  q = fma(q, x2, -1.68282697438203e-03f);
  q = fma(q, x2, -7.37332916720468e-03f);
  q = fma(q, x2, -1.42647390514189e-02f);
  return clamped * p / q;
}}
""")

ERFINV = Helper("zmlx_erfinv", """\
{q} float zmlx_erfinv(float y) {{
  // Giles, "Approximating the erfinv function" (single precision branch-per-region form).
  float w = -log((1.0f - y) * (1.0f + y));
  float p;
  if (w < 5.0f) {{
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = fma(p, w, 3.43273939e-07f);
    p = fma(p, w, -3.5233877e-06f);
    p = fma(p, w, -4.39150654e-06f);
    p = fma(p, w, 0.00021858087f);
    p = fma(p, w, -0.00125372503f);
    p = fma(p, w, -0.00417768164f);
    p = fma(p, w, 0.246640727f);
    p = fma(p, w, 1.50140941f);
  }} else {{
    w = sqrt(w) - 3.0f;
    p = -0.000200214257f;
    p = fma(p, w, 0.000100950558f);
    p = fma(p, w, 0.00134934322f);
    p = fma(p, w, -0.00367342844f);
    p = fma(p, w, 0.00573950773f);
    p = fma(p, w, -0.0076224613f);
    p = fma(p, w, 0.00943887047f);
    p = fma(p, w, 1.00167406f);
    p = fma(p, w, 2.83297682f);
  }}
  return fabs(y) == 1.0f ? copysign(INFINITY, y) : p * y;
}}
""")

SIGMOID = Helper("zmlx_sigmoid", """\
{q} float zmlx_sigmoid(float x) {{
  // exp of a non-positive argument only, so neither tail overflows.
  const float e = exp(-fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}}
""")

LOG1P = Helper("zmlx_log1p", """\
{q} float zmlx_log1p(float x) {{
  // Kahan's trick: exact where 1 + x rounds, accurate for tiny x.
  const float u = 1.0f + x;
  if (u == INFINITY) return u;  // x = inf: log(u) * (inf / inf) would be NaN
  return u == 1.0f ? x : log(u) * (x / (u - 1.0f));
}}
""")

EXPM1 = Helper("zmlx_expm1", """\
{q} float zmlx_expm1(float x) {{
  // Kahan's trick: (e^x - 1) corrected by x / log(e^x).
  const float u = exp(x);
  if (u == 1.0f) return x;
  if (isinf(u)) return u;  // overflow (x > ~88.7, inf): the correction inf * x / inf would be NaN
  const float um1 = u - 1.0f;
  return um1 == -1.0f ? -1.0f : um1 * x / log(u);
}}
""")

LOGADDEXP = Helper("zmlx_logaddexp", """\
{q} float zmlx_logaddexp(float a, float b) {{
  // max + log1p(exp(-|a - b|)): never overflows; infinities of equal sign stay exact.
  if (isnan(a) || isnan(b)) return a + b;  // fmax/fmin below drop a NaN operand
  const float hi = fmax(a, b);
  const float lo = fmin(a, b);
  if (isinf(hi) && hi == lo) return hi;
  return hi + zmlx_log1p(exp(lo - hi));
}}
""")

FLOORDIV_INT = Helper("zmlx_floordiv", """\
template <typename I> {q} I zmlx_floordiv(I a, I b) {{
  // Python/MLX floor division (C's / truncates toward zero). By zero: 0, as MLX; by -1: the
  // negation, wrapping for the most negative value (C's division would fault or be undefined).
  if (b == I(0)) return I(0);
  if (I(-1) < I(0) && b == I(-1)) return I(0) - a;
  const I q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}}
""")

MOD_INT = Helper("zmlx_mod", """\
template <typename I> {q} I zmlx_mod(I a, I b) {{
  // Python/MLX remainder: the sign of the divisor. By zero: a, as MLX; by -1: 0.
  if (b == I(0)) return a;
  if (I(-1) < I(0) && b == I(-1)) return I(0);
  const I r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}
""")

FMAX = Helper("zmlx_fmax", """\
{q} float zmlx_fmax(float a, float b) {{
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}}
""")

FMIN = Helper("zmlx_fmin", """\
{q} float zmlx_fmin(float a, float b) {{
  // MLX's minimum: a NaN operand gives NaN (Metal's and CUDA's min/fmin return the other operand).
  return isnan(a) || a < b ? a : b;
}}
""")

POW_INT = Helper("zmlx_ipow", """\
template <typename I> {q} I zmlx_ipow(I base, I e) {{
  // Integer power by squaring, as MLX (pow is floating-point only); a negative exponent gives 0.
  if (e < 0) return I(0);
  I r = I(1);
  for (; e != I(0); e >>= 1) {{
    if (e & I(1)) r *= base;
    base *= base;
  }}
  return r;
}}
""")

FMOD_FLOAT = Helper("zmlx_fmod", """\
{q} float zmlx_fmod(float a, float b) {{
  // Python/MLX remainder for floats: the sign of the divisor.
  const float r = fmod(a, b);
  return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
}}
""")

_HELPER_DEPS = {"zmlx_logaddexp": ("zmlx_log1p",)}


def helper_deps(name: str) -> tuple[str, ...]:
    """Helpers a helper calls (emitted before it)."""
    return _HELPER_DEPS.get(name, ())


HELPERS = {h.name: h for h in (ERF, ERFINV, SIGMOID, LOG1P, EXPM1, LOGADDEXP, FLOORDIV_INT, MOD_INT, FMOD_FLOAT,
                               FMAX, FMIN, POW_INT)}

# ---- the entries ---------------------------------------------------------------------------

LN2, LN10 = math.log(2.0), math.log(10.0)
SQRT_PI = math.sqrt(math.pi)


def _zero_grad(args, y, g):
    """Piecewise-constant ops (floor, sign, comparisons…) contribute zero, as in MLX."""
    return (None,) * len(args)


def _binary(name, names, types, np_fn, mx_fn, c, grad=None, prec=0, **kw):
    _register(Op(name, 2, names, types, np_fn, mx_fn, c, grad, prec, **kw))


def _unary(name, names, types, np_fn, mx_fn, c, grad=None, prec=0, **kw):
    _register(Op(name, 1, names, types, np_fn, mx_fn, c, grad, prec, **kw))


# arithmetic (prec: C precedence level, higher binds tighter; 0 = a call)
_binary("add", ("add", "mx.add", "operator.add"), same, np.add, mx.add, "{0} + {1}",
        lambda a, y, g: (g, g), prec=4)
_binary("sub", ("subtract", "mx.subtract"), same, np.subtract, mx.subtract, "{0} - {1}",
        lambda a, y, g: (g, -g), prec=4)
_binary("mul", ("multiply", "mx.multiply"), same, np.multiply, mx.multiply, "{0} * {1}",
        lambda a, y, g: (g * a[1], g * a[0]), prec=5)
_binary("div", ("divide", "mx.divide", "true_divide"), floating, np.divide, mx.divide, "{0} / {1}",
        lambda a, y, g: (g / a[1], -g * y / a[1]), prec=5)
def _remainder(a, b):
    """MLX's remainder: the sign of the divisor; an integer remainder by zero is the dividend."""
    r = np.mod(a, b)
    if np.asarray(r).dtype.kind in "iu":
        r = np.where(np.asarray(b) == 0, a, r)
    return r


# (NumPy's integer floor division already has MLX's edge cases: by zero 0, MIN // -1 wraps to MIN)
_binary("floordiv", ("floor_divide",), same, np.floor_divide, mx.floor_divide,
        {"f": "floor({0} / {1})", "*": "zmlx_floordiv({0}, {1})"}, _zero_grad,
        helpers={"c": FLOORDIV_INT})
_binary("mod", ("remainder", "mod", "fmod_python"), same, _remainder, mx.remainder,
        {"f": "zmlx_fmod({0}, {1})", "*": "zmlx_mod({0}, {1})"},
        lambda a, y, g: (g, -g * apply("floor", a[0] / a[1])), helpers={"c": MOD_INT})
_binary("power", ("power", "pow", "math.pow"), same, np.power, mx.power,
        {"f": "pow({0}, {1})", "*": "zmlx_ipow({0}, {1})"},
        lambda a, y, g: (g * a[1] * apply("power", a[0], a[1] - 1), g * y * apply("log", a[0])),
        helpers={"c": POW_INT})
_binary("maximum", ("maximum", "fmax"), same, np.maximum, mx.maximum,
        {"f": "zmlx_fmax({0}, {1})", "*": "max({0}, {1})"},
        lambda a, y, g: (where(apply("gt", a[0], a[1]), g, 0.0), where(apply("le", a[0], a[1]), g, 0.0)),
        helpers={"c": FMAX})
_binary("minimum", ("minimum", "fmin"), same, np.minimum, mx.minimum,
        {"f": "zmlx_fmin({0}, {1})", "*": "min({0}, {1})"},
        lambda a, y, g: (where(apply("lt", a[0], a[1]), g, 0.0), where(apply("ge", a[0], a[1]), g, 0.0)),
        helpers={"c": FMIN})
_binary("arctan2", ("arctan2", "atan2"), floating, np.arctan2, mx.arctan2, "atan2({0}, {1})",
        lambda a, y, g: (g * a[1] / (a[0] * a[0] + a[1] * a[1]), -g * a[0] / (a[0] * a[0] + a[1] * a[1])))
_binary("logaddexp", ("logaddexp",), floating, np.logaddexp, mx.logaddexp, "zmlx_logaddexp({0}, {1})",
        lambda a, y, g: (g * apply("exp", a[0] - y), g * apply("exp", a[1] - y)), helpers={"c": LOGADDEXP})

# comparisons and logic (no derivative: they contribute zero, as in MLX)
for _n, _py, _np, _mx, _c, _p in (
        ("eq", "equal", np.equal, mx.equal, "{0} == {1}", 2), ("ne", "not_equal", np.not_equal, mx.not_equal, "{0} != {1}", 2),
        ("lt", "less", np.less, mx.less, "{0} < {1}", 3), ("le", "less_equal", np.less_equal, mx.less_equal, "{0} <= {1}", 3),
        ("gt", "greater", np.greater, mx.greater, "{0} > {1}", 3), ("ge", "greater_equal", np.greater_equal, mx.greater_equal, "{0} >= {1}", 3)):
    _binary(_n, (_py,), predicate, _np, _mx, _c, _zero_grad, prec=_p)
_binary("logical_and", ("logical_and",), logical, np.logical_and, mx.logical_and, "{0} && {1}", _zero_grad, prec=1)
_binary("logical_or", ("logical_or",), logical, np.logical_or, mx.logical_or, "{0} || {1}", _zero_grad, prec=0.5)
_unary("logical_not", ("logical_not",), logical, np.logical_not, mx.logical_not, "!{0}", _zero_grad, prec=6)

_register(Op("where", 3, ("where",), select, np.where, mx.where, "{0} ? {1} : {2}",
             lambda a, y, g: (None, where(a[0], g, 0.0), where(a[0], 0.0, g)), prec=0.25, keep_type_args=(0,)))

# unary arithmetic
_unary("neg", ("negative",), same, np.negative, mx.negative, "-{0}", lambda a, y, g: (-g,), prec=6)
_unary("abs", ("abs", "fabs", "absolute"), same, np.abs, mx.abs, "abs({0})",
       lambda a, y, g: (g * apply("sign", a[0]),))
_unary("sign", ("sign",), same, _np_sign, mx.sign,
       {"f": "({0} > 0.0f ? 1.0f : ({0} < 0.0f ? -1.0f : 0.0f))", "*": "(({0} > 0) - ({0} < 0))"}, _zero_grad)
_unary("square", ("square",), same, np.square, mx.square, "{0} * {0}", lambda a, y, g: (2.0 * g * a[0],), prec=5)
_unary("reciprocal", ("reciprocal",), floating, np.reciprocal, mx.reciprocal, "1.0f / {0}",
       lambda a, y, g: (-g * y * y,), prec=5)
_unary("sqrt", ("sqrt",), floating, np.sqrt, mx.sqrt, "sqrt({0})", lambda a, y, g: (g / (2.0 * y),))
_unary("rsqrt", ("rsqrt",), floating, lambda x: 1.0 / np.sqrt(x), mx.rsqrt, "rsqrt({0})",
       lambda a, y, g: (-0.5 * g * y / a[0],))
_unary("floor", ("floor",), same, np.floor, mx.floor, {"f": "floor({0})", "*": "{0}"}, _zero_grad)
_unary("ceil", ("ceil",), same, np.ceil, mx.ceil, {"f": "ceil({0})", "*": "{0}"}, _zero_grad)
_unary("round", ("round", "rint"), same, _np_round, mx.round, {"f": "rint({0})", "*": "{0}"}, _zero_grad)

# exponentials and logarithms
_unary("exp", ("exp",), floating, np.exp, mx.exp, "exp({0})", lambda a, y, g: (g * y,))
_unary("exp2", ("exp2",), floating, np.exp2, lambda x: mx.power(2.0, x), "exp2({0})", lambda a, y, g: (g * y * LN2,))
_unary("expm1", ("expm1",), floating, np.expm1, mx.expm1, "zmlx_expm1({0})", lambda a, y, g: (g * (y + 1.0),),
       c_by_backend={"cuda": "expm1({0})"}, helpers={"metal": EXPM1})
_unary("log", ("log",), floating, np.log, mx.log, "log({0})", lambda a, y, g: (g / a[0],))
_unary("log2", ("log2",), floating, np.log2, mx.log2, "log2({0})", lambda a, y, g: (g / (a[0] * LN2),))
_unary("log10", ("log10",), floating, np.log10, mx.log10, "log10({0})", lambda a, y, g: (g / (a[0] * LN10),))
_unary("log1p", ("log1p",), floating, np.log1p, mx.log1p, "zmlx_log1p({0})", lambda a, y, g: (g / (a[0] + 1.0),),
       c_by_backend={"cuda": "log1p({0})"}, helpers={"metal": LOG1P})
_unary("sigmoid", ("sigmoid",), floating, _np_sigmoid, mx.sigmoid, "zmlx_sigmoid({0})",
       lambda a, y, g: (g * y * (1.0 - y),), helpers={"c": SIGMOID})
_unary("erf", ("erf",), floating, _np_erf, mx.erf, "zmlx_erf({0})",
       lambda a, y, g: (g * (2.0 / SQRT_PI) * apply("exp", -(a[0] * a[0])),),
       c_by_backend={"cuda": "erf({0})"}, helpers={"metal": ERF})
_unary("erfinv", ("erfinv",), floating, _np_erfinv, mx.erfinv, "zmlx_erfinv({0})",
       lambda a, y, g: (g * (SQRT_PI / 2.0) * apply("exp", y * y),),
       c_by_backend={"cuda": "erfinv({0})"}, helpers={"metal": ERFINV})

# trigonometric and hyperbolic
_unary("sin", ("sin",), floating, np.sin, mx.sin, "sin({0})", lambda a, y, g: (g * apply("cos", a[0]),))
_unary("cos", ("cos",), floating, np.cos, mx.cos, "cos({0})", lambda a, y, g: (-g * apply("sin", a[0]),))
_unary("tan", ("tan",), floating, np.tan, mx.tan, "tan({0})", lambda a, y, g: (g * (1.0 + y * y),))
_unary("arcsin", ("arcsin", "asin"), floating, np.arcsin, mx.arcsin, "asin({0})",
       lambda a, y, g: (g * apply("rsqrt", 1.0 - a[0] * a[0]),))
_unary("arccos", ("arccos", "acos"), floating, np.arccos, mx.arccos, "acos({0})",
       lambda a, y, g: (-g * apply("rsqrt", 1.0 - a[0] * a[0]),))
_unary("arctan", ("arctan", "atan"), floating, np.arctan, mx.arctan, "atan({0})",
       lambda a, y, g: (g / (1.0 + a[0] * a[0]),))
_unary("sinh", ("sinh",), floating, np.sinh, mx.sinh, "sinh({0})", lambda a, y, g: (g * apply("cosh", a[0]),))
_unary("cosh", ("cosh",), floating, np.cosh, mx.cosh, "cosh({0})", lambda a, y, g: (g * apply("sinh", a[0]),))
_unary("tanh", ("tanh",), floating, np.tanh, mx.tanh, "tanh({0})", lambda a, y, g: (g * (1.0 - y * y),))
_unary("arcsinh", ("arcsinh", "asinh"), floating, np.arcsinh, mx.arcsinh, "asinh({0})",
       lambda a, y, g: (g * apply("rsqrt", a[0] * a[0] + 1.0),))
_unary("arccosh", ("arccosh", "acosh"), floating, np.arccosh, mx.arccosh, "acosh({0})",
       lambda a, y, g: (g * apply("rsqrt", a[0] * a[0] - 1.0),))
_unary("arctanh", ("arctanh", "atanh"), floating, np.arctanh, mx.arctanh, "atanh({0})",
       lambda a, y, g: (g / (1.0 - a[0] * a[0]),))

# classification
_unary("isnan", ("isnan",), float_predicate, np.isnan, mx.isnan, {"f": "isnan({0})", "*": "false"}, _zero_grad)
_unary("isinf", ("isinf",), float_predicate, np.isinf, mx.isinf, {"f": "isinf({0})", "*": "false"}, _zero_grad)
_unary("isfinite", ("isfinite",), float_predicate, np.isfinite, mx.isfinite, {"f": "isfinite({0})", "*": "true"}, _zero_grad)
_unary("stop_gradient", ("stop_gradient",), same, lambda x: x, mx.stop_gradient, "{0}", _zero_grad, prec=9)

# row reductions (row kernels only): the value is per row and broadcasts back over it
# (their C spelling combines an accumulator {0} with a value {1}; the renderer reduces across threads)
_unary("sum", ("sum",), row_sum, lambda x: np.sum(x, axis=-1, keepdims=True),
       lambda x: mx.sum(x, axis=-1, keepdims=True), "{0} + {1}", lambda a, y, g: (g,), reduction=True,
       jvp=lambda a, y, t: apply("sum", t), identity=0.0)
_unary("max", ("max",), row_reduce, _np_rowmax, lambda x: mx.max(x, axis=-1, keepdims=True),
       {"f": "zmlx_fmax({0}, {1})", "*": "max({0}, {1})"},  # a NaN in the row gives NaN, as in MLX
       lambda a, y, g: (_tie_share(a[0], y, g),), reduction=True, jvp=lambda a, y, t: _tie_mean(a[0], y, t),
       identity=-math.inf, helpers={"c": FMAX})
_unary("min", ("min",), row_reduce, _np_rowmin, lambda x: mx.min(x, axis=-1, keepdims=True),
       {"f": "zmlx_fmin({0}, {1})", "*": "min({0}, {1})"},
       lambda a, y, g: (_tie_share(a[0], y, g),), reduction=True, jvp=lambda a, y, t: _tie_mean(a[0], y, t),
       identity=math.inf, helpers={"c": FMIN})




# A sequential fold over the row (row kernels only): the `reduce`/`map_reduce` strings whose update
# is not `acc ⊕ f(v)` for an associative ⊕ (e.g. an exponential moving average `acc * 0.5f + v`).
# args = (init, *operands): init is per row; each operand is per element (read at position i) or
# per row; arg = Lambda((acc, v0, v1, …), update). Value: acc = init, then for i = 0 … D-1:
# acc = update(acc, operands at i) -- per row, like a reduction (so `reduction=True`: per-row
# analysis, constant folding and the row kernels' dependency levels treat it as one). It has no C
# spelling: the C renderer runs the loop in one thread of the row and broadcasts the result
# (CStyle.fold). At least one operand must be per element (it gives the trip count D to the NumPy
# and MLX implementations). No derivative: see _fold_grad.

def _np_fold(node: Node, run: Callable, init, *operands):
    """The interpreter's fold: a Python loop over the last axis, each step evaluated by `run`."""
    shape = np.broadcast_shapes(np.shape(init), *[np.shape(o) for o in operands])
    acc = np.broadcast_to(init, shape[:-1] + (1,))
    cols = [np.broadcast_to(o, shape) for o in operands]
    for i in range(shape[-1]):
        acc = run(node.arg, [acc] + [c[..., i:i + 1] for c in cols])
    return np.broadcast_to(acc, shape[:-1] + (1,))


def _mx_fold(node: Node, run: Callable, init, *operands):
    """The portable fold: a loop over the row's elements with MLX ops (one column per step; per-row
    operands are used whole). Correctness first: D steps in the graph, fine for D up to thousands."""
    shape = tuple(mx.broadcast_shapes(init.shape, *[o.shape for o in operands]))
    D = shape[-1]
    cols = [mx.split(o, D, axis=-1) if D > 1 and o.ndim and o.shape[-1] == D else None for o in operands]
    acc = init
    for i in range(D):
        acc = run(node.arg, [acc] + [o if c is None else c[i] for o, c in zip(operands, cols)])
    return mx.broadcast_to(acc, shape[:-1] + (1,)).astype(node.dtype.mx)


def _fold_grad(args, y, g):
    """A serial fold has no derivative rule: say so when a gradient (or tangent) is asked for,
    never return a wrong or zero one. runtime.Compiled adds the kernel's name to the message."""
    raise ZMLXGradientError(
        "its row reduction runs as a serial loop (the update is not 'acc + f(v)', 'acc - f(v)', "
        "'max(acc, f(v))' or 'min(acc, f(v))' with f free of acc), which has no derivative; use an "
        "associative update, or pass the gradient around the kernel (mx.stop_gradient on its input)")


_register(Op("fold", -1, (), lambda ts: (None, ts[0]), _np_fold, _mx_fold, None, _fold_grad,
             reduction=True, graph=True))


def _tie_share(x: Node, y: Node, g: Node) -> Node:
    """max/min route the cotangent to the arg-extremum, shared equally among ties (as MLX)."""
    hit = cast(apply("eq", x, y), g.dtype)
    return g * hit / apply("sum", hit)


def _tie_mean(x: Node, y: Node, t: Node) -> Node:
    """Tangent of max/min: the mean tangent over the tied extrema."""
    hit = cast(apply("eq", x, y), t.dtype)
    return apply("sum", t * hit) / apply("sum", hit)


# The scalar constants a body may name (math.pi, mx.inf …).
CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "tau": math.tau}


def cast_grad(x: Node, g: Node) -> Optional[Node]:
    """The adjoint of a cast: cast back to the source type (integers get none)."""
    return cast(g, x.dtype) if x.dtype.is_float else None

