"""Reading rows at other positions: the `at` (gather) and `scatter` nodes, and the adjoint of a
gather. A slice, flip, roll, concatenation or take is `at(e, pos)`: e's value at position pos of
its row, 0 where pos is outside it (never a read outside a buffer). The adjoint of a gather is a
scatter-add; where pos is a per-row value (a label) or an affine map of the position (every slice
and re-assembly), it is itself a gather, so the backward stays a row kernel of the same form."""
from __future__ import annotations

from typing import Optional

from . import dtypes as dt
from .build import apply, const, where
from .node import Node


def index(n: int) -> Node:
    """The positions 0 … n-1 of a row of length n (`mx.arange(n)`)."""
    return Node("index", (), dt.int32, n)


def gather(e: Node, pos: Node, length: int) -> Node:
    """e (a row of `length`) at positions pos (int32): 0 where pos is outside 0 … length-1."""
    return Node("at", (e, pos), e.dtype, length)


def scatter(g: Node, pos: Node, length: int) -> Node:
    """A row of `length`: at q, the sum of g over the positions i with pos[i] == q."""
    return Node("scatter", (g, pos), g.dtype, length)


def affine(pos: Node) -> Optional[tuple[Node, int, int, int]]:
    """(index leaf, s, a, d) when pos is (s * i + a) // d of one index leaf i (d > 0), else None."""
    d = 1
    if pos.op == "floordiv" and _int_const(pos.args[1]) is not None and _int_const(pos.args[1]) > 0:
        d, pos = _int_const(pos.args[1]), pos.args[0]
    s, a = 1, 0
    while pos.op != "index":
        x, y = (pos.args + (None, None))[:2]
        if pos.op == "neg":
            s, pos = -s, x
        elif pos.op in ("add", "sub", "mul") and (_int_const(x) is not None or _int_const(y) is not None):
            c, rest, left = (_int_const(y), x, False) if _int_const(y) is not None else (_int_const(x), y, True)
            if pos.op == "add":
                a += s * c
            elif pos.op == "sub":
                a, s = (a + s * c, -s) if left else (a - s * c, s)
            else:
                s, a = s * c, a
                if c == 0:
                    return None
            pos = rest
        else:
            return None
    return pos, s, a, d


def _int_const(n: Optional[Node]) -> Optional[int]:
    return n.arg if n is not None and n.op == "const" and n.dtype.is_int else None


def at_adjoint(e: Node, pos: Node, g: Node, length: int, pos_per_row: bool) -> Node:
    """The adjoint of gather(e, pos, length) for its cotangent g (a row of pos's length)."""
    if length == 1 and pos.op == "const" and pos.arg == 0:  # a row of one read at its one position
        return g
    q = index(length)
    if pos_per_row:  # one position per row: one-hot there
        return where(apply("eq", q, pos), g, 0.0)
    form = affine(pos)
    if form is not None:
        i, s, a, d = form
        t = apply("sub", q, const(a, dt.int32)) if a else q
        if d == 1 and s == 1:
            return gather(g, t, i.arg)
        if d == 1 and s == -1:
            return gather(g, apply("neg", t), i.arg)
        if d == 1:
            return where(apply("eq", apply("mod", t, const(s, dt.int32)), const(0, dt.int32)),
                         gather(g, apply("floordiv", t, const(s, dt.int32)), i.arg), 0.0)
        if s == 1:  # positions i with (i + a) // d == q: d*q - a … d*q - a + d - 1
            base = apply("sub", apply("mul", q, const(d, dt.int32)), const(a, dt.int32))
            total = gather(g, base, i.arg)
            for r in range(1, d):
                total = apply("add", total, gather(g, apply("add", base, const(r, dt.int32)), i.arg))
            return total
    inv = inverse(pos, length)
    return gather(g, *inv) if inv else scatter(g, pos, length)


def _exact_int(n: Node) -> Node:
    """n without the stop_gradients and integer casts around it (exact: a sort's positions fit every
    integer type that holds them)."""
    while n.op == "stop_gradient" or n.op == "cast" and n.dtype.is_int and n.args[0].dtype.is_int:
        n = n.args[0]
    return n


def inverse(pos: Node, length: int) -> Optional[tuple[Node, int]]:
    """(j, n) when pos, a row of n, holds distinct positions of a row of `length`: an argsort P of
    that row, or P read at s * i + o inside it (a slice of a sort's order, any step s). Position q
    was then written by element j[q] of pos, or by none where j[q] is outside 0 … n-1: scatter(g,
    pos) is gather(g, j, n). P's inverse permutation R = argsort(P): j = (R - o) / s where that
    divides exactly, else -1."""
    pos = _exact_int(pos)
    if pos.op == "argsort" and pos.arg == length:
        return Node("argsort", (pos,), dt.int32, length), length
    if pos.op != "at":
        return None
    order = _exact_int(pos.args[0])
    if order.op != "argsort" or order.arg != length:
        return None
    form, bounds = affine(pos.args[1]), value_range(pos.args[1])
    if form is None or form[3] != 1 or form[1] == 0 or bounds is None or bounds[0] < 0 or bounds[1] >= length:
        return None
    i, s, o, _ = form
    rank = Node("argsort", (order,), dt.int32, length)
    if s > 0:
        d = apply("sub", rank, const(o, dt.int32)) if o else rank
    else:
        d = apply("sub", const(o, dt.int32), rank)
    if abs(s) == 1:
        return d, i.arg
    step = const(abs(s), dt.int32)
    return where(apply("eq", apply("mod", d, step), const(0, dt.int32)), apply("floordiv", d, step),
                 const(-1, dt.int32)), i.arg


def value_range(n: Node) -> Optional[tuple[int, int]]:
    """(lo, hi) bounding an integer position expression built from index leaves and constants
    (None when unknown): the C renderer omits the bound check of a read it proves inside the row."""
    if n.op == "const" and n.dtype.is_int:
        return n.arg, n.arg
    if n.op in ("index", "argsort"):
        return 0, n.arg - 1
    if n.op == "stop_gradient" or n.op == "cast" and n.dtype.is_int and n.args[0].dtype.is_int:
        return value_range(n.args[0])
    if n.op == "at":  # e's values, or 0 outside e's row
        inner = value_range(n.args[0])
        return None if inner is None else (min(inner[0], 0), max(inner[1], 0))
    ranges = [value_range(a) for a in n.args]
    if n.op == "where":
        return None if None in ranges[1:] else (min(ranges[1][0], ranges[2][0]), max(ranges[1][1], ranges[2][1]))
    if None in ranges:
        return None
    if n.op == "neg":
        return -ranges[0][1], -ranges[0][0]
    if n.op in ("add", "sub", "mul"):
        (a, b), (c, d) = ranges
        if n.op == "add":
            return a + c, b + d
        if n.op == "sub":
            return a - d, b - c
        corners = [a * c, a * d, b * c, b * d]
        return min(corners), max(corners)
    divisor = _int_const(n.args[1]) if len(n.args) == 2 else None
    if n.op == "floordiv" and divisor and divisor > 0:
        return ranges[0][0] // divisor, ranges[0][1] // divisor
    if n.op == "mod" and divisor and divisor > 0:
        return 0, divisor - 1
    return None


_COMPARISONS = {"lt": lambda a, b: (a[1] < b[0], a[0] >= b[1]), "le": lambda a, b: (a[1] <= b[0], a[0] > b[1]),
                "gt": lambda a, b: (a[0] > b[1], a[1] <= b[0]), "ge": lambda a, b: (a[0] >= b[1], a[1] < b[0])}


def decided(n: Node) -> Optional[bool]:
    """The value of a comparison of position expressions that their ranges decide, else None."""
    rule = _COMPARISONS.get(n.op)
    if rule is None or not all(a.dtype.is_int for a in n.args):
        return None
    ranges = [value_range(a) for a in n.args]
    if None in ranges:
        return None
    true, false = rule(*ranges)
    return True if true else False if false else None


def cuts(n: Node, length: int) -> Optional[int]:
    """Where a comparison of the position along a row of `length` with a constant changes value
    (the boundary of a concatenation's part, a roll's or a pad's), else None."""
    if n.op not in _COMPARISONS or len(n.args) != 2:
        return None
    a, b = n.args
    op = n.op
    if b.op == "index" and a.op == "const":  # k < i is i > k
        a, b, op = b, a, {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}[op]
    if a.op != "index" or a.arg != length or _int_const(b) is None:
        return None
    k = b.arg + (op in ("le", "gt"))
    return k if 0 < k < length else None
