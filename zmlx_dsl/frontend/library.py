"""The MLX, NumPy and builtin functions kernels call, lowered to IR: registry ops, and one @lowering each for the rest."""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import mlx.core as mx
import numpy as np

from ..errors import ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir.build import apply, cast, const
from ..ir.node import Node
from ..ir.registry import BY_PY_NAME, OPS
from .values import MX_DTYPES, Weak, is_python, node_of, strong, unwrap


class Context(Protocol):
    """What a lowering may use of the parser (expressions.ExpressionParser)."""

    mode: str  # "elementwise" or "row"
    branch_depth: int  # > 0 inside a data-dependent `if`

    def op(self, name: str, args: list) -> Any: ...
    def to_bool(self, v: Any) -> Any: ...
    def select(self, c: Any, a: Any, b: Any) -> Any: ...
    def check_current(self, values: Sequence[Any]) -> None: ...
    def shape(self, v: Any) -> tuple: ...


Lowering = Callable[[Context, list, dict], Any]  # (parser, args, kwargs) -> value
LOWERINGS: dict[str, Lowering] = {}  # name -> how a call of it is lowered
SPECIAL: dict[int, str] = {}  # id(python callable) -> its name in LOWERINGS
METHODS: set[str] = set()  # names in LOWERINGS that are also array methods (x.sum())
_MODULES = (mx, math, np)


def _intrinsics() -> dict[int, str]:
    """id(python function object) -> registry op name, for mx.*, math.*, np.* and builtins."""
    table: dict[int, str] = {}
    for py_name, op in BY_PY_NAME.items():
        base = py_name.split(".")[-1]
        for mod in _MODULES:
            obj = getattr(mod, base, None)
            if callable(obj) and not isinstance(obj, type):
                table.setdefault(id(obj), op)
    for name, op in (("abs", "abs"), ("pow", "power"), ("round", "round")):
        table[id(getattr(builtins, name))] = op
    return table


INTRINSIC = _intrinsics()  # functions that are one registry op (SPECIAL takes precedence)


def lowering(name: str, *callables: Any, method: bool = False) -> Callable[[Lowering], Lowering]:
    """Register the decorated function as the lowering of `name`: of calls of `callables`, and of
    the array method `x.name(...)` (x first in args) when `method`."""
    def register(fn: Lowering) -> Lowering:
        LOWERINGS[name] = fn
        SPECIAL.update((id(c), name) for c in callables)
        if method:
            METHODS.add(name)
        return fn
    return register


# ---- calls -----------------------------------------------------------------------------------------

def call(p: Context, target: Any, name: str, args: list, kwargs: dict) -> Any:
    """A call of SPECIAL function `target`, lowered as `name`."""
    value = LOWERINGS[name](p, args, kwargs)
    # an MLX (or NumPy) function returns an array, typed strongly even from Python scalars
    return strong(value) if _from_array_library(target) else value


def call_intrinsic(p: Context, target: Any, op: str, args: list, kwargs: dict) -> Any:
    """A call of INTRINSIC function `target`, registry op `op`."""
    if args and all(is_python(a) for a in args) and _from_array_library(target, numpy=False):
        # mx.f(3) is an int32 array in MLX (strongly typed), not a weak Python number
        args = [const(a, dt.weak_kind(a)) for a in args]
    return _intrinsic(p, op, args, kwargs)


def call_method(p: Context, value: Any, name: str, args: list, kwargs: dict) -> Any:
    """value.name(*args, **kwargs) for an array value: a lowering here, or a registry op."""
    if name in METHODS:
        return LOWERINGS[name](p, [value] + args, kwargs)
    op = BY_PY_NAME.get(name)
    if op is not None and OPS[op].arity == 1 + len(args):
        return _intrinsic(p, op, [value] + args, kwargs)
    raise ZMLXNameError(f"array method '{name}' is not supported in kernels")


def _intrinsic(p: Context, op: str, args: list, kwargs: dict) -> Any:
    spec = OPS[op]
    if kwargs:
        raise ZMLXTypeError(f"{op}() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if len(args) != spec.arity:
        raise ZMLXTypeError(f"{op}() takes {spec.arity} argument{'s' * (spec.arity != 1)} "
                            f"({len(args)} given)")
    if spec.reduction:
        return _reduced(p, op, args, {})
    return p.op(op, args)


def _from_array_library(fn: Any, numpy: bool = True) -> bool:
    """Whether fn is MLX's (or NumPy's) own function, whose results are arrays."""
    module = getattr(fn, "__module__", None) or ""
    return module.startswith("mlx") or (numpy and module.split(".")[0] == "numpy")


# ---- Python-level functions --------------------------------------------------------------------

@lowering("range", range)
def _range(p: Context, args: list, kwargs: dict) -> range:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or kwargs:
        raise ZMLXSyntaxError("range() bounds must be constant integers (the loop is unrolled)")
    return range(*args)


def _conversion(kind: type) -> Lowering:
    """float(), int() or bool() of a Python number, computed now (of an array: refused)."""
    def convert(p: Context, args: list, kwargs: dict) -> Any:
        if len(args) != 1 or not is_python(args[0]):
            raise ZMLXSyntaxError(f"{kind.__name__}() of an array is not supported; use .astype(...)")
        return kind(args[0])
    return convert


for _kind in (float, int, bool):
    lowering(_kind.__name__, _kind)(_conversion(_kind))


@lowering("array", mx.array)
def _array(p: Context, args: list, kwargs: dict) -> Node:
    if len(args) < 1 or not is_python(args[0]):
        raise ZMLXSyntaxError("mx.array() in a kernel takes one Python scalar")
    d = MX_DTYPES.get(args[1] if len(args) > 1 else kwargs.get("dtype"), None)
    return node_of(args[0], d or dt.weak_kind(args[0]))


@lowering("astype", method=True)
def _astype(p: Context, args: list, kwargs: dict) -> Node:
    if len(args) != 2:
        raise ZMLXTypeError("astype() takes exactly one dtype")
    v, d = args
    if isinstance(d, type) and d in (float, int, bool):
        d = {float: mx.float32, int: mx.int32, bool: mx.bool_}[d]
    if d not in MX_DTYPES:
        raise ZMLXTypeError(f"astype() needs an MLX dtype such as mx.float16, got {d!r}")
    target = MX_DTYPES[d]
    if is_python(v):
        v = node_of(v, target)
    return cast(unwrap(v), target)


# ---- elementwise functions ---------------------------------------------------------------------

@lowering("where", mx.where, np.where)
def _where(p: Context, args: list, kwargs: dict) -> Any:
    if len(args) != 3 or kwargs:
        raise ZMLXTypeError(f"where() takes 3 arguments ({len(args)} given)")
    c = args[0]
    if is_python(c):
        return args[1] if c else args[2]
    if isinstance(args[1], tuple) or isinstance(args[2], tuple):
        return p.select(p.to_bool(c), args[1], args[2])
    return p.op("where", [p.to_bool(c), args[1], args[2]])  # broadcasts all three


@lowering("clip", mx.clip, np.clip)
def _clip(p: Context, args: list, kwargs: dict) -> Any:
    if len(args) != 3:
        raise ZMLXTypeError(f"clip() takes 3 arguments (x, a_min, a_max), {len(args)} given")
    x = args[0]
    if args[1] is not None:
        x = p.op("maximum", [x, args[1]])
    if args[2] is not None:
        x = p.op("minimum", [x, args[2]])
    return x


def _extreme(name: str, pairwise: str) -> Lowering:
    """max() or min(): of several values elementwise (builtins.max(a, b)); of one, the row reduction."""
    def extreme(p: Context, args: list, kwargs: dict) -> Any:
        if len(args) < 2:
            return _reduced(p, name, args, kwargs)
        if kwargs:
            raise ZMLXTypeError(f"{name}() of several values takes no keyword arguments")
        result = args[0]
        for a in args[1:]:
            result = p.op(pairwise, [result, a])
        return result
    return extreme


lowering("max", builtins.max, mx.max, np.max, method=True)(_extreme("max", "maximum"))
lowering("min", builtins.min, mx.min, np.min, method=True)(_extreme("min", "minimum"))


# ---- row reductions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """A row reduction's checked operand `x`, the row length `n` and the `ddof` keyword."""

    x: Node
    n: Node
    single: bool  # x is already one value per row (a 0-d array in the body): a row of one
    ddof: Any

    def reduce(self, op: str, v: Node) -> Node:
        """Registry reduction `op` of v over the row."""
        if self.single:
            return cast(v, dt.int32) if op == "sum" and v.dtype == dt.bool_ else v
        return apply(op, v)


def reduction(name: str, *callables: Any, method: bool = False) -> Callable[[Callable[[Row], Node]], Lowering]:
    """Register the decorated fn(row) as the row reduction `name`, given the call's checked Row."""
    def register(fn: Callable[[Row], Node]) -> Lowering:
        return lowering(name, *callables, method=method)(lambda p, args, kwargs: fn(_row(p, name, args, kwargs)))
    return register


def _row(p: Context, name: str, args: list, kwargs: dict) -> Row:
    """Check a call of reduction `name`: in a row kernel, outside data-dependent branches, one
    array reduced over its (only) axis."""
    if p.mode != "row":
        raise ZMLXSyntaxError(f"reduction '{name}' is only allowed in row kernels (@zmlx.reduce / "
                              "@zmlx.map_reduce); an elementwise body sees one element")
    if p.branch_depth:
        raise ZMLXSyntaxError(f"reduction '{name}' inside a data-dependent branch is not supported; "
                              "compute it before the 'if' and select afterwards")
    if len(args) != 1:
        raise ZMLXTypeError(f"{name}() takes one array in a row kernel ({len(args)} given)")
    axis = kwargs.pop("axis", None)
    kwargs.pop("keepdims", None)
    ddof = kwargs.pop("ddof", 0)
    if kwargs:
        raise ZMLXTypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if axis not in (None, 0, -1, (0,), (-1,)):
        raise ZMLXSyntaxError(f"{name}(axis={axis}) reduces over something that is not the row; "
                              "the body sees one row (1-D), so only axis=-1 (or 0, or None) exists")
    x = args[0]
    if is_python(x) or isinstance(x, Weak):
        raise ZMLXTypeError(f"{name}() needs a row (an array value), not a scalar")
    p.check_current([x])
    shape = p.shape(x)
    return Row(x, const(shape[0] if shape else 1, dt.int32), not shape, ddof)


def _reduced(p: Context, op: str, args: list, kwargs: dict) -> Node:
    """The registry reduction `op` of the row args[0]."""
    row = _row(p, op, args, kwargs)
    return row.reduce(op, row.x)


def _divide(total: Node, count: Node) -> Node:
    """total / count for a row mean. A half-precision total is scaled by 1/count computed in float32
    and rounded to its type, as MLX's mean does; promoting the row length itself to float16
    overflows past 65504 (and bfloat16 rounds most lengths). The rounding sits on the row-length
    path only, so gradients through `total` are unaffected."""
    if total.dtype.is_float and total.dtype.bits < 32:
        inverse = apply("div", const(1.0, dt.float32), cast(count, dt.float32))
        return apply("mul", total, cast(inverse, total.dtype))
    return apply("div", total, count)


@reduction("sum", mx.sum, np.sum, method=True)
def _sum(row: Row) -> Node:
    return row.reduce("sum", row.x)


@reduction("mean", mx.mean, np.mean, method=True)
def _mean(row: Row) -> Node:
    return _divide(row.reduce("sum", row.x), row.n)


@reduction("var", mx.var, method=True)
def _var(row: Row) -> Node:
    mean = _divide(row.reduce("sum", row.x), row.n)
    d = apply("sub", row.x, mean)
    return _divide(row.reduce("sum", apply("mul", d, d)), apply("sub", row.n, row.ddof) if row.ddof else row.n)


# softmax and logsumexp shift by the row max for range only: neither depends on it, so the shift
# is a constant to the derivative (stop_gradient). Differentiated, the max would add terms that
# cancel only in exact arithmetic (float32 noise at the arg-max, 20x the true gradient of a long
# flat row) and tie-counting reductions; MLX's VJPs are exactly softmax-based too.
@reduction("softmax", mx.softmax)
def _softmax(row: Row) -> Node:
    ex = apply("exp", apply("sub", row.x, apply("stop_gradient", row.reduce("max", row.x))))
    return apply("div", ex, row.reduce("sum", ex))


@reduction("logsumexp", mx.logsumexp, method=True)
def _logsumexp(row: Row) -> Node:
    m = row.reduce("max", row.x)  # exact for rows of -inf/+inf as MLX's
    safe = apply("stop_gradient", apply("where", apply("isinf", m), 0.0, m))
    return apply("add", safe, apply("log", row.reduce("sum", apply("exp", apply("sub", row.x, safe)))))
