"""The MLX, NumPy and builtin functions kernels call, lowered to IR: registry ops, and one @lowering each for the rest."""
from __future__ import annotations

import builtins
import difflib
import functools
import math
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

import mlx.core as mx
import numpy as np

from ..errors import ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir.build import apply, cast, const, rounding_cast
from ..ir.node import Node
from ..ir.positions import index
from ..ir.registry import BY_PY_NAME, OPS
from .values import MX_DTYPES, Weak, describe, is_python, node_of, strong, unwrap


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

def bind(name: str, args: list, kwargs: dict, params: Sequence[str], defaults: dict) -> dict:
    """A call's arguments by MLX's parameter names: `params` positional or keyword (the first one
    required), `defaults` for the rest and for the keyword-only ones (named in defaults only)."""
    if len(args) > len(params):
        raise ZMLXTypeError(f"{name}() takes at most {len(params)} positional arguments "
                            f"({', '.join(params)}), {len(args)} given")
    bound = dict(zip(params, args))
    for k, v in kwargs.items():
        if k in bound:
            raise ZMLXTypeError(f"{name}() got multiple values for argument '{k}'")
        if k not in params and k not in defaults:
            raise ZMLXTypeError(f"{name}() got an unexpected keyword argument '{k}'")
        bound[k] = v
    missing = [q for q in params if q not in bound and q not in defaults]
    if missing:
        raise ZMLXTypeError(f"{name}() missing required argument '{missing[0]}'")
    return {**defaults, **bound}


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
    raise ZMLXNameError(unsupported_method(name))


def _intrinsic(p: Context, op: str, args: list, kwargs: dict) -> Any:
    spec = OPS[op]
    if spec.reduction:
        return _reduced(p, op, args, kwargs)
    if kwargs:
        raise ZMLXTypeError(f"{op}() got an unexpected keyword argument '{next(iter(kwargs))}'")
    if len(args) != spec.arity:
        raise ZMLXTypeError(f"{op}() takes {spec.arity} argument{'s' * (spec.arity != 1)} "
                            f"({len(args)} given)")
    return p.op(op, args)


def _from_array_library(fn: Any, numpy: bool = True) -> bool:
    """Whether fn is MLX's (or NumPy's) own function, whose results are arrays."""
    module = getattr(fn, "__module__", None) or ""
    return module.startswith("mlx") or (numpy and module.split(".")[0] == "numpy")


# ---- Python-level functions --------------------------------------------------------------------

@lowering("range", range)
def _range(p: Context, args: list, kwargs: dict) -> range:
    """range(n) of constant bounds, in `for i in range(...)` (the loop is unrolled)."""
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or kwargs:
        raise ZMLXSyntaxError("range() bounds must be constant integers (the loop is unrolled)")
    return range(*args)


def _conversion(kind: type) -> Lowering:
    """float(), int() or bool() of a Python number or string (float("inf")), computed now (of an
    array: refused)."""
    def convert(p: Context, args: list, kwargs: dict) -> Any:
        """Python's conversion of a constant number or string (float("inf"), float("nan"))."""
        if len(args) != 1 or kwargs or not (is_python(args[0]) or isinstance(args[0], str)):
            raise ZMLXSyntaxError(f"{kind.__name__}() of an array is not supported; use .astype(...)")
        try:
            return kind(args[0])
        except ValueError as err:
            raise ZMLXTypeError(f"{kind.__name__}({args[0]!r}): {err}") from None
    return convert


for _kind in (float, int, bool):
    lowering(_kind.__name__, _kind)(_conversion(_kind))


def _type_info(kind: Callable) -> Lowering:
    """mx.finfo(dtype) / mx.iinfo(dtype): MLX's object itself, whose .min, .max, .eps ... are
    Python numbers (constants of the kernel, as in the eager body)."""
    def info(p: Context, args: list, kwargs: dict) -> Any:
        """The dtype's limits as constants: .min, .max (and .eps, .smallest_normal of a float type)."""
        d = bind(kind.__name__, args, kwargs, ("dtype",), {})["dtype"]
        if not isinstance(d, mx.Dtype):
            raise ZMLXTypeError(f"{kind.__name__}() takes an MLX dtype (mx.float16, x.dtype), got {describe(d)}")
        if (kind is mx.finfo) != mx.issubdtype(d, mx.inexact):
            other = "iinfo" if kind is mx.finfo else "finfo"
            sort = "an integer" if kind is mx.finfo else "a floating-point"
            raise ZMLXTypeError(f"mx.{kind.__name__}({d}): {str(d).split('.')[-1]} is {sort} type; its limits "
                                f"are mx.{other}({d}).min and .max")
        try:
            return kind(d)
        except ValueError as err:
            raise ZMLXTypeError(f"mx.{kind.__name__}({d}): {err}") from None
    return info


lowering("finfo", mx.finfo)(_type_info(mx.finfo))
lowering("iinfo", mx.iinfo)(_type_info(mx.iinfo))


@lowering("array", mx.array)
def _array(p: Context, args: list, kwargs: dict) -> Node:
    """mx.array(scalar, dtype): a constant of MLX's (strong) type."""
    if len(args) < 1 or not is_python(args[0]):
        raise ZMLXSyntaxError("mx.array() in a kernel takes one Python scalar")
    d = MX_DTYPES.get(args[1] if len(args) > 1 else kwargs.get("dtype"), None)
    return node_of(args[0], d or dt.weak_kind(args[0]))


@lowering("astype", method=True)
def _astype(p: Context, args: list, kwargs: dict) -> Node:
    """x.astype(dtype): MLX's conversion (float, int and bool stand for float32, int32, bool_)."""
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
    return rounding_cast(unwrap(v), target)  # to a 16-bit float: rounded there, even to its own type


# ---- elementwise functions ---------------------------------------------------------------------

@lowering("where", mx.where, np.where)
def _where(p: Context, args: list, kwargs: dict) -> Any:
    """mx.where(c, a, b): both sides computed, selected elementwise (broadcasting as MLX)."""
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
    """mx.clip(a, a_min, a_max), positional or by keyword; a None bound is no bound."""
    a = bind("clip", args, kwargs, ("a", "a_min", "a_max"), {})
    x = a["a"]
    if a["a_min"] is not None:
        x = p.op("maximum", [x, a["a_min"]])
    if a["a_max"] is not None:
        x = p.op("minimum", [x, a["a_max"]])
    return x


def _pairwise(name: str, pairwise: str) -> Lowering:
    """Python's max() or min(): of several values elementwise (max(a, b, c)); of one, the row reduction."""
    def extreme(p: Context, args: list, kwargs: dict) -> Any:
        """Python's builtin: of several values elementwise (max(a, b)), of one row its reduction."""
        if len(args) < 2:
            return _reduced(p, name, args, kwargs)
        if kwargs:
            raise ZMLXTypeError(f"{name}() of several values takes no keyword arguments")
        result = args[0]
        for a in args[1:]:
            result = p.op(pairwise, [result, a])
        return result
    return extreme


lowering("builtins.max", builtins.max)(_pairwise("max", "maximum"))
lowering("builtins.min", builtins.min)(_pairwise("min", "minimum"))


# ---- row reductions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """A row reduction's checked operand `x`, the row length `n` and its other arguments by name
    (ddof, ord)."""

    x: Node
    n: Node
    single: bool  # x is already one value per row (a 0-d array in the body): a row of one
    options: dict

    def reduce(self, op: str, v: Node) -> Node:
        """Registry reduction `op` of v over the row."""
        if self.single:
            return cast(v, dt.int32) if op == "sum" and v.dtype == dt.bool_ else v
        return apply(op, v)


_DEFAULTS = {"axis": None, "keepdims": False, "ddof": 0, "ord": None}  # MLX's, per parameter name
_REDUCTION = ("axis", "keepdims")  # the parameters after the array of mx.sum, mx.max, x.sum(), ...


def reduction(name: str, *callables: Any, method: bool = False, params: Sequence[str] = _REDUCTION,
              keywords: Optional[dict] = None) -> Callable[[Callable[[Row], Node]], Lowering]:
    """Register the decorated fn(row) as the row reduction `name` of MLX's signature
    `name(a, *params, **keywords)`, given the call's checked Row; `keepdims=True` gives MLX's shape."""
    def register(fn: Callable[[Row], Node]) -> Lowering:
        @functools.wraps(fn)
        def lower(p: Context, args: list, kwargs: dict) -> Node:
            row, keepdims = _row(p, name, args, kwargs, params, keywords or {})
            value = fn(row)
            return _row_of_one(value) if keepdims and not row.single else value
        return lowering(name, *callables, method=method)(lower)
    return register


def check_row_context(p: Context, what: str) -> None:
    """A call that needs the whole row (a reduction, a scan, a sort): in a row kernel, outside
    data-dependent branches (every thread of the row takes part in it)."""
    if p.mode != "row":
        raise ZMLXSyntaxError(f"{what} is only allowed in row kernels (@zmlx.reduce / @zmlx.map_reduce); "
                              "an elementwise body sees one element")
    if p.branch_depth:
        raise ZMLXSyntaxError(f"{what} inside a data-dependent branch is not supported; compute it before "
                              "the 'if' and select afterwards")


def _row(p: Context, name: str, args: list, kwargs: dict, params: Sequence[str] = _REDUCTION,
         keywords: Optional[dict] = None) -> tuple[Row, bool]:
    """Check a call of reduction `name`: in a row kernel, outside data-dependent branches, one
    array reduced over its (only) axis; the Row and whether keepdims was asked."""
    check_row_context(p, f"reduction '{name}'")
    a = bind(name, args, kwargs, ("a", *params), {**{q: _DEFAULTS[q] for q in params}, **(keywords or {})})
    _check_row_axis(name, a.get("axis"))
    for flag in ("keepdims", "precise"):
        if not isinstance(a.get(flag, False), bool):
            raise ZMLXTypeError(f"{name}(): {flag} must be True or False (a constant), got {describe(a[flag])}")
    x = a["a"]
    if is_python(x) or isinstance(x, Weak):
        raise ZMLXTypeError(f"{name}() needs a row (an array value), not a scalar")
    if not isinstance(x, Node):
        raise ZMLXTypeError(f"{name}() needs a row (an array value), not {describe(x)}")
    p.check_current([x])
    shape = p.shape(x)
    return Row(x, const(shape[0] if shape else 1, dt.int32), not shape, a), a.get("keepdims", False)


def _check_row_axis(name: str, axis: Any) -> None:
    """Refuse an axis other than the row's: None, 0 or -1 (alone, or as a one-element tuple)."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    if axis is None or (len(axes) == 1 and type(axes[0]) is int and axes[0] in (0, -1)):
        return
    if not all(type(q) is int for q in axes):
        raise ZMLXTypeError(f"{name}(): axis must be a constant integer (or None), got {describe(axis)}")
    if len(axes) > 1:
        raise ZMLXSyntaxError(f"{name}(axis={axis}): a row body reduces over its one row (1-D); reduce over "
                              f"one of these axes in this kernel (the decorator's axis=, e.g. "
                              f"@zmlx.map_reduce(axis={axes[-1]})) and over the other in a second kernel "
                              "or with MLX")
    raise ZMLXSyntaxError(f"{name}(axis={axis}): the body is MLX code for one row (1-D), where only axis "
                          "-1 (or 0, or None) exists; write axis=-1, and choose the axis of the inputs "
                          f"that rows run along with the decorator's axis= (e.g. @zmlx.map_reduce(axis={axis}))")


def _row_of_one(v: Node) -> Node:
    """A per-row value as MLX's keepdims=True shapes it, a row of length 1: v - 0 at the position of
    a row of one (exact for every value, -0.0 included), so a map_reduce output of it is (..., 1)."""
    zero = index(1)
    if v.dtype == dt.bool_:
        return apply("logical_and", v, apply("eq", zero, 0))
    return apply("sub", v, cast(zero, v.dtype))


def _reduced(p: Context, op: str, args: list, kwargs: dict) -> Node:
    """The registry reduction `op` of the row args[0], with MLX's axis and keepdims."""
    row, keepdims = _row(p, op, args, kwargs)
    value = row.reduce(op, row.x)
    return _row_of_one(value) if keepdims and not row.single else value


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
    """The row's sum (axis -1, 0 or None; keepdims)."""
    return row.reduce("sum", row.x)


@reduction("max", mx.max, np.max, method=True)
def _max(row: Row) -> Node:
    """The row's maximum (axis -1, 0 or None; keepdims)."""
    return row.reduce("max", row.x)


@reduction("min", mx.min, np.min, method=True)
def _min(row: Row) -> Node:
    """The row's minimum (axis -1, 0 or None; keepdims)."""
    return row.reduce("min", row.x)


@reduction("mean", mx.mean, np.mean, method=True)
def _mean(row: Row) -> Node:
    """The row's mean (axis -1, 0 or None; keepdims)."""
    return _divide(row.reduce("sum", row.x), row.n)


@reduction("var", mx.var, method=True, params=("axis", "keepdims", "ddof"))
def _var(row: Row) -> Node:
    """The row's variance (axis -1, 0 or None; keepdims, ddof)."""
    ddof = row.options["ddof"]
    if type(ddof) is not int:
        raise ZMLXTypeError(f"var(): ddof must be a constant integer (a Python int), got {describe(ddof)}")
    mean = _divide(row.reduce("sum", row.x), row.n)
    d = apply("sub", row.x, mean)
    return _divide(row.reduce("sum", apply("mul", d, d)), apply("sub", row.n, ddof) if ddof else row.n)


@reduction("std", mx.std, method=True, params=("axis", "keepdims", "ddof"))
def _std(row: Row) -> Node:
    """The row's standard deviation, sqrt of var (axis -1, 0 or None; keepdims, ddof)."""
    return apply("sqrt", _var.__wrapped__(row))


# softmax and logsumexp shift by the row max for range only: neither depends on it, so the shift
# is a constant to the derivative (stop_gradient). Differentiated, the max would add terms that
# cancel only in exact arithmetic (float32 noise at the arg-max, 20x the true gradient of a long
# flat row) and tie-counting reductions; MLX's VJPs are exactly softmax-based too.
@reduction("softmax", mx.softmax, params=("axis",), keywords={"precise": False})
def _softmax(row: Row) -> Node:
    """Softmax over the row (axis -1, 0 or None; precise=: the kernel computes in compute_dtype anyway)."""
    ex = apply("exp", apply("sub", row.x, apply("stop_gradient", row.reduce("max", row.x))))
    return apply("div", ex, row.reduce("sum", ex))


@reduction("logsumexp", mx.logsumexp, method=True)
def _logsumexp(row: Row) -> Node:
    """log(sum(exp(x))) of the row, computed shifted by its max (axis -1, 0 or None; keepdims)."""
    m = row.reduce("max", row.x)  # exact for rows of -inf/+inf as MLX's
    safe = apply("stop_gradient", apply("where", apply("isinf", m), 0.0, m))
    return apply("add", safe, apply("log", row.reduce("sum", apply("exp", apply("sub", row.x, safe)))))


@reduction("norm", mx.linalg.norm, np.linalg.norm, params=("ord", "axis", "keepdims"))
def _norm(row: Row) -> Node:
    """The row's vector norm as mx.linalg.norm: ord None or 2, 1, inf, -inf, 0 or any p (keepdims)."""
    order, x = row.options["ord"], row.x
    if isinstance(order, str):
        raise ZMLXSyntaxError(f"norm(ord={order!r}) is a matrix norm; the body sees one row (1-D): use a "
                              "vector norm (ord=None or 2, 1, inf, -inf, 0, or a number)")
    if not (order is None or is_python(order)) or isinstance(order, bool):
        raise ZMLXTypeError(f"norm(): ord must be a constant number (or None), got {describe(order)}")
    if not x.dtype.is_float:
        raise ZMLXTypeError(f"norm() of {'an' if x.dtype.name[0] == 'i' else 'a'} {x.dtype.name} row: MLX's "
                            "linalg.norm takes floating-point "
                            "arrays; convert it first (.astype(mx.float32))")
    if order is None or order == 2:
        return apply("sqrt", row.reduce("sum", apply("mul", x, x)))
    if order == 0:
        return cast(row.reduce("sum", apply("ne", x, 0)), x.dtype)
    a = apply("abs", x)
    if order == 1:
        return row.reduce("sum", a)
    if math.isinf(order):
        return row.reduce("max" if order > 0 else "min", a)
    return apply("power", row.reduce("sum", apply("power", a, order)), 1.0 / order)


# ---- what a refusal says: the supported names nearby, and what to write instead ----------------

_MATRIX = ("a kernel body computes one element (elementwise) or one row (row kernels), not products of "
           "arrays: compute {name} with MLX outside the kernel and pass its result in")
_LAYOUT = ("a kernel body sees one element (elementwise) or one row (row kernels): rearrange the axes "
           "outside the kernel (pass mx.moveaxis(x, a, b), x.T, x.reshape(...)), and pick the axis the "
           "rows run along with the decorator's axis= (@zmlx.map_reduce(axis=-2))")
_MATRICES = ("a kernel body computes one element (elementwise) or one row (row kernels), not matrices: build "
             "{name} with MLX outside the kernel and pass it in (or compare positions in a row body: "
             "mx.arange(x.shape[-1]) <= i)")
_ADVICE = {  # MLX functions a kernel cannot hold -> what to write instead
    **{n: _MATRIX for n in ("matmul", "addmm", "einsum", "tensordot", "inner", "outer", "kron", "conv1d",
                            "conv2d", "conv3d", "conv_general", "conv_transpose1d", "conv_transpose2d",
                            "block_masked_mm", "gather_mm", "quantized_matmul", "gather_qmm")},
    **{n: _LAYOUT for n in ("transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "broadcast_to",
                            "tile", "repeat", "atleast_1d", "atleast_2d", "atleast_3d", "unflatten",
                            "as_strided")},
    "view": "a bit-level reinterpretation has no kernel spelling; convert values with .astype(dtype)",
    **{n: _MATRICES for n in ("eye", "identity", "tri", "tril", "triu")},
    **{n: "a kernel has no side effects and cannot evaluate arrays: call it outside the kernel"
       for n in ("eval", "async_eval", "print", "save", "load", "savez", "synchronize")},
}
_FAST = {  # mx.fast functions -> the body that computes them (their derivative is generated)
    "rms_norm": "x * mx.rsqrt(mx.mean(x * x) + eps) * w",
    "layer_norm": "(x - x.mean()) * mx.rsqrt(x.var() + eps) * w + b",
    "rope": "the rotation from zmlx_dsl.nn (zmlx_dsl.nn.rope) or its body",
    "scaled_dot_product_attention": "MLX's own kernel outside (attention multiplies matrices)",
}


def _supported_names(module: Any) -> list[str]:
    """The public names of `module` (mx, math, np, builtins) that kernels lower."""
    return sorted(n for n in dir(module) if not n.startswith("_") and
                  (id(getattr(module, n)) in SPECIAL or id(getattr(module, n)) in INTRINSIC))


def no_attribute(module: Any, attr: str) -> str:
    """The refusal of module.attr that does not exist, naming the supported names close to it."""
    prefix = {mx: "mx.", math: "math.", np: "np."}.get(module, f"{module.__name__}.")
    near = _nearby(attr, _supported_names(module), prefix) if module in (mx, math, np) else ""
    return f"module '{module.__name__}' has no attribute '{attr}'{near}"


def array_methods() -> list[str]:
    """The array methods kernels lower (x.sum(), x.astype(), x.exp(), ...)."""
    return sorted(n for n in set(METHODS) | {b for b in BY_PY_NAME if "." not in b}
                  if hasattr(mx.array, n) and (n in METHODS or OPS[BY_PY_NAME[n]].arity >= 1))


def _nearby(name: str, choices: Sequence[str], prefix: str) -> str:
    """The closest supported names to `name`, as a parenthesis for a message ('' when none is close)."""
    close = difflib.get_close_matches(name, choices, n=4, cutoff=0.6)
    return f" (supported ones of similar names: {', '.join(prefix + c for c in close)})" if close else ""


_SEE_ALSO = "the README's table 'MLX functions inside kernels' lists every one"


def unsupported_function(target: Any) -> str:
    """Why calling `target` in a kernel is refused, and what to write instead."""
    name = getattr(target, "__name__", None) or type(target).__name__
    module = getattr(target, "__module__", None) or ""
    if not isinstance(target, (type, *types_of_functions())):
        what = type(target).__name__
        return (f"a '{what}' object is called here; kernels inline plain Python functions (def or lambda), "
                "not other callables (an nn.Module's __call__): write its computation in the body, with "
                "the arrays it holds passed in as arguments (kernel(x, layer.weight))")
    qual = getattr(target, "__qualname__", name)
    full = f"{module}.{qual}" if module and module != "builtins" else qual
    head = f"function '{full}' is not supported in kernels"
    if module.startswith("mlx.core.random") or module == "mlx.core.random":
        return (f"{head}: a kernel draws no random numbers; draw them with mx.random outside the kernel "
                "(mx.random.uniform(shape=x.shape)) and pass them in")
    if module.startswith("mlx.core.fast"):
        body = _FAST.get(name)
        inside = f"write what it computes in the body ({body})" if body else "write what it computes in the body"
        return f"{head}: mx.fast.{name} is MLX's own kernel; {inside}, or call it outside the kernel"
    if module.startswith("mlx") and name in _ADVICE:
        return f"{head}: " + _ADVICE[name].format(name=f"mx.{name}")
    if module.startswith("mlx"):
        return f"{head}{_nearby(name, _supported_names(mx), 'mx.')}; {_SEE_ALSO}"
    if module == "math":
        return (f"{head}{_nearby(name, _supported_names(math), 'math.')}; the math functions kernels accept: "
                f"{', '.join(_supported_names(math))}")
    if module.startswith("numpy"):
        return (f"{head}{_nearby(name, _supported_names(np), 'np.')}; NumPy functions are accepted where they "
                f"spell an MLX one; {_SEE_ALSO}")
    if module == "builtins":
        shapes = "; a row's length is x.shape[-1]" if name == "len" else ""
        return f"{head}; the builtins kernels accept: {', '.join(_supported_names(builtins))}{shapes}"
    return f"{head}: kernels inline Python functions (def or lambda) and MLX's functions; {_SEE_ALSO}"


def types_of_functions() -> tuple:
    """The types of Python and MLX functions (what is called is a function, not some object)."""
    return (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type(mx.exp), type(np.exp),
            type(np.sinc), functools.partial)


def unsupported_method(name: str) -> str:
    """Why the array method x.name(...) is refused, naming the nearby supported ones."""
    methods = array_methods()
    if name in _ADVICE:
        return f"array method '{name}' is not supported in kernels: {_ADVICE[name].format(name=f'x.{name}()')}"
    near = _nearby(name, methods, "x.")
    return (f"array method '{name}' is not supported in kernels{near}; the supported ones are "
            f"{', '.join(methods)}")
