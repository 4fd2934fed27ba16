"""Indexing in row bodies, lowered to reads at other positions (ir/positions.py): subscripts and
slices, slice assignment, mx.arange, and the functions that re-assemble rows (concatenate, split,
stack, roll, pad, take, take_along_axis). Shapes are static, as in MLX: a row's length is known
when the kernel is compiled, so bounds are Python numbers and clamp as Python's and MLX's do."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import mlx.core as mx
import numpy as np

from ..errors import ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir.build import apply, cast, const
from ..ir.node import Node
from ..ir.positions import gather, index, inverse, value_range
from .library import Context, bind, lowering
from .values import MX_DTYPES, Weak, describe, is_python, node_of, strong


class Rows(Context, Protocol):
    """What indexing needs of the parser beyond a library Context (expressions.ExpressionParser)."""

    def row(self, v: Any, what: str) -> tuple[Node, int]: ...
    def shape(self, v: Any) -> tuple: ...


@dataclass(frozen=True)
class Stacked:
    """mx.stack(rows, axis) in a row body: a 2-D array, usable only flattened back into a row
    (`.reshape(-1)`, `.flatten()`): axis 0 concatenates the rows, axis -1 interleaves them."""

    parts: tuple[Node, ...]
    length: int
    axis: int

    def flat(self) -> Node:
        n, m = len(self.parts), self.length
        if self.axis == 0:
            return _join(list(self.parts), [m] * n)
        i = index(n * m)
        lane, at = _int(apply("mod", i, n)), _int(apply("floordiv", i, n))
        out = gather(self.parts[-1], at, m)
        for k in range(n - 2, -1, -1):
            out = apply("where", apply("eq", lane, k), gather(self.parts[k], at, m), out)
        return out


def _int(n: Node) -> Node:
    return cast(n, dt.int32)


def _shifted(i: Node, start: int, step: int = 1) -> Node:
    """start + step * i, as int32 (no node for the identity parts)."""
    if step != 1:
        i = apply("mul", i, const(step, dt.int32))
    if start < 0:
        return apply("sub", i, const(-start, dt.int32))
    return apply("add", i, const(start, dt.int32)) if start else i


def copy(x: Node) -> Node:
    """x as a new array (MLX's x[:], x.reshape(-1), mx.roll(x, 0) are new arrays: assigning into
    one must not change x). The node is equal to x, only not the same object."""
    return Node(x.op, x.args, x.dtype, x.arg)


def take_row(x: Node, length: int, pos: Node) -> Node:
    """x (a row of `length`) at positions pos; a copy of x for the identity."""
    if pos.op == "index" and pos.arg == length:
        return copy(x)
    return gather(x, pos, length)


def _join(parts: list, lengths: list) -> Node:
    """Rows one after another: at position i, the part i falls in."""
    i = index(sum(lengths))
    offsets = np.cumsum([0] + lengths).tolist()
    out = take_row(parts[-1], lengths[-1], _shifted(i, -offsets[-2]))
    for k in range(len(parts) - 2, -1, -1):
        out = apply("where", apply("lt", i, offsets[k + 1]), take_row(parts[k], lengths[k], _shifted(i, -offsets[k])), out)
    return out


def wrapped(p: Rows, i: Any, length: int) -> Node:
    """A user's integer index as a position: negative values count from the end, as in MLX
    (positions still outside the row read 0, never outside a buffer)."""
    if is_python(i):
        if isinstance(i, bool) or not isinstance(i, int):
            raise ZMLXTypeError(f"an index must be an integer, got {type(i).__name__}")
        if not -length <= i < length:
            raise ZMLXShapeError(f"index {i} is out of bounds for a row of length {length}")
        return const(i % length, dt.int32)
    node = node_of(i, dt.int32) if isinstance(i, Weak) else i
    if not node.dtype.is_int:
        raise ZMLXTypeError(f"an index array must be of an integer type, got {node.dtype.name}; "
                            "convert it with .astype(mx.int32)")
    node = _int(node)
    bounds = value_range(node)
    if bounds is not None and bounds[0] >= 0:  # never negative (a sort's order, arange): as it is
        return node
    return apply("where", apply("lt", node, 0), apply("add", node, length), node)


def slice_positions(s: slice, length: int) -> tuple[int, int, int]:
    """(start, step, count) of a slice of constant bounds over a row of `length`, clamped as Python's."""
    for bound, name in ((s.start, "start"), (s.stop, "stop"), (s.step, "step")):
        if bound is not None and not (isinstance(bound, int) and not isinstance(bound, bool)):
            raise ZMLXSyntaxError(f"slice {name} must be a constant integer (the row's shape is static); "
                                  "for a bound that depends on data, keep the row's length and select: "
                                  "mx.where(mx.arange(x.shape[-1]) < bound, x, 0)")
    if s.step == 0:
        raise ZMLXShapeError("slice step cannot be zero")
    start, stop, step = s.indices(length)
    return start, step, len(range(start, stop, step))


def subscript(p: Rows, v: Any, idx: Any) -> Any:
    """v[idx] for a value of a row body: slices and integer (array) indices along the row."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    if any(q is Ellipsis for q in parts):
        parts = tuple(q for q in parts if q is not Ellipsis)
    if all(q is None for q in parts):  # v[None], v[..., None] of a value per row: a row of one, as in MLX
        if p.shape(v) and parts or len(parts) > 1:
            raise ZMLXSyntaxError("x[None] makes a 2-D array; a row body works on 1-D rows (and values "
                                  "that are one per row); drop the new axis")
        return _filled(p, "[None]", 1, v, None) if parts and isinstance(v, Node) and p.mode == "row" else v
    real = [q for q in parts if q is not None]
    if len(real) > 1:
        raise ZMLXSyntaxError(f"{len(real)} indices given for a row, which has one axis; index the row "
                              "with one slice or index (x[i], x[a:b], x[idx])")
    if len(real) != len(parts):
        raise ZMLXSyntaxError("indexing with None makes a 2-D array; a row body works on 1-D rows")
    q = real[0]
    if not p.shape(v) and isinstance(q, int) and q in (0, -1):  # label[None][0]: the value itself
        return v
    x, length = p.row(v, "indexed")
    if isinstance(q, slice):
        start, step, count = slice_positions(q, length)
        if count == 0:
            raise ZMLXShapeError(f"the slice [{_text(q)}] of a row of length {length} is empty; a kernel's "
                                 "rows cannot be empty")
        return take_row(x, length, _shifted(index(count), start, step))
    if isinstance(q, tuple):
        raise ZMLXTypeError("a row is indexed by an integer, a slice or an integer array, not a tuple")
    return gather(x, wrapped(p, q, length), length)


def _text(s: slice) -> str:
    return ":".join("" if b is None else str(b) for b in (s.start, s.stop, s.step)).rstrip(":") or ":"


def assign(p: Rows, target: Any, idx: Any, value: Any) -> Node:
    """The row `target` with target[idx] = value (MLX's eager slice assignment): value cast to the
    row's dtype, broadcast over the positions assigned."""
    y, length = p.row(target, "assigned into")
    i = index(length)
    if isinstance(idx, slice):
        start, step, count = slice_positions(idx, length)
        if count == 0:
            return y
        last = start + step * (count - 1)
        lo, hi = min(start, last), max(start, last)
        inside = apply("logical_and", apply("ge", i, lo), apply("le", i, hi))
        offset = _shifted(i, -start)
        if step != 1:
            inside = apply("logical_and", inside, apply("eq", apply("mod", offset, abs(step)), 0))
            offset = _int(apply("floordiv", offset, step))
    elif isinstance(idx, (tuple, type(None))) or idx is Ellipsis:
        raise ZMLXSyntaxError("slice assignment takes one slice or integer index along the row")
    elif isinstance(idx, Node) and p.shape(idx):  # y[perm] = v: a scatter by an index row
        return put(p, y, length, idx, value)
    else:
        pos = wrapped(p, idx, length)
        inside, offset, count = apply("eq", i, pos), None, 1
    v = node_of(value, y.dtype) if not isinstance(value, Node) else cast(value, y.dtype)
    if p.shape(v):
        n = p.shape(v)[0]
        if n not in (1, count):
            raise ZMLXShapeError(f"cannot assign a row of length {n} to {count} positions")
        if n == count and count > 1:
            v = take_row(v, n, offset)
    return apply("where", inside, v, y)


def put(p: Rows, y: Node, length: int, idx: Any, value: Any) -> Node:
    """The row y with value written at the positions idx (MLX's put_along_axis, `y[idx] = value`):
    at one position per row (a label), or at distinct positions of a sort's order (an argsort of a
    row of y's length, or a slice of it), where each position is written once."""
    if not p.shape(idx):
        return assign(p, y, idx, value)
    pos = wrapped(p, idx, length)
    count = p.shape(idx)[0]
    inv = inverse(pos, length)
    if inv is None:
        raise ZMLXSyntaxError("a row is written at an index row only where its positions are known to be "
                              "distinct: the order of a sort of a row of the same length (mx.argsort, "
                              "mx.argpartition, or a slice of it); at one position, write "
                              "mx.where(mx.arange(n) == pos, value, y)")
    j, n = inv
    v = node_of(value, y.dtype) if not isinstance(value, Node) else cast(value, y.dtype)
    if p.shape(v) and p.shape(v)[0] not in (1, count):
        raise ZMLXShapeError(f"cannot write a row of length {p.shape(v)[0]} at {count} positions")
    if p.shape(v) and p.shape(v)[0] == count:
        v = gather(v, j, n)
    written = apply("logical_and", apply("ge", j, 0), apply("lt", j, n))
    return apply("where", written, v, y)


# ---- functions -----------------------------------------------------------------------------------

def _axis(name: str, kwargs: dict, default: Optional[int] = 0, allowed: Sequence = (0, -1),
          args: Optional[list] = None, at: int = 0) -> Optional[int]:
    """The axis keyword (or the positional argument `at` of args, taken out) of a call: it must
    name the row."""
    if args is not None and len(args) == at + 1:
        kwargs["axis"] = args.pop()
    axis = kwargs.pop("axis", default)
    if axis not in allowed:
        which = " or ".join(str(a) for a in allowed if a is not None)
        raise ZMLXSyntaxError(f"{name}(axis={axis}): a row body works on 1-D rows, so only axis {which} exists here")
    return axis


def _no_more(name: str, kwargs: dict) -> None:
    if kwargs:
        raise ZMLXTypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")


def _rows_of(p: Rows, name: str, values: Any) -> list[tuple[Node, int]]:
    if not isinstance(values, tuple) or not values:
        raise ZMLXTypeError(f"{name}() takes a list of rows, e.g. {name}([a, b])")
    return [p.row(strong(v), f"passed to {name}()") for v in values]


@lowering("concatenate", mx.concatenate, np.concatenate)
def _concatenate(p: Rows, args: list, kwargs: dict) -> Node:
    _axis("concatenate", kwargs, args=args, at=1)
    _no_more("concatenate", kwargs)
    if len(args) != 1:
        raise ZMLXTypeError(f"concatenate() takes one list of rows ({len(args)} arguments given)")
    rows = _rows_of(p, "concatenate", args[0])
    common = rows[0][0].dtype
    for r, _ in rows[1:]:
        common = dt.promote(common, r.dtype)
    return _join([cast(r, common) for r, _ in rows], [n for _, n in rows])


@lowering("split", mx.split, np.split)
def _split(p: Rows, args: list, kwargs: dict) -> tuple:
    _axis("split", kwargs, args=args, at=2)
    if "indices_or_sections" in kwargs:  # MLX's (and NumPy's) name for it (mlx.nn's glu passes it so)
        if len(args) != 1:
            raise ZMLXTypeError("split() got multiple values for argument 'indices_or_sections'")
        args.append(kwargs.pop("indices_or_sections"))
    _no_more("split", kwargs)
    if len(args) != 2:
        raise ZMLXTypeError("split() takes a row and a number of parts or a list of indices")
    x, length = p.row(args[0], "split")
    at = args[1]
    if is_python(at):
        if not isinstance(at, int) or at <= 0 or length % at:
            raise ZMLXShapeError(f"cannot split a row of length {length} into {at} equal parts; give the "
                                 "split points instead, e.g. mx.split(x, [k])")
        cuts = list(range(0, length + 1, length // at))
    elif isinstance(at, tuple) and all(isinstance(c, int) and not isinstance(c, bool) for c in at):
        cuts = [0] + [min(max(c if c >= 0 else c + length, 0), length) for c in at] + [length]
    else:
        raise ZMLXSyntaxError("split() needs a constant number of parts or constant indices")
    parts = []
    for a, b in zip(cuts, cuts[1:]):
        if b <= a:
            raise ZMLXShapeError(f"split() at {list(cuts[1:-1])} leaves an empty part of a row of length "
                                 f"{length}; a kernel's rows cannot be empty")
        parts.append(take_row(x, length, _shifted(index(b - a), a)))
    return tuple(parts)


@lowering("stack", mx.stack, np.stack)
def _stack(p: Rows, args: list, kwargs: dict) -> Stacked:
    axis = _axis("stack", kwargs, 0, (0, 1, -1), args, 1)
    _no_more("stack", kwargs)
    rows = _rows_of(p, "stack", args[0] if len(args) == 1 else None)
    lengths = {n for _, n in rows}
    if len(lengths) != 1:
        raise ZMLXShapeError(f"stack() needs rows of one length, got lengths {sorted(lengths)}")
    common = rows[0][0].dtype
    for r, _ in rows[1:]:
        common = dt.promote(common, r.dtype)
    return Stacked(tuple(cast(r, common) for r, _ in rows), lengths.pop(), 0 if axis == 0 else -1)


@lowering("reshape", mx.reshape, method=True)
def _reshape(p: Rows, args: list, kwargs: dict) -> Any:
    v, shape = args[0], args[1:]
    if p.mode != "row":
        raise ZMLXSyntaxError("reshape() needs a row kernel (@zmlx.map_reduce / @zmlx.reduce): an elementwise "
                              "body sees one element")
    if len(shape) == 1 and isinstance(shape[0], tuple):
        shape = shape[0]
    _no_more("reshape", kwargs)
    size = len(v.parts) * v.length if isinstance(v, Stacked) else (p.shape(v) or (1,))[0]
    if list(shape) not in ([-1], [size]):
        raise ZMLXSyntaxError(f"reshape{tuple(shape)}: a row body works on 1-D rows; only reshape(-1) "
                              "(flattening) is supported")
    return v.flat() if isinstance(v, Stacked) else copy(v) if isinstance(v, Node) else v


@lowering("flatten", mx.flatten, method=True)
def _flatten(p: Rows, args: list, kwargs: dict) -> Any:
    if p.mode != "row":
        raise ZMLXSyntaxError("flatten() needs a row kernel (@zmlx.map_reduce / @zmlx.reduce): an elementwise "
                              "body sees one element")
    kwargs.pop("start_axis", None), kwargs.pop("end_axis", None)
    _no_more("flatten", kwargs)
    return args[0].flat() if isinstance(args[0], Stacked) else copy(args[0]) if isinstance(args[0], Node) else args[0]


@lowering("roll", mx.roll, np.roll)
def _roll(p: Rows, args: list, kwargs: dict) -> Node:
    _axis("roll", kwargs, None, (None, 0, -1), args, 2)
    _no_more("roll", kwargs)
    if len(args) != 2 or not isinstance(args[1], int):
        raise ZMLXSyntaxError("roll() needs a constant integer shift")
    x, length = p.row(args[0], "rolled")
    k = args[1] % length
    if not k:
        return copy(x)
    i = index(length)  # out[i] = x[(i - k) mod length]: two shifted reads
    return apply("where", apply("lt", i, k), gather(x, _shifted(i, length - k), length), gather(x, _shifted(i, -k), length))


@lowering("pad", mx.pad, np.pad)
def _pad(p: Rows, args: list, kwargs: dict) -> Node:
    mode = kwargs.pop("mode", args[2] if len(args) > 2 else "constant")
    value = kwargs.pop("constant_values", args[3] if len(args) > 3 else 0)
    _no_more("pad", kwargs)
    if mode != "constant":
        raise ZMLXSyntaxError("pad() supports mode='constant' in kernels")
    widths = args[1]
    if isinstance(widths, tuple) and len(widths) == 1:
        widths = widths[0]
    before, after = (widths, widths) if isinstance(widths, int) else widths if isinstance(widths, tuple) and \
        len(widths) == 2 else (None, None)
    if not all(isinstance(w, int) and w >= 0 for w in (before, after)):
        raise ZMLXSyntaxError("pad() needs constant non-negative widths: pad(x, n) or pad(x, (before, after))")
    x, length = p.row(args[0], "padded")
    out = take_row(x, length, _shifted(index(length + before + after), -before))  # 0 outside x
    if is_python(value) and value == 0:
        return out
    i = index(length + before + after)
    inside = apply("logical_and", apply("ge", i, before), apply("lt", i, before + length))
    return apply("where", inside, out, value if is_python(value) else cast(strong(value), x.dtype))


@lowering("take", mx.take, np.take)
def _take(p: Rows, args: list, kwargs: dict) -> Node:
    _axis("take", kwargs, None, (None, 0, -1), args, 2)
    _no_more("take", kwargs)
    if len(args) != 2:
        raise ZMLXTypeError("take() takes a row and indices")
    x, length = p.row(args[0], "indexed")
    return gather(x, wrapped(p, args[1], length), length)


@lowering("take_along_axis", mx.take_along_axis, np.take_along_axis)
def _take_along_axis(p: Rows, args: list, kwargs: dict) -> Node:
    _axis("take_along_axis", kwargs, None, (None, 0, -1), args, 2)  # (None flattens: a row is its own flattening)
    _no_more("take_along_axis", kwargs)
    x, length = p.row(args[0], "indexed")
    return gather(x, wrapped(p, args[1], length), length)


@lowering("arange", mx.arange, np.arange)
def _arange(p: Rows, args: list, kwargs: dict) -> Node:
    if p.mode != "row":
        raise ZMLXSyntaxError("mx.arange() needs a row kernel (@zmlx.map_reduce / @zmlx.reduce); an "
                              "elementwise body sees one element")
    d = kwargs.pop("dtype", None)
    start, stop, step = kwargs.pop("start", None), kwargs.pop("stop", None), kwargs.pop("step", None)
    _no_more("arange", kwargs)
    given = list(args) + [v for v in (start, stop, step) if v is not None]
    if not given or len(given) > 3 or not all(is_python(v) and not isinstance(v, bool) for v in given):
        raise ZMLXSyntaxError("mx.arange() bounds must be constant numbers (a row's length is static); "
                              "use x.shape[-1] for the row length")
    start, stop, step = (0, given[0], 1) if len(given) == 1 else (given[0], given[1], given[2] if len(given) > 2 else 1)
    count = len(np.arange(start, stop, step))
    if count == 0:
        raise ZMLXShapeError(f"mx.arange({', '.join(map(str, given))}) is empty; a kernel's rows cannot be empty")
    target = dt.float32 if any(isinstance(v, float) for v in (start, stop, step)) else dt.int32
    if d is not None:
        target = MX_DTYPES[d]
    i = index(count)
    if target.is_int:
        return cast(_shifted(i, int(start), int(step)), target)
    return apply("add", apply("mul", cast(i, target), step), start) if (start, step) != (0, 1) else cast(i, target)


# ---- filled rows ---------------------------------------------------------------------------------

def _filled(p: Rows, name: str, length: int, value: Any, d: Optional[dt.DType]) -> Node:
    """A row of `length` holding value (a number, or one value per row) as d (else value's type)."""
    v = node_of(value, d or (dt.float32 if isinstance(value, float) else dt.int32)) if is_python(value) else value
    if not isinstance(v, Node) or p.shape(v):
        raise ZMLXTypeError(f"mx.{name}(): the fill value must be a number or one value per row, "
                            f"got {describe(value)}")
    v = cast(v, d) if d is not None else v
    if p.mode != "row":
        return v  # an elementwise body: one element
    return apply("where", apply("ge", index(length), 0), v, v)  # (the row's positions carry its length)


def _shape_length(p: Rows, name: str, shape: Any) -> int:
    """The row length of a row body's `shape` argument: n, (n,) or x.shape."""
    dims = [shape] if isinstance(shape, int) and not isinstance(shape, bool) else shape
    if not isinstance(dims, (tuple, list)) or len(dims) != 1 or isinstance(dims[0], bool) \
            or not isinstance(dims[0], int) or dims[0] < 1:
        raise ZMLXShapeError(f"mx.{name}(): a row body's arrays are rows, so the shape is one length "
                             f"(n, (n,) or x.shape), got {shape!r}")
    return dims[0]


def _filled_lowering(name: str, value: Any, like: bool):
    params = ("a" if like else "shape",) + (("vals",) if value is None else ()) + ("dtype",)

    def lower(p: Rows, args: list, kwargs: dict) -> Node:
        a = bind(name, args, kwargs, params, {"dtype": None})
        d = None if a["dtype"] is None else MX_DTYPES[a["dtype"]]
        if like:
            x, length = p.row(a["a"], f"the shape of mx.{name}()") if p.mode == "row" else (a["a"], 1)
            d = d or node_of(x, dt.float32).dtype
        else:
            length = _shape_length(p, name, a["shape"]) if p.mode == "row" else 1
            d = d or (dt.float32 if value is not None else None)
        return _filled(p, name, length, a.get("vals", value), d)
    lower.__doc__ = f"mx.{name}({', '.join(params)}) in a row body: a row of its length filled with one value."
    return lower


for _name, _value, _like in (("zeros", 0, False), ("ones", 1, False), ("full", None, False),
                             ("zeros_like", 0, True), ("ones_like", 1, True), ("full_like", None, True)):
    lowering(_name, getattr(mx, _name))(_filled_lowering(_name, _value, _like))
