"""Scans, sorts and arg-extrema in row bodies, with MLX's signatures and results for one row:
mx.cumsum/cumprod/cummax/cummin/logcumsumexp (reverse=, inclusive=), mx.sort, mx.argsort,
mx.topk, mx.partition/argpartition, mx.argmax/argmin and the scatter back by a sort's order
(mx.put_along_axis). All lower to the IR's scan and argsort nodes (ir/scans.py)."""
from __future__ import annotations


import mlx.core as mx
import numpy as np

from ..errors import ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir import scans
from ..ir.build import apply, cast
from ..ir.node import Node
from ..ir.positions import gather, index
from .indexing import Rows, put
from .library import Row, _check_row_axis, bind, check_row_context, lowering, reduction
from .values import describe


def _operand(p: Rows, name: str, a: dict, what: str) -> tuple[Node, int]:
    """The checked row a["a"] of a scan or sort: a row kernel, outside data-dependent branches,
    along the row's own axis."""
    check_row_context(p, f"{name}()")
    _check_row_axis(name, a["axis"])
    x = a["a"]
    if not isinstance(x, Node):
        raise ZMLXTypeError(f"{name}() needs a row (an array value), not {describe(x)}")
    p.check_current([x])
    return p.row(x, what)


def _flag(name: str, a: dict, key: str) -> bool:
    if not isinstance(a[key], bool):
        raise ZMLXTypeError(f"{name}(): {key} must be True or False (a constant), got {describe(a[key])}")
    return a[key]


def _scan_lowering(kind: str):
    def lower(p: Rows, args: list, kwargs: dict) -> Node:
        a = bind(kind, args, kwargs, ("a", "axis"), {"axis": None, "reverse": False, "inclusive": True})
        x, length = _operand(p, kind, a, f"scanned by {kind}()")
        reverse, inclusive = _flag(kind, a, "reverse"), _flag(kind, a, "inclusive")
        if kind == "logcumsumexp" and not x.dtype.is_float:
            x = cast(x, dt.float32)  # as MLX: the integer and bool rows' logcumsumexp is float32
        if x.dtype != dt.bool_:
            return scans.scan(kind, x, length, reverse, inclusive)
        # MLX: a bool cumsum counts (int32); cumprod/cummax/cummin are the logical and/or, bool
        total = scans.scan(kind, cast(x, dt.int32), length, reverse, inclusive)
        return total if kind == "cumsum" else cast(total, dt.bool_)
    lower.__doc__ = f"mx.{kind}(a, axis=None, *, reverse=False, inclusive=True) along the row."
    return lower


for _kind in scans.SCANS:
    lowering(_kind, getattr(mx, _kind))(_scan_lowering(_kind))


def _order(p: Rows, name: str, args: list, kwargs: dict, params: tuple = ("a", "axis")) -> tuple[Node, int, dict]:
    """(the row, its length, the arguments) of a sort-like call; P = the row's ascending order."""
    a = bind(name, args, kwargs, params, {"axis": -1})
    x, length = _operand(p, name, a, f"sorted by {name}()")
    return x, length, a


def _kth(name: str, a: dict, key: str, length: int, lo: int) -> int:
    k = a[key]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ZMLXSyntaxError(f"{name}(): {key} must be a constant integer (the row's shape is static), "
                              f"got {describe(k)}")
    if not lo <= k < length + (key == "k"):
        hint = f"1 … {length}" if key == "k" else f"{-length} … {length - 1}"
        raise ZMLXShapeError(f"{name}(): {key}={k} is out of range for a row of length {length} ({hint}); "
                             "a kernel's row length is the input's last axis (or the decorator's axis=)")
    return int(k)


def _uint32(n: Node) -> Node:
    return cast(n, dt.uint32)  # MLX's positions are uint32; the IR computes them as int32


@lowering("argsort", mx.argsort, np.argsort)
def _argsort(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.argsort(a, axis=-1): the stable ascending order (ties by position, NaN last), uint32."""
    x, length, _ = _order(p, "argsort", args, kwargs)
    return _uint32(scans.argsort(x, length))


@lowering("sort", mx.sort, np.sort)
def _sort(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.sort(a, axis=-1): the row ascending, NaN last."""
    x, length, _ = _order(p, "sort", args, kwargs)
    return gather(x, scans.argsort(x, length), length)


@lowering("argpartition", mx.argpartition)
def _argpartition(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.argpartition(a, kth, axis=-1): the row's full order (one of the partitions MLX allows)."""
    x, length, a = _order(p, "argpartition", args, kwargs, ("a", "kth", "axis"))
    _kth("argpartition", a, "kth", length, -length)
    return _uint32(scans.argsort(x, length))


@lowering("partition", mx.partition)
def _partition(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.partition(a, kth, axis=-1): the sorted row (one of the partitions MLX allows)."""
    x, length, a = _order(p, "partition", args, kwargs, ("a", "kth", "axis"))
    _kth("partition", a, "kth", length, -length)
    return gather(x, scans.argsort(x, length), length)


@lowering("topk", mx.topk)
def _topk(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.topk(a, k, axis=-1): the k largest values, ascending (MLX leaves the order unspecified)."""
    x, length, a = _order(p, "topk", args, kwargs, ("a", "k", "axis"))
    k = _kth("topk", a, "k", length, 1)
    order = scans.argsort(x, length)
    top = gather(order, apply("add", index(k), length - k), length) if k < length else order
    return gather(x, top, length)


def _arg_extremum(row: Row, extremum: str) -> Node:
    """The first position of the row's extremum (of its first NaN, if any, as MLX), uint32, under
    stop_gradient: a position, computed from the row's values, that MLX (backend "mlx") must not
    differentiate when it indexes (`[gather] Cannot calculate VJP with respect to indices`)."""
    return apply("stop_gradient", _first_extremum(row, extremum))


def _first_extremum(row: Row, extremum: str) -> Node:
    if row.single:
        return cast(apply("mul", cast(row.x, dt.int32), 0), dt.uint32)
    x = cast(row.x, dt.int32) if row.x.dtype == dt.bool_ else row.x
    n = row.n.arg
    m = apply(extremum, x)
    hit = apply("eq", x, m)
    if x.dtype.is_float:
        hit = apply("where", apply("isnan", m), apply("isnan", x), hit)
    return _uint32(apply("min", apply("where", hit, index(n), n)))


@reduction("argmax", mx.argmax, np.argmax, method=True)
def _argmax(row: Row) -> Node:
    """mx.argmax(a, axis=None, keepdims=False): the first position of the row's maximum, uint32."""
    return _arg_extremum(row, "max")


@reduction("argmin", mx.argmin, np.argmin, method=True)
def _argmin(row: Row) -> Node:
    """mx.argmin(a, axis=None, keepdims=False): the first position of the row's minimum, uint32."""
    return _arg_extremum(row, "min")


@lowering("put_along_axis", mx.put_along_axis, np.put_along_axis)
def _put_along_axis(p: Rows, args: list, kwargs: dict) -> Node:
    """mx.put_along_axis(a, indices, values, axis): the row a with values written at indices."""
    a = bind("put_along_axis", args, kwargs, ("a", "indices", "values", "axis"), {})
    _check_row_axis("put_along_axis", a["axis"])
    y, length = p.row(a["a"], "written into by put_along_axis()")
    return put(p, y, length, a["indices"], a["values"])

