"""Constructing typed IR: constants, op application with MLX's type rules, casts."""
from __future__ import annotations

from typing import Any, Sequence

from . import dtypes as dt
from .node import Lambda, Node, use_apply
from .table import OPS


def const(value: Any, dtype: dt.DType) -> Node:
    """A constant of dtype holding the value MLX would: floats rounded to dtype (inf beyond its
    range), integers checked against it (ValueError with MLX's message, as MLX raises)."""
    if dtype == dt.bool_:
        value = bool(value)
    elif dtype.is_int:
        value = int(value)
        if not dtype.holds(value):
            raise ValueError(f"Converting {value} to {dtype.name} would result in overflow.")
    else:
        value = dt.round_float(value, dtype)
    return Node("const", (), dtype, value)


def cast(x: Node, dtype: dt.DType) -> Node:
    """x converted to dtype (no node when it already has it)."""
    return x if x.dtype == dtype else Node("cast", (x,), dtype)


NARROW = (dt.float16, dt.bfloat16)
"""The 16-bit float types, which kernels compute in compute_dtype (see passes.widen)."""

# ops whose result is one of their operands' values (or a small integer): of values exactly in a
# 16-bit type, a value exactly in it, in whatever type it is computed (the positions they read at
# or select by are not values)
_EXACT_OPS = {"neg": (0,), "abs": (0,), "stop_gradient": (0,), "maximum": (0, 1), "minimum": (0, 1),
              "where": (1, 2), "max": (0,), "min": (0,), "at": (0,), "cummax": (0,), "cummin": (0,),
              "floor": (0,), "ceil": (0,), "round": (0,), "sign": (0,)}


def holds_exactly(x: Node) -> bool:
    """Whether x's value is one of its dtype's values however wide the kernel computes it: an
    input, constant or parameter, a conversion, or a selection among such values. A 16-bit result
    of arithmetic is not: kernels compute it in compute_dtype (passes.widen)."""
    stack, seen = [x], set()
    while stack:
        n = stack.pop()
        if n in seen or n.op in ("input", "const", "param", "cast"):
            continue
        seen.add(n)
        where = _EXACT_OPS.get(n.op)
        if where is None:
            return False
        stack.extend(n.args[i] for i in where)
    return True


def rounding_cast(x: Node, dtype: dt.DType) -> Node:
    """An explicit conversion the body asks for (x.astype(dtype)): cast(x, dtype), except that a
    16-bit float x of its own 16-bit type that kernels compute wider (arithmetic on such values)
    gets a cast to that type anyway -- a rounding point, which passes.widen keeps (MLX's eager
    astype of a value it has rounded already is nothing; the kernel's value has to be rounded to
    be the same). Nothing where x already holds exactly a value of that type (a bf16 input)."""
    if x.dtype != dtype or dtype not in NARROW or holds_exactly(x):
        return cast(x, dtype)
    return Node("cast", (x,), dtype)


def apply(name: str, *args: Any) -> Node:
    """Apply a registry op; Python scalars among args are weak, arrays promote (MLX rules)."""
    op = OPS[name]
    nodes = [a for a in args if isinstance(a, Node)]
    if not nodes:
        raise TypeError(f"{name}: at least one argument must be an IR node")
    strong = nodes[0].dtype
    for n in nodes[1:]:
        strong = dt.promote(strong, n.dtype)
    weak = [a for a in args if not isinstance(a, Node)]
    common = strong
    for w in weak:
        common = dt.promote_weak(common, dt.weak_kind(w))
    typed = tuple(a if isinstance(a, Node) else const(a, common) for a in args)
    return make(op.name, typed)


def make(name: str, args: tuple[Node, ...]) -> Node:
    """Apply a registry op to typed nodes: operands are cast to the op's operand type."""
    op = OPS[name]
    operand, result = op.types(tuple(a.dtype for a in args))
    if operand is not None:
        args = tuple(a if i in op.keep_type_args else cast(a, operand) for i, a in enumerate(args))
    return Node(name, args, result)


def where(c: Node, a: Any, b: Any) -> Node:
    return apply("where", c, a, b)


def fold(init: Node, operands: Sequence[Node], update: Lambda) -> Node:
    """The registry's "fold": acc = init, then acc = update(acc, operands at i) for each i along
    the row, sequentially; one value per row, of init's dtype. `update` has one parameter for acc
    and one per operand, of their dtypes, and returns acc's dtype."""
    params = update.params
    if len(params) != 1 + len(operands) or params[0].dtype != init.dtype or update.body.dtype != init.dtype \
            or any(p.dtype != o.dtype for p, o in zip(params[1:], operands)):
        raise TypeError("fold: the update's parameters and result must match (acc, *operands)")
    return Node("fold", (init, *operands), init.dtype, update)


use_apply(apply)  # Node's operators (node.py) build through apply
