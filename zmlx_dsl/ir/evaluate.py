"""Evaluating IR with an op table: shared by the NumPy interpreter and the portable MLX backend."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .node import LEAF_OPS, Node, toposort


def evaluate(roots: Sequence[Node], leaf: Callable[[Node], Any], cast: Callable[[Any, Node], Any],
             call: Callable[[Node, list], Any]) -> list:
    """Values of roots: leaves from `leaf`, casts from `cast`, every other op from `call`."""
    vals: dict[Node, Any] = {}
    for n in toposort(roots):
        if n in vals:
            continue
        if n.op in LEAF_OPS:
            vals[n] = leaf(n)
        elif n.op == "cast":
            vals[n] = cast(vals[n.args[0]], n)
        else:
            vals[n] = call(n, [vals[a] for a in n.args])
    return [vals[r] for r in roots]
