"""The row writer's reads at other positions (backend/c_rows.py): gathers rendered at their
position (bound-checked unless provably inside the row, vector loads where the position is the
loop's shifted by whole vectors), scatters as a loop over the row, and the specialisation of a
loop to one part of the row (a concatenation's part, a roll's)."""
from __future__ import annotations

import re
from typing import Optional

from ..ir import dtypes as dt
from ..ir.build import apply, const
from ..ir.node import Node
from ..ir.passes import optimize
from ..ir.positions import affine, decided, index, value_range
from .c_expr import ATOM, Expr


class PositionReads:
    """Rendering `at` and `scatter` nodes inside a RowWriter, whose state it uses: `c` (the
    renderer), `lines`, `state`, `plan`, `names` (per-row values bound), `elem_inputs` and `base`
    (where each input's row starts), `length` (row lengths), `load` and `vtype`, and the current
    loop's `shift` (its first element), `slot` (where its vector loads go), `shifted` (the vectors
    loaded) and `position_shift` (position name -> offset from the loop's vector)."""

    def values(self, roots: list[Node], local: dict, ind: str, here: Optional[str], **kw) -> dict:
        """render_values of roots, the reads at other positions among them (at, scatter) bound
        first. `here`: the position the values are computed at (None: one value per row)."""
        local = dict(local)
        for n in position_reads(roots, local):
            local[n] = self.gathered(n, local, ind, here) if n.op == "at" else self.scattered(n, local, ind, here)
        return self.c.render_values(roots, local, self.lines, ind, self.state, **kw)

    def names_at(self, length: int, pos: str) -> dict:
        """Names for computing values of a row of `length` at position `pos` (a C name): the per-row
        values as bound, the inputs read there (a vector load when pos is this loop's vector
        position shifted by a multiple of the vector width), the positions `pos` itself."""
        local = dict(self.names)
        shift = self.position_shift.get(pos)
        vector = self.slot is not None and shift is not None and shift % self.plan.vec == 0
        for x in self.elem_inputs:
            if self.length.get(x) == length:
                local[x] = f"{self.vector_at(x, shift)}.v[j]" if vector else \
                    f"{x.arg}[{self.base[x] + ' + ' if self.base[x] else ''}{pos}]"
        local[Node("index", (), dt.int32, length)] = pos
        local[Node("index", (), dt.int32, 1)] = "0"
        self.stored_at(local, length, pos)
        return local

    def vector_at(self, x: Node, shift: int) -> str:
        """The local holding input x's vector `shift` elements after this thread's vector (loaded
        once per loop, before its element loop)."""
        key = (x, shift)
        if key not in self.shifted:
            name = self.shifted[key] = f"{x.arg}_{'p' if shift >= 0 else 'm'}{abs(shift)}"
            lines = [f"      {self.vtype(x.dtype)} {name};"] + self.load(x, name, "      ", shift)
            self.lines[self.slot:self.slot] = lines
            self.slot += len(lines)
        return self.shifted[key]

    def gathered(self, n: Node, local: dict, ind: str, here: Optional[str]) -> Expr:
        """at(e, pos): e computed at position pos of its row, 0 outside it (the position clamped
        for the reads; no check where pos is provably inside)."""
        c, L = self.c, self.lines
        e, pos = n.args
        p = self.state.temp("pos")
        L.append(f"{ind}const int {p} = {self.values([pos], local, ind, here)[pos]};")
        bounds = value_range(pos)
        inside = bounds is not None and bounds[0] >= 0 and bounds[1] < n.arg
        form = affine(pos)
        if inside and form is not None and form[1] == 1 and form[3] == 1:
            i, _, a, _ = form  # pos = i + a: its offset from the vector is that of i, plus a
            known = self.position_shift.get(str(local.get(i)))
            if known is not None:
                self.position_shift[p] = known + a
        at = p
        if not inside:
            at = self.state.temp("at")
            L.append(f"{ind}const int {at} = {p} < 0 ? 0 : ({p} > {n.arg - 1} ? {n.arg - 1} : {p});")
        value = self.values([e], self.names_at(n.arg, at), ind, at)[e]
        if inside:
            return value
        name = self.state.temp("gather")
        L.append(f"{ind}const {c.ctype(n.dtype)} {name} = ({p} >= 0 && {p} < {n.arg}) ? {value} : "
                 f"{c.literal(const(0, n.dtype))};")
        return Expr(name)

    def scattered(self, n: Node, local: dict, ind: str, here: Optional[str]) -> Expr:
        """scatter(g, pos) at this position: the sum of g over the row positions whose pos is here
        (a loop over the row: the adjoint of a gather by an index row)."""
        if here is None:
            raise NotImplementedError("a scatter is one row, not one value per row")
        c, L = self.c, self.lines
        g, pos = n.args
        m = max(self.length[g], self.length[pos])
        acc, at = self.state.temp("scatter"), self.state.temp("zi")
        L.append(f"{ind}{c.ctype(n.dtype)} {acc} = {c.literal(const(0, n.dtype))};")
        L.append(f"{ind}for (int {at} = 0; {at} < {m}; ++{at}) {{")
        vals = self.values([pos, g], self.names_at(m, at), ind + "  ", at)
        at_pos = vals[pos] if vals[pos].prec == ATOM else f"({vals[pos]})"
        if here == "i" and self.shift:  # a part loop's i counts from the part's start
            here = f"i + {self.shift}"
        L.append(f"{ind}  if ({at_pos} == {here}) {acc} += {vals[g]};")
        L.append(f"{ind}}}")
        return Expr(acc)


def without_unused_positions(lines: list[str]) -> list[str]:
    """lines without the position temporaries (`pos_3`, `at_4`) nothing reads (reads that became
    vector loads no longer use their position)."""
    decl = re.compile(r"\s*const int ((?:pos|at)_\d+|i) = .*;$")
    while True:
        text = "\n".join(lines)
        unused = {i for i, line in enumerate(lines) if (m := decl.match(line))
                  and len(re.findall(rf"\b{m.group(1)}\b", text)) == 1}
        if not unused:
            return lines
        lines = [line for i, line in enumerate(lines) if i not in unused]


def specialised(targets: list[Node], extent: int, lo: int, hi: int, known: dict) -> list[Node]:
    """targets computed at the positions lo … hi - 1 of their row (of `extent`) only: the position
    is index(hi - lo) + lo, and the comparisons that range decides are constants (so a
    concatenation's `where` keeps only the part there). Rows read at other positions (a gather's
    operand, a scatter) are left as they are: their own positions are not these; so are the values
    `known` (one per row, computed already)."""
    memo: dict[Node, Node] = {}
    here = index(extent)
    moved = index(hi - lo)
    moved = apply("add", moved, const(lo, dt.int32)) if lo else moved

    def spec(n: Node) -> Node:
        if n in memo:
            return memo[n]
        if n == here:
            out = moved
        elif n.op == "scatter" or not n.args or n in known:
            out = n
        else:
            args = (n.args[0],) + tuple(spec(a) for a in n.args[1:]) if n.op == "at" else tuple(spec(a) for a in n.args)
            out = n if all(a is b for a, b in zip(args, n.args)) else Node(n.op, args, n.dtype, n.arg)
            value = decided(out)
            if value is not None:
                out = const(value, dt.bool_)
        memo[n] = out
        return out
    return optimize([spec(t) for t in targets])


def position_reads(roots: list[Node], known: dict, natural: bool = False) -> list:
    """The reads at other positions (at, scatter nodes) roots need, not entering them; with
    `natural`, every node computed at the current position instead (gathers' positions included)."""
    found: dict = {}
    stack = [(r, False) for r in roots]
    while stack:
        n, done = stack.pop()
        if done:
            found.setdefault(n, None)
            continue
        if n in known or n in found:
            continue
        if n.op in ("at", "scatter") and not natural:
            found.setdefault(n, None)
            continue
        stack.append((n, True))
        # (a gather's position is computed here, its row elsewhere; a scatter's operands elsewhere)
        stack.extend((a, False) for a in (n.args[1:] if n.op == "at" else () if n.op == "scatter" else n.args))
    return list(found) if natural else [n for n in found if n.op in ("at", "scatter")]
