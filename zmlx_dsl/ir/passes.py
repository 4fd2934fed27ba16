"""IR passes: CSE (hash-consing), constant folding, IEEE-safe simplification, compute-dtype widening."""
from __future__ import annotations

from typing import Callable, Sequence

from . import dtypes as dt
from .build import cast, const, holds_exactly, make
from .interpret import interpret
from .node import LEAF_OPS, Node, toposort
from .rows import per_row
from .table import OPS


def rewrite(roots: Sequence[Node], fn: Callable[[Node], Node]) -> list[Node]:
    """Rebuild roots bottom-up, applying fn to each node whose arguments are already rewritten.

    Structurally equal nodes become one object, so this is CSE as well."""
    memo: dict[Node, Node] = {}   # old node -> rewritten node
    canon: dict[Node, Node] = {}  # rewritten node -> its one shared instance
    for n in toposort(roots):
        if n in memo:
            continue
        if n.op in LEAF_OPS:
            new = n
        else:
            args = tuple(memo[a] for a in n.args)
            new = n if all(a is b for a, b in zip(args, n.args)) else Node(n.op, args, n.dtype, n.arg)
        new = fn(new)
        memo[n] = canon.setdefault(new, new)
    return [memo[r] for r in roots]


def _is_const(n: Node, value=None) -> bool:
    return n.op == "const" and (value is None or (n.arg == value and not isinstance(n.arg, bool)))


def _fold(n: Node) -> Node:
    """Evaluate ops whose arguments are all constants (rounded to the node's dtype)."""
    if n.op in LEAF_OPS or n.op == "rowsize" or not n.args or not all(a.op == "const" for a in n.args):
        return n
    if n.op != "cast" and OPS[n.op].reduction:
        return n
    value = interpret([n], {}, mode="faithful")[0]
    return const(value.item(), n.dtype)


def _simplify(n: Node) -> Node:
    """Rewrites that are exact in IEEE arithmetic (no x*0 -> 0, no x+0 -> x)."""
    a = n.args
    if n.op == "mul":
        if _is_const(a[1], 1):
            return a[0] if a[0].dtype == n.dtype else n
        if _is_const(a[0], 1):
            return a[1] if a[1].dtype == n.dtype else n
        if _is_const(a[1], -1) and n.dtype.is_float:
            return Node("neg", (a[0],), n.dtype)
        if _is_const(a[0], -1) and n.dtype.is_float:
            return Node("neg", (a[1],), n.dtype)
    if n.op in ("div",) and _is_const(a[1], 1) and a[0].dtype == n.dtype:
        return a[0]
    if n.op == "sub" and _is_const(a[1], 0) and a[0].dtype == n.dtype:
        return a[0]
    if n.op in ("add", "sub") and n.dtype.is_int and _is_const(a[1]):
        inner = a[0]
        c = a[1].arg if n.op == "add" else -a[1].arg
        if inner.op in ("add", "sub") and _is_const(inner.args[1]) and inner.dtype == n.dtype:
            # integer constants combine (exact: two's-complement addition is associative)
            c += inner.args[1].arg if inner.op == "add" else -inner.args[1].arg
            inner = inner.args[0]
            if not n.dtype.holds(c):
                return n
            return inner if c == 0 else make("add" if c > 0 else "sub", (inner, const(abs(c), n.dtype)))
        if c == 0:
            return inner
    if n.op == "add" and a[1].op == "neg":
        return make("sub", (a[0], a[1].args[0]))
    if n.op == "sub" and a[1].op == "neg":
        return make("add", (a[0], a[1].args[0]))
    if n.op == "neg" and a[0].op == "neg":
        return a[0].args[0]
    if n.op == "mul" and a[0].op == "neg" and a[1].op == "neg":
        return make("mul", (a[0].args[0], a[1].args[0]))
    if n.op == "cast" and a[0].dtype == n.dtype and holds_exactly(a[0]):
        return a[0]  # a rounding cast (build.rounding_cast) of a value already of its type
    if n.op == "cast" and a[0].op == "cast" and a[0].args[0].dtype != a[0].dtype \
            and _widens(a[0].args[0].dtype, a[0].dtype):
        inner = a[0].args[0]
        return inner if inner.dtype == n.dtype else n
    if n.op == "where" and a[0].op == "const":
        return a[1] if a[0].arg else a[2]
    if n.op == "where" and a[1] is a[2] and _inputs(a[0]) <= _inputs(a[1]) and (_uniform(a[0]) or not _uniform(a[1])):
        return a[1]  # only when dropping the condition drops no input (its shape broadcasts) and no
        # row length (a per-row value filled into a row: mx.full((n,), v), v[None])
    if n.op in ("sum", "max", "min") and _uniform(a[0]):
        # a row reduction reads its operand broadcast over the row: a value already one per row
        # sums to D times itself and is its own max and min. Spelled out here so that every
        # backend computes that (the portable one would reduce a size-1 axis). Bodies never get
        # here: the frontend reduces a 0-d value to itself, as MLX does.
        v = a[0] if a[0].dtype == n.dtype else cast(a[0], n.dtype)
        return make("mul", (v, cast(Node("rowsize", (), dt.int32), n.dtype))) if n.op == "sum" else v
    return n


def _uniform(n: Node) -> bool:
    """Whether n is one value per row: no array input reaches it except through a reduction."""
    return per_row([n])[n]


def _inputs(n: Node) -> set:
    """The array inputs a node reads (they decide its broadcast shape)."""
    return {m for m in toposort([n]) if m.op == "input"}


def _widens(src: dt.DType, dst: dt.DType) -> bool:
    """Every value of src is exactly representable in dst."""
    if src == dst or src == dt.bool_:
        return True
    if dst == dt.float32:
        return src in (dt.float16, dt.bfloat16) or (src.is_int and src.bits <= 16)
    if dst.is_int and src.is_int:
        return dst.bits > src.bits or (dst.kind == src.kind and dst.bits >= src.bits)
    return False


def optimize(roots: Sequence[Node]) -> list[Node]:
    """Constant folding + simplification + CSE, to a fixed point.

    One bottom-up pass applies the rules to each node until none fires (its arguments are
    already final); a rule that built new inner nodes (make() inserting casts) asks for another
    pass over the result."""
    for _ in range(8):
        fresh = []

        def step(n: Node) -> Node:
            while True:
                new = _simplify(_fold(n))
                if new is n:
                    return n
                if any(a not in seen for a in new.args) and new not in seen:
                    fresh.append(new)
                n = new
        seen: set = set()

        def visit(n: Node) -> Node:
            out = step(n)
            seen.add(out)
            return out
        roots = rewrite(roots, visit)
        if not fresh:
            break
    return list(roots)


def widen(roots: Sequence[Node], compute: dt.DType) -> list[Node]:
    """Compute float16/bfloat16 arithmetic in `compute` (inputs cast up, outputs cast back down).

    Explicit casts to a narrow type in the body still round (cast down, then up again)."""
    narrow = (dt.float16, dt.bfloat16)
    if compute in narrow:  # every op rounds to its type: a rounding cast (to its own type) is nothing
        if not any(n.op == "cast" and n.args[0].dtype == n.dtype for n in toposort(roots)):
            return list(roots)
        return rewrite(roots, lambda n: n.args[0] if n.op == "cast" and n.args[0].dtype == n.dtype else n)

    def up(n: Node) -> Node:
        if n.op == "cast":
            src = n.args[0]
            if n.dtype in narrow:  # an explicit rounding the body asked for: keep it, compute wide
                # (a cast to the value's own type, build.rounding_cast, rounds the wide value)
                return cast(cast(src, n.dtype), compute)
            return cast(src, n.dtype) if src.dtype != n.dtype else src
        if n.dtype not in narrow:
            return n
        if n.op in ("input", "param"):
            return cast(n, compute)
        if n.op == "const":
            return const(n.arg, compute)
        return Node(n.op, n.args, compute, n.arg)

    if not any(n.dtype in narrow for n in toposort(roots)):
        return list(roots)
    widened = rewrite(roots, up)
    return [cast(w, r.dtype) for w, r in zip(widened, roots)]


def reciprocal_divisors(roots: Sequence[Node]) -> list[Node]:
    """`x / r` with r one value per row and x not: `x * reciprocal(r)`, one division per row instead
    of one per element (the fast_math rows' normalisers: softmax's `e / sum`). Exact for zero,
    infinite and NaN divisors alike; a subnormal r's reciprocal overflows where x / r may not, and
    the product rounds twice (<= 1 float32 ulp more), which fast_math allows."""
    rows: dict = {}

    def fn(n: Node) -> Node:
        if n.op == "div" and n.dtype.is_float:
            per_row(n.args, rows)
            if rows[n.args[1]] and not rows[n.args[0]]:
                return make("mul", (n.args[0], make("reciprocal", (n.args[1],))))
        return n
    return rewrite(roots, fn)
