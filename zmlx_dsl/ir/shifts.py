"""Per-row shifts a row body's outputs do not depend on: softmax's and logsumexp's max.

`exp(x - m) / sum(exp(x - m))` and `m + log(sum(exp(x - m)))` are the same for every per-row m, so
their derivative through m is zero in exact arithmetic. Differentiated as written (as MLX's VJP of
the body does), m's adjoint is a sum over the row that cancels to rounding noise, routed to the
argmax by a count of ties: two reductions more in every softmax backward. The derivative programs
are built with such an m behind stop_gradient instead, then m is put back (its value is the same),
so the saved forward outputs still match.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from .node import Node, toposort
from .passes import rewrite

_SHIFT_OPS = ("max", "min")  # the reductions a body shifts a row by


def invariant_shifts(outputs: Sequence[Node]) -> tuple[list[Node], dict[Node, Node]]:
    """The outputs with each max/min reduction m they do not depend on behind stop_gradient, and
    the map from those stop_gradient nodes back to m (for the derivative programs, see module)."""
    order = toposort(outputs)
    sg = {n.args[0] for n in order if n.op == "stop_gradient"}  # a user's own: left as written
    shifts = [m for m in order if m.op in _SHIFT_OPS and m.dtype.is_float and m not in sg
              and all(_dependence(outputs, m).get(o, FREE) == FREE for o in outputs)]
    if not shifts:
        return list(outputs), {}
    stops = {m: Node("stop_gradient", (m,), m.dtype) for m in shifts}
    return rewrite(outputs, lambda n: stops.get(n, n)), {s: m for m, s in stops.items()}


def derived_without_shifts(outputs: Sequence[Node], derive: Callable[[list[Node]], list]) -> list:
    """derive(outputs) (a VJP or JVP: nodes or None) built with the invariant shifts behind
    stop_gradient, with the shifts themselves again in the result (the same values)."""
    stopped, shifted = invariant_shifts(outputs)
    nodes = derive(stopped)
    if not shifted:
        return nodes
    present = [n for n in nodes if n is not None]
    it = iter(rewrite(present, lambda n: shifted.get(n, n)))
    return [None if n is None else next(it) for n in nodes]


FREE = ("free", 0)


def _dependence(outputs: Sequence[Node], m: Node) -> dict[Node, Optional[tuple[str, float]]]:
    """How each node depends on the per-row value m: FREE (not at all, or invariantly), ("shift",
    a) for a·m plus a value free of m, ("scale", d) for exp(d·m) times one, None otherwise."""
    dep: dict[Node, Optional[tuple[str, float]]] = {}
    for n in toposort(outputs):
        if n is m:
            dep[n] = ("shift", 1.0)
            continue
        kinds = [dep.get(a, FREE) for a in n.args]
        if all(k == FREE for k in kinds) or n.op == "stop_gradient":
            dep[n] = FREE
        elif None in kinds:
            dep[n] = None
        else:
            dep[n] = _combine(n, kinds)
    return dep


def _combine(n: Node, kinds: list) -> Optional[tuple[str, float]]:
    """The dependence of n on m from its arguments' (at least one depends on m)."""
    def of(kind: str) -> Optional[list[float]]:  # each argument's coefficient, all of one kind
        if any(k != FREE and k[0] != kind for k in kinds):
            return None
        return [0.0 if k == FREE else k[1] for k in kinds]

    def made(kind: str, c: float) -> tuple[str, float]:
        return FREE if c == 0 else (kind, c)
    op = n.op
    if op == "cast" and n.dtype.is_float:
        return kinds[0]
    if op in ("add", "sub") and (c := of("shift")) is not None:
        return made("shift", c[0] + c[1] if op == "add" else c[0] - c[1])
    if op == "neg" and kinds[0][0] == "shift":
        return made("shift", -kinds[0][1])
    if op in ("mul", "div") and kinds[0][0] == "shift" and n.args[1].op == "const" and n.args[1].arg:
        c = float(n.args[1].arg)  # (x - m) / T: a shift by m / T
        return made("shift", kinds[0][1] * c if op == "mul" else kinds[0][1] / c)
    if op == "mul" and kinds[1] != FREE and kinds[1][0] == "shift" and n.args[0].op == "const":
        return made("shift", kinds[1][1] * float(n.args[0].arg))
    if op in ("mul", "div") and (c := of("scale")) is not None:
        return made("scale", c[0] + c[1] if op == "mul" else c[0] - c[1])
    if op == "exp" and kinds[0][0] == "shift":
        return ("scale", kinds[0][1])
    if op == "log" and kinds[0][0] == "scale":
        return ("shift", kinds[0][1])
    if op == "sum" and kinds[0][0] == "scale":  # a per-row factor comes out of the row's sum
        return kinds[0]
    if op == "where" and kinds[0] == FREE and kinds[1] == kinds[2]:
        return kinds[1]
    return None
