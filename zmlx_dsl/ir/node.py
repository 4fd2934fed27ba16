"""IR nodes: immutable, typed, structurally hashed (so CSE and cache keys are dictionary lookups)."""
from __future__ import annotations

from typing import Any, Container, Iterable, Iterator, Protocol

from .dtypes import DType

# Ops that are not in the registry: leaves and structural nodes. "bound" leaves are the
# parameters of a `Lambda` (a sub-graph carried in a node's `arg`, see the registry's "fold");
# they never occur in a program's own graph.
LEAF_OPS = ("const", "input", "param", "rowsize", "bound", "index")


class Node:
    """One IR value: `op` names a registry entry or a leaf; `arg` holds leaf data or a cast target.

    Leaves: const (arg=value), input (arg=name; an array argument), param (arg=name; a Python
    scalar passed at call time), rowsize (the row length of a row kernel), bound (arg=name; a
    parameter of a `Lambda`), index (arg=n; int32 position 0 … n-1 along a row of length n, as
    `mx.arange(n)` in a row body). An op may carry a `Lambda` in `arg` (the registry's "fold").
    """

    __slots__ = ("op", "args", "dtype", "arg", "_hash")

    def __init__(self, op: str, args: tuple["Node", ...], dtype: DType, arg: Any = None) -> None:
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "arg", arg)
        object.__setattr__(self, "_hash", hash((op, self.args, dtype, _hashable(arg))))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IR nodes are immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Node) or self._hash != other._hash:
            return False
        return (self.op == other.op and self.dtype == other.dtype and _same(self.arg, other.arg)
                and self.args == other.args)

    def __repr__(self) -> str:
        if self.op == "const":
            return f"{self.arg!r}:{self.dtype}"
        if self.op in LEAF_OPS:
            return f"{self.op}({self.arg}):{self.dtype}"
        return f"{self.op}({', '.join(map(repr, self.args))}):{self.dtype}"

    # arithmetic sugar for derivative rules and passes (types follow the registry, see use_apply)
    def __add__(self, o): return _apply("add", self, o)
    def __radd__(self, o): return _apply("add", o, self)
    def __sub__(self, o): return _apply("sub", self, o)
    def __rsub__(self, o): return _apply("sub", o, self)
    def __mul__(self, o): return _apply("mul", self, o)
    def __rmul__(self, o): return _apply("mul", o, self)
    def __truediv__(self, o): return _apply("div", self, o)
    def __rtruediv__(self, o): return _apply("div", o, self)
    def __neg__(self): return _apply("neg", self)


class Lambda:
    """A sub-graph with parameters, carried in a node's `arg` (immutable and structurally hashed,
    so the node stays hashable and CSE still works): `body` is IR over the `params`, which are
    "bound" leaves. Graph walks (toposort, rewrite, passes) do not enter it: to them the node is
    an ordinary op of its `args`; the op's implementations evaluate the body themselves."""

    __slots__ = ("params", "body", "_hash")

    def __init__(self, params: tuple[Node, ...], body: Node) -> None:
        if any(p.op != "bound" for p in params):
            raise ValueError("Lambda parameters must be 'bound' leaves")
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "_hash", hash(("lambda", self.params, body)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("IR nodes are immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lambda) and self._hash == other._hash and \
            self.params == other.params and self.body == other.body

    def __repr__(self) -> str:
        return f"lambda {', '.join(str(p.arg) for p in self.params)}: {self.body!r}"


def _hashable(arg: Any) -> Any:
    # float('nan') != itself; hash consts by their repr so NaN constants still CSE
    return repr(arg) if isinstance(arg, float) else arg


def _same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b) if isinstance(a, float) or isinstance(b, float) else a == b


class Apply(Protocol):
    """Applies a registry op by name to nodes and Python scalars, typed as MLX types them."""

    def __call__(self, name: str, *args: Any) -> Node: ...


_apply: Apply  # what Node's operators call (set by use_apply)


def use_apply(apply: Apply) -> None:
    """Give Node's operators their op constructor: ir/build.py's `apply`, handed over when build
    is imported (build constructs Nodes, so this module cannot import it)."""
    global _apply
    _apply = apply


def toposort(roots: Iterable[Node], stop: Container = ()) -> list[Node]:
    """Every node reachable from roots, each after its arguments (iterative, so deep IR is fine).
    Nodes in `stop` are listed but not entered (their arguments are already computed)."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        stack: list[tuple[Node, Iterator[Node]]] = [(root, iter(() if root in stop else root.args))]
        if id(root) in seen:
            continue
        seen.add(id(root))
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif id(child) not in seen:
                seen.add(id(child))
                stack.append((child, iter(() if child in stop else child.args)))
    return order


def leaves(roots: Iterable[Node], op: str) -> list[Node]:
    """Distinct leaves of one kind (e.g. "input"), in first-use order."""
    out: dict[Node, None] = {}
    for n in toposort(roots):
        if n.op == op:
            out.setdefault(n, None)
    return list(out)
