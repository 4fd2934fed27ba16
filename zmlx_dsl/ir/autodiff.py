"""Symbolic differentiation on the IR: reverse mode (VJP) and forward mode (JVP).

Both use the registry's derivative rules. A rule maps (args, y, g) to one adjoint per argument and
is linear in g; for elementwise ops the Jacobian is diagonal, so the same rule gives the forward-mode
tangent contribution of argument i when called with g = that argument's tangent. Row reductions
carry an explicit `jvp` (their Jacobian is not diagonal).

Row kernels: a node is per-row if it depends on inputs only through reductions. An adjoint that
flows from a per-element use into a per-row node is summed over the row (the forward broadcast it).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from . import dtypes as dt
from .build import apply, cast, const
from .positions import gather
from .rows import row_lengths
from .node import LEAF_OPS, Node, toposort
from .passes import optimize
from .rows import per_row
from .registry import OPS, cast_grad


def _differentiable(n: Node) -> bool:
    return n.dtype.is_float


def vjp(outputs: Sequence[Node], cotangents: Sequence[Optional[Node]], wrt: Sequence[Node],
        lengths: Optional[Mapping[Node, int]] = None) -> list[Optional[Node]]:
    """Gradients of sum(output_k * cotangent_k) with respect to each node in wrt (None = zero).
    `lengths`: the inputs' row lengths (a row program from a Python body); without them every
    row has the launch's length (`rowsize`)."""
    row = per_row(outputs)
    length = None if lengths is None else row_lengths(outputs, lengths)
    known = None if lengths is None else dict(lengths)  # the adjoints' leaves: inputs and cotangents
    for out, ct in zip(outputs, cotangents):
        if ct is not None and ct.op == "input":
            row[ct] = row[out]  # a per-row output's cotangent holds one value per row
            if known is not None:
                known[ct] = length[out]
    adjoint_length = {} if length is None else dict(length)
    adj: dict[Node, Node] = {}

    def row_sum(g: Node, over: Node) -> Node:
        """The sum of contribution g over the row `over` broadcast it along: g summed, or (g one
        value per row, or a row of one such as `g * y` with y an (R, 1) input) the row's length
        times its value."""
        if length is None:
            return apply("sum", g)
        if not per_row([g], row)[g]:
            if row_lengths([g], known, memo=adjoint_length)[g] == length[over]:
                return apply("sum", g)
            g = gather(g, const(0, dt.int32), 1)
        return g * cast(const(length[over], dt.int32), g.dtype)

    def add(n: Node, g: Optional[Node], over: Optional[Node] = None) -> None:
        """Accumulate g into n's adjoint. over: the row the consumer uses n at every element of (it
        is elementwise, or a reduction reading n broadcast): a per-row n (or a row of one, which
        broadcasts) gets the row's sum of its contributions -- the row's length times g when g
        itself is one value per row."""
        if g is None or not _differentiable(n) or n.op in ("const", "param", "rowsize"):
            return
        if over is not None and (row[n] or (length is not None and length[n] < length[over])):
            g = row_sum(g, over)
        g = cast(g, n.dtype)
        adj[n] = g if n not in adj else adj[n] + g

    for out, ct in zip(outputs, cotangents):
        add(out, ct)
    for n in reversed(toposort(outputs)):
        g = adj.get(n)
        if g is None or n.op in LEAF_OPS:
            continue
        if n.op == "cast":
            add(n.args[0], cast_grad(n.args[0], g), None if row[n] else n)
            continue
        # (a read at other positions is no broadcast: its adjoint is already on its operand's row)
        over = n.args[0] if OPS[n.op].reduction else None if row[n] or OPS[n.op].position else n
        for a, ga in zip(n.args, OPS[n.op].grad(n.args, n, g)):
            add(a, ga, over)
    return [adj.get(w) for w in wrt]


def jvp(outputs: Sequence[Node], tangents: dict[Node, Node],
        lengths: Optional[Mapping[Node, int]] = None) -> list[Optional[Node]]:
    """Tangents of outputs given tangents of some leaves (None = zero); `lengths` as vjp's."""
    tan: dict[Node, Node] = dict(tangents)
    length = None if lengths is None else row_lengths(outputs, lengths)
    tangent_length = {} if lengths is None else {**lengths, **{t: lengths.get(x, 1) for x, t in tangents.items()}}
    row = per_row(outputs)
    for n in toposort(outputs):
        if n in tan or n.op in LEAF_OPS or not _differentiable(n):
            continue
        if n.op == "cast":
            t = tan.get(n.args[0])
            if t is not None and n.args[0].dtype.is_float:
                tan[n] = cast(t, n.dtype)
            continue
        op = OPS[n.op]
        total = None
        for i, a in enumerate(n.args):
            t = tan.get(a)
            if t is None:
                continue
            if n.op == "sum" and length is not None and \
                    row_lengths([t], tangent_length, memo=tangent_length)[t] < length[a]:
                # a tangent of one value per row (or a row of one) broadcast over a longer row
                one = t if per_row([t], row)[t] else gather(t, const(0, dt.int32), 1)
                contrib = one * cast(const(length[a], dt.int32), t.dtype)
            elif op.jvp and op.reduction:
                contrib = op.jvp(n.args, n, t, None if length is None else length[a])
            else:
                contrib = op.jvp(n.args, n, t) if op.jvp else op.grad(n.args, n, t)[i]
            if contrib is None:
                continue
            contrib = cast(contrib, n.dtype)
            total = contrib if total is None else total + contrib
        if total is not None:
            tan[n] = total
    return [tan.get(o) for o in outputs]


def simplify(nodes: Sequence[Optional[Node]]) -> list[Optional[Node]]:
    """Optimise a list of gradients together (CSE across them), keeping the None entries."""
    present = [n for n in nodes if n is not None]
    done = iter(optimize(present))
    return [next(done) if n is not None else None for n in nodes]
