"""What a row program knows of its values: which are one value per row, and each one's row length.

Every per-element value lives on a row of some length (an input's last axis, a slice's,
`mx.arange(n)`'s). Elementwise ops broadcast lengths as MLX broadcasts a 1-D row (equal, or 1);
values that are one per row have length 1."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .dtypes import float32
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


def online_sums(reductions: list[Node], length: dict) -> dict[Node, tuple[Node, Node, Node]]:
    """The float32 sums of exp(e - S) whose shift S is the max of e (or, as logsumexp writes it,
    that max with 0 for an infinite one, under stop_gradient): computed in the max's own pass, as
    an online normaliser does. Maps each to (the max, S, e)."""
    found = {}
    for r in reductions:
        arg = r.args[0] if r.op == "sum" and r.args else None
        if arg is None or arg.op != "exp" or arg.args[0].op != "sub" or r.dtype != float32:
            continue
        e, shift = arg.args[0].args
        m = shift.args[0] if shift.op == "stop_gradient" else shift
        if m.op == "where" and m.args[0].op == "isinf" and m.args[1].op == "const" and m.args[1].arg == 0:
            m = m.args[2] if m.args[0].args[0] is m.args[2] else None
        if m is not None and m.op == "max" and m.args[0] is e and m in reductions and e.dtype == float32 \
                and length[e] == length[arg]:
            found[r] = (m, shift, e)
    return found


def pass_levels(roots: Sequence[Node], passes: set, online: Mapping[Node, tuple]) -> dict[Node, int]:
    """Each node's pass over the row: a reduction (or scan, sort: `passes`) needs the whole row
    of its operand first, so it comes one pass after its operand's; an online sum shares its
    maximum's pass (see online_sums). Level 0 needs no pass."""
    level: dict[Node, int] = {}
    for n in toposort(roots):
        lv = max((level.get(a, 0) for a in n.args), default=0)
        level[n] = level[online[n][0]] if n in online else lv + 1 if n in passes else lv
    return level


# Per-element ops a kernel repeats bit for bit in any pass (exact, or one rounding nothing can fuse).
_REPEATABLE = frozenset({"cast", "neg", "abs"})
_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})


def tie_operands(roots: Sequence[Node]) -> set[Node]:
    """Per-element values compared with their own row max or min (a tie test: the derivative of
    max/min, or `e == e.max()` written out) that a kernel could not repeat bit for bit in a later
    pass: computed with rounding ops, which a compiler may fuse or vectorise differently in each
    copy (then no element ties, and a tie count of 0 gives NaN). They must be computed once."""
    rows = per_row(roots)
    row_values = {n for n, r in rows.items() if r}
    found: set[Node] = set()
    for n in toposort(roots):
        if n.op not in _COMPARISONS:
            continue
        for a, b in (n.args, n.args[::-1]):
            if b.op in ("max", "min") and b.args and b.args[0] is a and not rows[a] and \
                    any(not rows[w] and w.op not in LEAF_OPS and w.op not in _REPEATABLE
                        for w in toposort([a], stop=row_values)):
                found.add(a)
    return found
