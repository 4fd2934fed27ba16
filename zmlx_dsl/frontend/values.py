"""The values a kernel body computes with while parsed, and their MLX typing: weak scalars, folding, promotion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ZMLXTypeError, ZMLXValueError
from ..ir import dtypes as dt
from ..ir.build import apply, cast, const
from ..ir.node import Node
from ..ir.registry import OPS

MX_DTYPES = {d.mx: d for d in dt.ALL}
MISSING = object()  # what a lookup finds for a name that is not there
_PYOPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
          "power": lambda a, b: a ** b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
          "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
          "ge": lambda a, b: a >= b}


@dataclass(frozen=True)
class Weak:
    """A runtime Python scalar (or a value computed only from such): typed weakly, as MLX does."""

    node: Node


@dataclass(frozen=True)
class Undefined:
    """A variable assigned on only one side of an `if`: an error if it is read afterwards."""

    name: str
    where: str


def is_python(v: Any) -> bool:
    """Whether v is a Python number (a compile-time constant)."""
    return isinstance(v, (bool, int, float)) and not isinstance(v, Node)


def is_value(v: Any) -> bool:
    """Whether v is a number or an array (not a tuple, module, function or dtype)."""
    return is_python(v) or isinstance(v, (Node, Weak))


def dtype_of(v: Any) -> dt.DType:
    """The dtype of an array or Weak value."""
    return v.node.dtype if isinstance(v, Weak) else v.dtype


def unwrap(v: Any) -> Node:
    """The IR node of an array or Weak value."""
    return v.node if isinstance(v, Weak) else v


def _weak_dtype(v: Any) -> dt.DType:
    """The kind a weak value promotes as: a Weak node's own dtype, else the Python scalar's."""
    return v.node.dtype if isinstance(v, Weak) else dt.weak_kind(v)


def node_of(v: Any, d: dt.DType) -> Node:
    """v as a node: a Weak one cast to d, a Python number a constant of d, an array itself."""
    if isinstance(v, Weak):
        return cast(v.node, d)
    if isinstance(v, Node):
        return v
    return const(v, d)


def strong(v: Any) -> Any:
    """v as an array value: a Python number becomes a constant of its own kind, a weak runtime
    scalar its node (MLX's functions return arrays, which promote strongly)."""
    if isinstance(v, tuple):
        return tuple(strong(x) for x in v)
    if isinstance(v, Weak):
        return v.node
    return const(v, dt.weak_kind(v)) if is_python(v) else v


def _fits(v: Any, d: dt.DType) -> bool:
    """Whether Python number v converts to dtype d without overflow."""
    return not (d.is_int and isinstance(v, int)) or d.holds(v)


def describe(v: Any) -> str:
    """A short name for a non-value in an error message."""
    if isinstance(v, tuple):
        return "a tuple"
    if isinstance(v, Node):
        return "an array"
    if isinstance(v, Weak):
        return "a scalar argument (a value known only when the kernel is called)"
    return getattr(v, "__name__", type(v).__name__)


def apply_op(name: str, args: list) -> Any:
    """Apply a registry op to frontend values, with MLX's weak-scalar typing: Python numbers fold,
    runtime scalars alone stay weak, weak operands take the arrays' type."""
    if all(type(a) is Node for a in args):  # arrays only: apply() promotes them (MLX rules)
        return _apply(name, args)
    for a in args:
        if not is_value(a):
            raise ZMLXTypeError(f"{name}(): {describe(a)} is not a number or array")
    if all(is_python(a) for a in args):
        return fold(name, args)
    strong_args = [a for a in args if isinstance(a, Node)]
    if not strong_args:  # runtime scalars only: computed in their own kinds, the result stays weak
        return Weak(_apply(name, [unwrap(a) for a in args]))
    common = strong_args[0].dtype
    for s_ in strong_args[1:]:
        common = dt.promote(common, s_.dtype)
    for w in args:
        if not isinstance(w, Node):
            common = dt.promote_weak(common, _weak_dtype(w))
    try:
        nodes = [a if isinstance(a, Node) else node_of(a, common) for a in args]
    except ValueError:
        value = next(a for a in args if is_python(a) and not _fits(a, common))
        raise ZMLXValueError(
            f"the constant {value} does not fit {common.name}, the type it takes beside an "
            f"array of {common.name} (MLX raises 'Converting {value} to {common.name} would result in "
            "overflow'); write it as a float, or cast the array (e.g. .astype(mx.int64))") from None
    return _apply(name, nodes)


def _apply(name: str, nodes: list) -> Node:
    """apply() with its type errors as the kernel's."""
    try:
        return apply(name, *nodes)
    except (TypeError, ValueError) as err:
        raise ZMLXTypeError(f"{name}: {err}") from None


def fold(name: str, args: list) -> Any:
    """Python constants combine in Python, as they would in the body run eagerly."""
    try:
        if name in _PYOPS:
            return _PYOPS[name](*args)
        if name in ("logical_and", "logical_or"):
            return (args[0] and args[1]) if name == "logical_and" else (args[0] or args[1])
        if name == "logical_not":
            return not args[0]
        if name in ("maximum", "minimum"):
            return max(args) if name == "maximum" else min(args)
        if name == "neg":
            return -args[0]
        value = OPS[name].np(*[np.float64(a) for a in args])
        return value.item() if hasattr(value, "item") else value
    except ZeroDivisionError:
        raise ZMLXTypeError("division by zero in constant expression") from None
