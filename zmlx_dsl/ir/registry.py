"""The op registry: what every operation is (one entry each): its Python spellings, arity, type
rule, derivative rule (as IR), NumPy and MLX implementations. Adding an op means adding one entry
here (and its C spelling in backend/c_ops.py); no frontend or autodiff code changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import mlx.core as mx
import numpy as np

from ..errors import ZMLXGradientError
from . import dtypes as dt
from .build import apply, cast, where
from .node import Node
from .positions import at_adjoint, gather, index, scatter
from .rows import per_row
from . import scans
from .table import BY_PY_NAME, OPS

# A derivative rule: (args, y, g) -> one adjoint (or None) per argument; y is the op's own node.
GradRule = Callable[[tuple[Node, ...], Node, Node], tuple[Optional[Node], ...]]
TypeRule = Callable[[tuple[dt.DType, ...]], tuple[Optional[dt.DType], dt.DType]]


@dataclass(frozen=True)
class Op:
    """One operation: `types` maps operand dtypes to (operand dtype or None, result dtype), `grad`
    gives the adjoints of its arguments, `jvp` (reductions) its tangent."""

    name: str
    arity: int
    names: tuple[str, ...]
    types: TypeRule
    np: Callable
    mx: Callable
    grad: Optional[GradRule] = None
    keep_type_args: tuple[int, ...] = ()
    reduction: bool = False
    # forward-mode rule (args, y, t_arg), a reduction's with its operand's row length too (None where
    # unknown); only reductions and row reads need one
    jvp: Optional[Callable] = None
    identity: Optional[float] = None  # associative reductions: the combine's neutral element
    # The node carries a `Lambda` in `arg` ("fold"): `np` and `mx` are then called as
    # fn(node, run, *args), where run(lam, values) evaluates lam's body with its parameters bound
    # to values, in the caller's semantics (the interpreter's mode; MLX ops).
    graph: bool = False
    # Reads (or writes) the row at other positions (row kernels only): the C renderer moves those
    # positions itself (backend/c_rows.py), so the op has no C spelling.
    position: bool = False
    # Its value at each position depends on the whole row (a scan, a sort: ir/scans.py): the C
    # renderer computes it in a pass of its own into threadgroup memory (backend/c_scans.py).
    whole_row: bool = False


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


# ---- the entries ---------------------------------------------------------------------------

LN2, LN10 = math.log(2.0), math.log(10.0)
SQRT_PI = math.sqrt(math.pi)


def _zero_grad(args, y, g):
    """Piecewise-constant ops (floor, sign, comparisons…) contribute zero, as in MLX."""
    return (None,) * len(args)


def binary(name: str, *, names: tuple[str, ...] = (), types: TypeRule, np: Callable, mx: Callable,
           grad: Optional[GradRule] = None, **kw) -> None:
    """Register a two-operand op (its Python spellings default to its name)."""
    _register(Op(name, 2, names or (name,), types, np, mx, grad, **kw))


def unary(name: str, *, names: tuple[str, ...] = (), types: TypeRule, np: Callable, mx: Callable,
          grad: Optional[GradRule] = None, **kw) -> None:
    """Register a one-operand op (its Python spellings default to its name)."""
    _register(Op(name, 1, names or (name,), types, np, mx, grad, **kw))


# arithmetic
binary("add", names=("add", "mx.add", "operator.add"), types=same, np=np.add, mx=mx.add,
       grad=lambda a, y, g: (g, g))
binary("sub", names=("subtract", "mx.subtract"), types=same, np=np.subtract, mx=mx.subtract,
       grad=lambda a, y, g: (g, -g))
binary("mul", names=("multiply", "mx.multiply"), types=same, np=np.multiply, mx=mx.multiply,
       grad=lambda a, y, g: (g * a[1], g * a[0]))
binary("div", names=("divide", "mx.divide", "true_divide"), types=floating, np=np.divide, mx=mx.divide,
       grad=lambda a, y, g: (g / a[1], -g * y / a[1]))
def _remainder(a, b):
    """MLX's remainder: the sign of the divisor; an integer remainder by zero is the dividend."""
    r = np.mod(a, b)
    if np.asarray(r).dtype.kind in "iu":
        r = np.where(np.asarray(b) == 0, a, r)
    return r


# (NumPy's integer floor division already has MLX's edge cases: by zero 0, MIN // -1 wraps to MIN)
binary("floordiv", names=("floor_divide",), types=same, np=np.floor_divide, mx=mx.floor_divide,
       grad=_zero_grad)
binary("mod", names=("remainder", "mod", "fmod_python"), types=same, np=_remainder, mx=mx.remainder,
       grad=lambda a, y, g: (g, -g * apply("floor", a[0] / a[1])))
binary("power", names=("power", "pow", "math.pow"), types=same, np=np.power, mx=mx.power,
       grad=lambda a, y, g: (g * a[1] * apply("power", a[0], a[1] - 1), g * y * apply("log", a[0])))
binary("maximum", names=("maximum", "fmax"), types=same, np=np.maximum, mx=mx.maximum,
       grad=lambda a, y, g: (where(apply("gt", a[0], a[1]), g, 0.0), where(apply("le", a[0], a[1]), g, 0.0)))
binary("minimum", names=("minimum", "fmin"), types=same, np=np.minimum, mx=mx.minimum,
       grad=lambda a, y, g: (where(apply("lt", a[0], a[1]), g, 0.0), where(apply("ge", a[0], a[1]), g, 0.0)))
binary("arctan2", names=("arctan2", "atan2"), types=floating, np=np.arctan2, mx=mx.arctan2,
       grad=lambda a, y, g: (g * a[1] / (a[0] * a[0] + a[1] * a[1]), -g * a[0] / (a[0] * a[0] + a[1] * a[1])))
binary("logaddexp", types=floating, np=np.logaddexp, mx=mx.logaddexp,
       # MLX's rule, sigmoid(a - b) and 1 - it: exp(a - y) loses y's rounding, |y| ulps, at large a
       grad=lambda a, y, g: (g * apply("sigmoid", a[0] - a[1]), g * (1.0 - apply("sigmoid", a[0] - a[1]))))

# comparisons and logic (no derivative: they contribute zero, as in MLX)
for _n, _py in (("eq", "equal"), ("ne", "not_equal"), ("lt", "less"), ("le", "less_equal"),
                ("gt", "greater"), ("ge", "greater_equal")):
    binary(_n, names=(_py,), types=predicate, np=getattr(np, _py), mx=getattr(mx, _py), grad=_zero_grad)
binary("logical_and", types=logical, np=np.logical_and, mx=mx.logical_and, grad=_zero_grad)
binary("logical_or", types=logical, np=np.logical_or, mx=mx.logical_or, grad=_zero_grad)
unary("logical_not", types=logical, np=np.logical_not, mx=mx.logical_not, grad=_zero_grad)

_register(Op("where", 3, ("where",), select, np.where, mx.where,
             lambda a, y, g: (None, where(a[0], g, 0.0), where(a[0], 0.0, g)), keep_type_args=(0,)))

# unary arithmetic
unary("neg", names=("negative",), types=same, np=np.negative, mx=mx.negative, grad=lambda a, y, g: (-g,))
unary("abs", names=("abs", "fabs", "absolute"), types=same, np=np.abs, mx=mx.abs,
      grad=lambda a, y, g: (g * apply("sign", a[0]),))
unary("sign", types=same, np=_np_sign, mx=mx.sign, grad=_zero_grad)
unary("square", types=same, np=np.square, mx=mx.square, grad=lambda a, y, g: (2.0 * g * a[0],))
unary("reciprocal", types=floating, np=np.reciprocal, mx=mx.reciprocal, grad=lambda a, y, g: (-g * y * y,))
unary("sqrt", types=floating, np=np.sqrt, mx=mx.sqrt, grad=lambda a, y, g: (g / (2.0 * y),))
unary("rsqrt", types=floating, np=lambda x: 1.0 / np.sqrt(x), mx=mx.rsqrt,
      grad=lambda a, y, g: (-0.5 * g * y / a[0],))
unary("floor", types=same, np=np.floor, mx=mx.floor, grad=_zero_grad)
unary("ceil", types=same, np=np.ceil, mx=mx.ceil, grad=_zero_grad)
unary("round", names=("round", "rint"), types=same, np=_np_round, mx=mx.round, grad=_zero_grad)

# exponentials and logarithms
unary("exp", types=floating, np=np.exp, mx=mx.exp, grad=lambda a, y, g: (g * y,))
unary("exp2", types=floating, np=np.exp2, mx=lambda x: mx.power(2.0, x), grad=lambda a, y, g: (g * y * LN2,))
unary("expm1", types=floating, np=np.expm1, mx=mx.expm1, grad=lambda a, y, g: (g * (y + 1.0),))
unary("log", types=floating, np=np.log, mx=mx.log, grad=lambda a, y, g: (g / a[0],))
unary("log2", types=floating, np=np.log2, mx=mx.log2, grad=lambda a, y, g: (g / (a[0] * LN2),))
unary("log10", types=floating, np=np.log10, mx=mx.log10, grad=lambda a, y, g: (g / (a[0] * LN10),))
unary("log1p", types=floating, np=np.log1p, mx=mx.log1p, grad=lambda a, y, g: (g / (a[0] + 1.0),))
unary("sigmoid", types=floating, np=_np_sigmoid, mx=mx.sigmoid, grad=lambda a, y, g: (g * y * (1.0 - y),))
unary("erf", types=floating, np=_np_erf, mx=mx.erf,
      grad=lambda a, y, g: (g * (2.0 / SQRT_PI) * apply("exp", -(a[0] * a[0])),))
unary("erfinv", types=floating, np=_np_erfinv, mx=mx.erfinv,
      grad=lambda a, y, g: (g * (SQRT_PI / 2.0) * apply("exp", y * y),))

# trigonometric and hyperbolic
unary("sin", types=floating, np=np.sin, mx=mx.sin, grad=lambda a, y, g: (g * apply("cos", a[0]),))
unary("cos", types=floating, np=np.cos, mx=mx.cos, grad=lambda a, y, g: (-g * apply("sin", a[0]),))
unary("tan", types=floating, np=np.tan, mx=mx.tan, grad=lambda a, y, g: (g * (1.0 + y * y),))
unary("arcsin", names=("arcsin", "asin"), types=floating, np=np.arcsin, mx=mx.arcsin,
      grad=lambda a, y, g: (g * apply("rsqrt", 1.0 - a[0] * a[0]),))
unary("arccos", names=("arccos", "acos"), types=floating, np=np.arccos, mx=mx.arccos,
      grad=lambda a, y, g: (-g * apply("rsqrt", 1.0 - a[0] * a[0]),))
unary("arctan", names=("arctan", "atan"), types=floating, np=np.arctan, mx=mx.arctan,
      grad=lambda a, y, g: (g / (1.0 + a[0] * a[0]),))
unary("sinh", types=floating, np=np.sinh, mx=mx.sinh, grad=lambda a, y, g: (g * apply("cosh", a[0]),))
unary("cosh", types=floating, np=np.cosh, mx=mx.cosh, grad=lambda a, y, g: (g * apply("sinh", a[0]),))
unary("tanh", types=floating, np=np.tanh, mx=mx.tanh, grad=lambda a, y, g: (g * (1.0 - y * y),))
unary("arcsinh", names=("arcsinh", "asinh"), types=floating, np=np.arcsinh, mx=mx.arcsinh,
      grad=lambda a, y, g: (g * apply("rsqrt", a[0] * a[0] + 1.0),))
unary("arccosh", names=("arccosh", "acosh"), types=floating, np=np.arccosh, mx=mx.arccosh,
      grad=lambda a, y, g: (g * apply("rsqrt", a[0] * a[0] - 1.0),))
unary("arctanh", names=("arctanh", "atanh"), types=floating, np=np.arctanh, mx=mx.arctanh,
      grad=lambda a, y, g: (g / (1.0 - a[0] * a[0]),))

# classification
unary("isnan", types=float_predicate, np=np.isnan, mx=mx.isnan, grad=_zero_grad)
unary("isinf", types=float_predicate, np=np.isinf, mx=mx.isinf, grad=_zero_grad)
unary("isfinite", types=float_predicate, np=np.isfinite, mx=mx.isfinite, grad=_zero_grad)
unary("stop_gradient", types=same, np=lambda x: x, mx=mx.stop_gradient, grad=_zero_grad)

# row reductions (row kernels only): the value is per row and broadcasts back over it
unary("sum", types=row_sum, np=lambda x: np.sum(x, axis=-1, keepdims=True), mx=lambda x: mx.sum(x, axis=-1, keepdims=True),
      grad=lambda a, y, g: (g,),
      reduction=True,
      jvp=lambda a, y, t, n: apply("sum", t),
      identity=0.0)
unary("max", types=row_reduce, np=_np_rowmax, mx=lambda x: mx.max(x, axis=-1, keepdims=True),
      grad=lambda a, y, g: (_tie_share(a[0], y, g),),
      reduction=True,
      jvp=lambda a, y, t, n: _first_tie(a[0], y, t, n),
      identity=-math.inf)
unary("min", types=row_reduce, np=_np_rowmin, mx=lambda x: mx.min(x, axis=-1, keepdims=True),
      grad=lambda a, y, g: (_tie_share(a[0], y, g),),
      reduction=True,
      jvp=lambda a, y, t, n: _first_tie(a[0], y, t, n),
      identity=math.inf)


# A sequential fold over the row (row kernels only): the `reduce`/`map_reduce` strings whose update
# is not `acc ⊕ f(v)` for an associative ⊕ (e.g. an exponential moving average `acc * 0.5f + v`).
# args = (init, *operands): init is per row; each operand is per element (read at position i) or
# per row; arg = Lambda((acc, v0, v1, …), update). Value: acc = init, then for i = 0 … D-1:
# acc = update(acc, operands at i) -- per row, like a reduction (so `reduction=True`: per-row
# analysis, constant folding and the row kernels' dependency levels treat it as one). It has no C
# spelling: the C renderer runs the loop in one thread of the row and broadcasts the result. At
# least one operand must be per element (it gives the trip count D to the NumPy and MLX
# implementations). No derivative: see _fold_grad.

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


_register(Op("fold", -1, (), lambda ts: (None, ts[0]), _np_fold, _mx_fold, _fold_grad,
             reduction=True, graph=True))


# Positions (row kernels): `at` reads its first operand at the positions its second gives (0
# outside the row), `scatter` adds its first operand into a row at the positions its second gives;
# arg = the length of the row read (at) or made (scatter). See ir/positions.py.

def _lead(*arrays, broadcast=np.broadcast_shapes):
    """The broadcast of the arrays' leading axes (all but the row)."""
    return tuple(broadcast(*[a.shape[:-1] for a in arrays]))


def _rows(a):
    """a with a row axis (a 0-d value is a row of one)."""
    return a.reshape((1,)) if a.ndim == 0 else a


def _np_at(node: Node, run: Callable, e, pos):
    e, pos = _rows(np.asarray(e)), _rows(np.asarray(pos))
    lead = _lead(e, pos)
    e = np.broadcast_to(e, lead + (node.arg,))
    pos = np.broadcast_to(pos, lead + pos.shape[-1:]).astype(np.int64)
    inside = (pos >= 0) & (pos < node.arg)
    return np.where(inside, np.take_along_axis(e, np.clip(pos, 0, node.arg - 1), -1), 0)


def _mx_at(node: Node, run: Callable, e, pos):
    e, pos = _rows(e), mx.stop_gradient(_rows(pos))  # (positions: MLX must not differentiate by them)
    lead = _lead(e, pos, broadcast=mx.broadcast_shapes)
    e = mx.broadcast_to(e, lead + (node.arg,))
    pos = mx.broadcast_to(pos, lead + tuple(pos.shape[-1:]))
    inside = (pos >= 0) & (pos < node.arg)
    got = mx.take_along_axis(e, mx.clip(pos, 0, node.arg - 1).astype(mx.int32), -1)
    return mx.where(inside, got, mx.zeros((), e.dtype))


def _np_scatter(node: Node, run: Callable, g, pos):
    g, pos = _rows(np.asarray(g)), _rows(np.asarray(pos))
    lead, m = _lead(g, pos), max(g.shape[-1], pos.shape[-1])
    g = np.broadcast_to(g, lead + (m,)).reshape(-1, m)
    pos = np.broadcast_to(pos, lead + (m,)).reshape(-1, m).astype(np.int64)
    out = np.zeros((g.shape[0], node.arg), g.dtype)
    rows, cols = np.nonzero((pos >= 0) & (pos < node.arg))
    np.add.at(out, (rows, pos[rows, cols]), g[rows, cols])
    return out.reshape(lead + (node.arg,))


def _mx_scatter(node: Node, run: Callable, g, pos):
    g, pos = _rows(g), mx.stop_gradient(_rows(pos))
    lead, m = _lead(g, pos, broadcast=mx.broadcast_shapes), max(g.shape[-1], pos.shape[-1])
    g = mx.broadcast_to(g, lead + (m,)).reshape(-1, m)
    pos = mx.broadcast_to(pos, lead + (m,)).reshape(-1, m).astype(mx.int32)
    inside = (pos >= 0) & (pos < node.arg)
    flat = mx.arange(g.shape[0], dtype=mx.int32)[:, None] * node.arg + mx.clip(pos, 0, node.arg - 1)
    out = mx.zeros((g.shape[0] * node.arg,), g.dtype).at[flat.reshape(-1)].add(
        mx.where(inside, g, mx.zeros((), g.dtype)).reshape(-1))
    return out.reshape(lead + (node.arg,))


def _at_grad(args, y, g):
    return at_adjoint(args[0], args[1], g, y.arg, per_row([args[1]])[args[1]]), None


_register(Op("at", 2, (), lambda ts: (None, ts[0]), _np_at, _mx_at, _at_grad, graph=True, position=True,
             jvp=lambda a, y, t: gather(t, a[1], y.arg)))
_register(Op("scatter", 2, (), lambda ts: (None, ts[0]), _np_scatter, _mx_scatter,
             lambda a, y, g: (gather(g, a[1], y.arg), None), graph=True, position=True,
             jvp=lambda a, y, t: scatter(t, a[1], y.arg)))


# Scans and sorts (row kernels): see ir/scans.py. A scan's arg = (length, reverse, inclusive), an
# argsort's = length; the operand is a row of that length.

def _full_rows(a, length, broadcast_to):
    """a (a row, or 0-d) broadcast to a whole row of `length` on its last axis."""
    a = _rows(a)
    return a if a.shape[-1] == length else broadcast_to(a, tuple(a.shape[:-1]) + (length,))


_NP_SCANS = {"cumsum": np.cumsum, "cumprod": np.cumprod, "cummax": np.maximum.accumulate,
             "cummin": np.minimum.accumulate, "logcumsumexp": np.logaddexp.accumulate}


def _np_scan(node: Node, run: Callable, x):
    L, reverse, inclusive = node.arg
    x = _full_rows(np.asarray(x), L, np.broadcast_to)
    x = x[..., ::-1] if reverse else x
    y = _NP_SCANS[node.op](x, axis=-1)
    if not inclusive:
        first = np.full(y.shape[:-1] + (1,), scans.identity(node.op, node.dtype), dtype=y.dtype)
        y = np.concatenate([first, y[..., :-1]], axis=-1)
    return y[..., ::-1] if reverse else y


def _mx_scan(node: Node, run: Callable, x):
    L, reverse, inclusive = node.arg
    return getattr(mx, node.op)(_full_rows(x, L, mx.broadcast_to), axis=-1, reverse=reverse, inclusive=inclusive)


_SCAN_RULES = {"cumsum": (scans.cumsum_grad, lambda a, y, t: scans.scan("cumsum", t, *y.arg)),
               "cumprod": (scans.cumprod_grad, scans.cumprod_jvp),
               "cummax": (scans.extremum_grad, scans.extremum_jvp),
               "cummin": (scans.extremum_grad, scans.extremum_jvp),
               "logcumsumexp": (scans.logcumsumexp_grad, scans.logcumsumexp_jvp)}
for _kind, (_grad, _jvp) in _SCAN_RULES.items():
    _register(Op(_kind, 1, (), same, _np_scan, _mx_scan, _grad, graph=True, position=True, whole_row=True, jvp=_jvp))
_register(Op("argsort", 1, (), lambda ts: (None, dt.int32),
             lambda node, run, x: np.argsort(_full_rows(np.asarray(x), node.arg, np.broadcast_to), axis=-1, kind="stable"),
             lambda node, run, x: mx.stop_gradient(  # (positions: MLX must not differentiate a gather by them)
                 mx.argsort(_full_rows(x, node.arg, mx.broadcast_to), axis=-1).astype(mx.int32)),
             scans.no_derivative, graph=True, position=True, whole_row=True, jvp=scans.no_tangent))


def _tie_share(x: Node, y: Node, g: Node) -> Node:
    """max/min route the cotangent to the arg-extremum, shared equally among ties (as MLX)."""
    hit = cast(apply("eq", x, y), g.dtype)
    return g * hit / apply("sum", hit)


def _first_tie(x: Node, y: Node, t: Node, length: Optional[int]) -> Node:
    """Tangent of max/min as MLX's: the tangent at the first arg-extremum (argmax's, so the first
    NaN of a row with one). Where the row length is unknown (a string kernel), the mean tangent
    over the tied extrema, which is the same wherever the extremum is unique."""
    hit = apply("eq", x, y)
    if x.dtype.is_float:
        hit = apply("logical_or", hit, apply("isnan", x))
    if length is None:
        hit = cast(hit, t.dtype)
        return apply("sum", t * hit) / apply("sum", hit)
    pos = index(length)
    first = apply("min", where(hit, pos, length))
    return apply("sum", where(apply("eq", pos, first), t, 0.0))


# The scalar constants a body may name (math.pi, mx.inf …).
CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "tau": math.tau}


def cast_grad(x: Node, g: Node) -> Optional[Node]:
    """The adjoint of a cast: cast back to the source type (integers get none)."""
    return cast(g, x.dtype) if x.dtype.is_float else None

