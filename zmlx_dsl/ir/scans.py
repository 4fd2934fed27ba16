"""Scans and sorts along a row: the cumulative ops (as MLX's, `reverse` and `inclusive` included) and
the stable ascending order of a row (argsort, NaN last as MLX), with their derivative rules as IR.

A scan node is Node(kind, (x,), x.dtype, (length, reverse, inclusive)); an argsort node is
Node("argsort", (x,), int32, length). Their value at a position depends on the whole row, so the C
renderer computes each in a pass of its own into threadgroup memory (backend/c_scans.py)."""
from __future__ import annotations

import math
from typing import Optional

import mlx.core as mx

from . import dtypes as dt
from .build import apply, const, where
from .node import Node
from .positions import gather, index, scatter

SCANS = ("cumsum", "cumprod", "cummax", "cummin", "logcumsumexp")


def scan(kind: str, x: Node, length: int, reverse: bool = False, inclusive: bool = True) -> Node:
    """The scan `kind` of x (a row of `length`), as mx.<kind>(x, reverse=, inclusive=)."""
    return Node(kind, (x,), x.dtype, (length, bool(reverse), bool(inclusive)))


def argsort(x: Node, length: int) -> Node:
    """The positions that sort x (a row of `length`) ascending, ties in row order, NaN last."""
    return Node("argsort", (x,), dt.int32, length)


def identity(kind: str, d: dt.DType) -> float:
    """What an exclusive scan starts from (MLX's): 0, 1, the type's lowest/highest, or -inf."""
    if kind == "cumsum":
        return 0
    if kind == "cumprod":
        return 1
    if kind in ("cummax", "cummin"):
        if d.is_int:
            lo, hi = d.limits
            return lo if kind == "cummax" else hi
        return -math.inf if kind == "cummax" else math.inf
    return -math.inf


# ---- derivative rules (args, y, g) ------------------------------------------------------------

def _flags(y: Node) -> tuple[int, bool, bool]:
    return y.arg


def cumsum_grad(a, y, g):
    L, r, inc = _flags(y)
    return (scan("cumsum", g, L, not r, inc),)


def _first_zero(x: Node, y: Node) -> tuple[Node, Node]:
    """(is the scan's first zero, the product is zero there) for cumprod y of x (MLX's masks)."""
    L, r, inc = _flags(y)
    other = scan("cumprod", x, L, r, not inc)
    incl, excl = (y, other) if inc else (other, y)
    zero = const(0, x.dtype)
    eq_zero = apply("eq", incl, zero)
    return apply("logical_and", eq_zero, apply("ne", excl, zero)), eq_zero


def cumprod_grad(a, y, g):
    """MLX's rule: exact at zeros (the first zero's gradient from the product with it set to 1,
    zero after it), no division by a prefix that is zero."""
    x, (L, r, inc) = a[0], _flags(y)
    first, eq_zero = _first_zero(x, y)
    with_one = scan("cumprod", where(first, 1, x), L, r, inc)
    grad_with_one = scan("cumsum", with_one * g, L, not r, inc)
    grad = scan("cumsum", y * g, L, not r, inc) / x
    return (where(first, grad_with_one, where(eq_zero, 0.0, grad)),)


def cumprod_jvp(a, y, t):
    """Forward mode: y * cumsum(t / x) where the prefix holds no zero; where it does, the
    tangent of its first zero times the product of the rest."""
    x, (L, r, inc) = a[0], _flags(y)
    first, _ = _first_zero(x, y)
    with_one = scan("cumprod", where(first, 1, x), L, r, inc)
    t_first = apply("sum", where(first, t, 0.0))
    ratio = where(apply("eq", x, const(0, x.dtype)), 0.0, t / x)
    return where(apply("ne", y, const(0, y.dtype)), y * scan("cumsum", ratio, L, r, inc), t_first * with_one)


def _owner(x: Node, y: Node) -> Node:
    """For cummax/cummin y of x: the position holding the inclusive running extremum at each
    position, ties to the latest in scan order (as MLX's VJP routes them)."""
    L, r, inc = _flags(y)
    incl = y if inc else scan(y.op, x, L, r, True)
    masked = where(apply("eq", x, incl), index(L), L if r else -1)
    return scan("cummin" if r else "cummax", masked, L, r, True)


def extremum_grad(a, y, g):
    L, r, inc = _flags(y)
    if not inc:  # the exclusive value at i is the inclusive one of the position before (in scan order)
        g = gather(g, apply("sub" if r else "add", index(L), const(1, dt.int32)), L)
    return (scatter(g, _owner(a[0], y), L),)


def extremum_jvp(a, y, t):
    L, r, inc = _flags(y)
    out = gather(t, _owner(a[0], y), L)
    return out if inc else gather(out, apply("add" if r else "sub", index(L), const(1, dt.int32)), L)


def logcumsumexp_grad(a, y, g):
    """MLX's rule: the cotangent split by sign so each part is a logcumsumexp."""
    x, (L, r, inc) = a[0], _flags(y)
    lowest = const(float(mx.finfo(g.dtype.mx).min), g.dtype)
    log_abs = apply("log", apply("abs", g))
    pos = where(apply("gt", g, 0.0), log_abs, lowest)
    neg = where(apply("lt", g, 0.0), log_abs, lowest)
    part = lambda s: apply("exp", scan("logcumsumexp", s - y, L, not r, inc) + x)  # noqa: E731
    return (part(pos) - part(neg),)


def logcumsumexp_jvp(a, y, t):
    x, (L, r, inc) = a[0], _flags(y)
    log_abs = apply("log", apply("abs", t)) + x
    part = lambda s: apply("exp", scan("logcumsumexp", s, L, r, inc) - y)  # noqa: E731
    out = part(where(apply("gt", t, 0.0), log_abs, -math.inf)) - part(where(apply("lt", t, 0.0), log_abs, -math.inf))
    return where(apply("isinf", y), 0.0, out)  # an empty exclusive prefix (-inf) has no tangent


def no_derivative(a, y, g):
    return (None,)


def no_tangent(a, y, t):
    return None
