"""What a row program knows of its values: which are one value per row, and each one's row length.

Every per-element value lives on a row of some length (an input's last axis, a slice's,
`mx.arange(n)`'s). Elementwise ops broadcast lengths as MLX broadcasts a 1-D row (equal, or 1);
values that are one per row have length 1."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .node import LEAF_OPS, Node, toposort
from .table import OPS


def row_lengths(roots: Sequence[Node], inputs: Mapping[Node, int], default: int = 1,
                memo: Optional[dict] = None) -> dict[Node, int]:
    """Each node's row length, given the inputs' (an input not in `inputs` has `default`, the row
    length of a program whose inputs all share one). `memo`: lengths known already (updated)."""
    out: dict[Node, int] = {} if memo is None else memo
    for n in toposort(roots, stop=out):
        if n in out:
            continue
        if n.op == "input":
            out[n] = inputs.get(n, default)
        elif n.op == "index":
            out[n] = n.arg
        elif n.op == "at":
            out[n] = out[n.args[1]]
        elif n.op == "scatter" or n.op == "argsort":
            out[n] = n.arg
        elif not n.args or (n.op != "cast" and OPS[n.op].reduction):
            out[n] = 1
        elif n.op != "cast" and OPS[n.op].whole_row:  # a scan: (length, reverse, inclusive)
            out[n] = n.arg[0]
        else:
            out[n] = max(out[a] for a in n.args)
    return out


def per_row(roots: Sequence[Node], memo: Optional[dict] = None) -> dict[Node, bool]:
    """For each node: True when its value is the same along the row (a reduction result, a
    constant, a parameter or anything computed only from those). `memo`: as row_lengths'."""
    out: dict[Node, bool] = {} if memo is None else memo
    for n in toposort(roots, stop=out):
        if n in out:
            continue
        if n.op in ("input", "index"):
            out[n] = False
        elif n.op in LEAF_OPS:
            out[n] = True
        elif n.op != "cast" and OPS[n.op].reduction:
            out[n] = True
        elif n.op == "at":  # a row read at one position per row is one value per row
            out[n] = out[n.args[1]]
        else:
            out[n] = all(out[a] for a in n.args)
    return out
