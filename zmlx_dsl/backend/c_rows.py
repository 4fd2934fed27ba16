"""The row-kernel writer of the C renderer: one threadgroup (or simdgroup) per row, reductions
grouped by dependency level into one pass over the row each, the row in registers when it fits."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Optional

from ..ir import dtypes as dt
from ..ir.build import const
from ..ir.node import LEAF_OPS, Node, toposort
from ..ir.passes import reciprocal_divisors
from ..ir.positions import cuts
from ..ir.rows import online_sums, pass_levels, per_row, tie_operands
from ..ir.program import Program
from ..ir.registry import OPS
from .c_expr import ATOM, SIMD64, Expr, RenderState, bare_argument, short_name
from .c_positions import PositionReads, position_reads, specialised, without_unused_positions
from .c_scans import WholeRows, scratch_name
from .plan import MAX_REGISTER_ELEMENTS, Plan

Emit = Callable[[str], None]


class RowWriter(PositionReads, WholeRows):
    """Writes one row kernel for a plan; its fields are the render's state (lines, names bound so
    far, helpers and temporaries), so each render is independent."""

    def __init__(self, c, p: Program, plan: Plan) -> None:
        if c.fast_math:
            p = replace(p, outputs=tuple(reciprocal_divisors(p.outputs)))
        self.c, self.p, self.plan = c, p, plan
        self.state = RenderState()
        self.rows = per_row(p.outputs)
        order = toposort(p.outputs)
        self.reductions = [n for n in order if n.op in OPS and OPS[n.op].reduction]
        self.init_whole_rows(order)
        used = set(toposort(p.outputs))  # an unused input (it may only fix the row shape) is not read
        self.full = [x for x, m in zip(p.inputs, plan.modes) if m == "full" and x in used]
        self.idx = "size_t" if plan.wide_index else c.uint
        self.length = p.row_lengths(default=plan.rowsize)  # each value's row length
        self.KV = self.per_thread(plan.rowsize)      # vectors per thread of the longest row
        # `top`: what the kernel declares once (shared memory included, which Metal wants at
        # function scope); `lines`: the work for one row (looped over rows when the grid strides)
        self.top: list[str] = []
        self.lines: list[str] = []
        self.names: dict[Node, str] = {q: f"{q.arg}[0]" for q in p.params}
        self.names[Node("rowsize", (), dt.int32)] = "D"
        self.elem_inputs: list[Node] = []
        self.base: dict[Node, str] = {}  # where input x's row starts
        lengths = plan.lengths or [plan.rowsize] * len(p.inputs)
        for x, mode, n, (div, mod) in zip(p.inputs, plan.modes, lengths, plan.row_index or [(1, 0)] * len(lengths)):
            row = "row" if div == 1 else f"row / {div}"
            row = row if not mod else f"{row} % {mod}"
            if mode in ("scalar", "per_row"):
                self.names[x] = f"{x.arg}[{'0' if mode == 'scalar' else row}]"
            else:
                self.elem_inputs.append(x)
                row = row if row == "row" else f"({row})"
                self.base[x] = (f"{row} * {'D' if n == plan.rowsize else n}") if mode == "full" else ""
        self.shift = 0          # the first element of the row part the current loop covers
        self.slot: Optional[int] = None  # where in `lines` a loop's vector loads go (before its j loop)
        self.shifted: dict = {}  # (input, shift) -> the local holding that vector, in the current loop
        self.position_shift: dict[str, int] = {}  # position name -> its offset from the vector's start
        self.kept: dict[Node, str] = {}   # per-element values kept in registers for later passes
        self.kept_now: set[Node] = set()  # those whose registers hold them already
        self.scratch_slices: dict = {}    # per dtype: how many reductions exchange through its scratch at once
        self.space = {x: c.space(plan, i) for i, x in enumerate(p.inputs)}

    def per_thread(self, extent: int) -> int:
        """Vectors each thread handles of a row of `extent`."""
        return -(-(extent // self.plan.vec) // self.plan.threads)

    def render(self) -> tuple[str, str]:
        """(header, body) of the kernel."""
        c, plan = self.c, self.plan
        self.prologue()
        if plan.cached:
            self.load_registers()
        self.online = {} if plan.cached else online_sums(self.reductions, self.length)
        passes = set(self.reductions) | set(self.whole)  # each needs the whole row of its operand first
        level = pass_levels(self.p.outputs, passes, self.online)
        self.kept = self.kept_between_passes(level) if plan.cached else {}
        for lv in range(1, max((level[r] for r in passes), default=0) + 1):
            for n in self.whole:
                if level[n] == lv:
                    self.whole_row(n)
            self.reduce_level(lv, [r for r in self.reductions if level[r] == lv])
        self.outputs()
        self.top = [t.format(**{f"scratch_{d.name}": 32 * self.scratch_slices.get(d, 1) for d in dt.ALL})
                    if "{scratch_" in t else t for t in self.top]
        body = self.top + self.lines
        if plan.grid_stride:  # the next row's writes to shared memory wait for this row's reads
            shared = any(t.startswith(f"  {c.shared} ") for t in self.top)
            body = self.top + ["  " + line for line in self.lines] + ([f"    {c.barrier}"] if shared else []) + ["  }"]
        body += self.row_sum_partials()
        simd = c.simd_helpers + (c.simd64_helpers if SIMD64 in self.state.helpers else "")
        self.state.helpers.discard(SIMD64)
        header = "\n".join(x for x in (c.vec_struct, simd.format(q=c.fn_qual), c.helper_text(self.state.helpers)) if x)
        return header + "\n", "\n".join(body) + "\n"

    # ---- the kernel's frame ------------------------------------------------------------------
    def prologue(self) -> None:
        """Constants, lane indices, shared scratch, the row index (and the grid-stride loop)."""
        c, plan, u, idx = self.c, self.plan, self.c.uint, self.idx
        R = plan.rows_per_group  # > 1 for short rows: a simdgroup (or less) per row, several rows per group
        rows = f"{R} rows of {plan.rowsize} per threadgroup, {plan.threads} threads each" if R > 1 else \
            f"one row of {plan.rowsize} per threadgroup of {plan.threads}"
        self.top += [f"  // {self.p.name}: {rows}, vectors of "
                     f"{plan.vec}, " + (f"row held in registers ({self.KV * plan.vec} per thread)" if plan.cached
                                        else "row re-read per pass"),
                     f"  constexpr int D = {plan.rowsize};",
                     f"  const {u} lid = {c.local_id}{f' % {plan.threads}' if R > 1 else ''};"]
        if plan.threads > 32:  # several simdgroups: partial results meet in shared memory, in their own type
            self.top += [f"  const {u} lane = lid % 32;", f"  const {u} warp = lid / 32;"]
            exchanged = {r.dtype for r in self.reductions if r.op != "fold"} | {n.dtype for n in self.whole if n.op != "argsort"}
            for d in sorted(exchanged, key=lambda d: d.name):  # sized once the passes are rendered
                self.top.append(f"  {c.shared} {c.ctype(d)} {scratch_name(d)}[{{scratch_{d.name}}}];")
        for k in plan.row_sums:  # this thread's columns of the rows its group sums, across the row loop
            self.top.append(f"  {c.ctype(self.p.outputs[k].dtype)} {self.row_sum(k)}[{self.KV}][{plan.vec}] = {{}};")
        group = c.index(c.group_id, idx)
        if plan.grid_stride:  # more rows than the grid can hold: each group loops over rows
            group = "group"
            self.top += self.row_count()
            self.top.append(f"  for ({idx} group = {c.index(c.group_id, idx)}; group < ngroups; "
                            f"group += {c.index(c.group_count, idx)}) {{")
        self.lines.append(f"  const {idx} row = {group}" + (f" * {R} + {c.local_id} / {plan.threads};" if R > 1 else ";"))
        if any(r.dtype.bits == 64 for r in self.reductions):
            self.state.helpers.add(SIMD64)

    def row_count(self) -> list[str]:
        """Lines declaring `ngroups`, the row count over rows per group, from the shape of an input
        with a value per row (full or per_row: a kernel of shared rows only has one row)."""
        index = self.plan.row_index or [(1, 0)] * len(self.p.inputs)
        x, mode = next((x, m) for x, m, i in zip(self.p.inputs, self.plan.modes, index)
                       if m in ("full", "per_row") and i == (1, 0))
        last = f"{x.arg}_ndim - 1" if mode == "full" else f"{x.arg}_ndim"
        return [f"  {self.idx} nrows = 1;",
                f"  for (int d = 0; d < {last}; ++d) nrows *= {x.arg}_shape[d];",
                f"  const {self.idx} ngroups = nrows / {self.plan.rows_per_group};"]

    # ---- moving the row ----------------------------------------------------------------------
    def vtype(self, d: dt.DType) -> str:
        return f"zmlx_vec<{self.c.ctype(d)}, {self.plan.vec}>"

    def offset(self, x: Node, shift: int = 0) -> str:
        """The offset of input x's element `shift` after this thread's vector v."""
        parts = [self.base[x]] if self.base[x] else []
        parts += [f"{shift}"] if shift else []
        return " + ".join(parts + [f"v * {self.plan.vec}"])

    def load(self, x: Node, into: str, ind: str, shift: int = 0) -> list[str]:
        """The lines reading one vector of input x (at this thread's vector v, `shift` elements
        on) into the local `into`."""
        c, vec, offset = self.c, self.plan.vec, self.offset(x, shift)
        at = f"{x.arg} + {offset}"
        if c.vector_struct:
            return [f"{ind}{into} = *(const {self.vtype(x.dtype)}*)({at});"]
        if vec % 4 == 0 and x.dtype != dt.bool_:  # Metal: vec<T, 4> accesses (aligned struct)
            v4 = f"vec<{c.ctype(x.dtype)}, 4>"
            return [f"{ind}for (int q = 0; q < {vec}; q += 4) *({c.thread_ref} {v4}*)({into}.v + q) = "
                    f"*(const {self.space[x]}{v4}*)({at} + q);"]
        return [f"{ind}for (int j = 0; j < {vec}; ++j) {into}.v[j] = {x.arg}[{offset} + j];"]

    def vector_loop_head(self, extent: int) -> None:
        """Open the loop over this thread's vectors (`v`) of a row of `extent`, as registers or a
        strided loop."""
        u, threads, nv = self.c.uint, self.plan.threads, extent // self.plan.vec
        if self.plan.cached:
            self.lines += [f"  for (int k = 0; k < {self.KV}; ++k) {{",
                           f"    const {u} v = lid + k * {threads};",
                           f"    if (v < {nv}) {{"]
        else:
            self.lines += [f"  for ({u} v = lid; v < {nv}; v += {threads}) {{", "    {"]

    def load_registers(self) -> None:
        """Read the row's full inputs once into registers (`<x>_r[k]`)."""
        if not self.full:  # a row shared by every row (a grid of one row, say) is read where used
            return
        for x in self.full:
            self.lines.append(f"  {self.vtype(x.dtype)} {x.arg}_r[{self.KV}];")
        self.vector_loop_head(self.plan.rowsize)
        for x in self.full:
            self.lines += self.load(x, f"{x.arg}_r[k]", "      ")
        self.lines += ["    }", "  }"]

    def bind_per_row(self, values: list[Node]) -> None:
        """Compute (once per row, before a loop) the per-row values not yet bound, as named temporaries."""
        todo = [v for v in dict.fromkeys(values) if v not in self.names]
        if todo:
            self.names.update(self.values(todo, self.names, "  ", None, prefix="row_", name_roots=True))

    def frontier(self, targets: list[Node]) -> list[Node]:
        """The per-row values that per-element parts of targets read."""
        rows = self.rows
        return [a for n in toposort(targets, stop=self.names) if not rows.get(n, True)
                for a in n.args if rows.get(a) and a.op not in LEAF_OPS and a not in self.names]

    def element_loop(self, targets: list[Node], extent: int, emit_tail: Callable[[dict, str], None],
                     before: Optional[Emit] = None, after: Optional[Emit] = None) -> None:
        """Loops over this thread's vectors and their elements of a row of `extent` computing
        targets; the per-row values they need are computed once, before. Where the targets select
        by position (a concatenation's parts, a roll's), each part of the row gets its own loop
        with the selection decided (no part computes the others' values)."""
        self.bind_per_row(self.frontier(targets))
        self.loop_length = extent
        bounds = sorted({k for n in position_reads(targets, self.names, natural=True)
                         if (k := cuts(n, extent)) is not None and k % self.plan.vec == 0})
        if self.plan.cached or not bounds:
            return self.part_loop(targets, targets, extent, 0, emit_tail, before, after)
        for lo, hi in zip([0] + bounds, bounds + [extent]):
            part = specialised(targets, extent, lo, hi, self.names)

            def tail(vals: dict, ind: str, part: list = part) -> None:
                emit_tail({t: vals[q] for t, q in zip(targets, part)}, ind)
            self.part_loop(targets, part, hi - lo, lo, tail, before, after)

    def part_loop(self, targets: list[Node], part: list[Node], extent: int, start: int,
                  emit_tail: Callable[[dict, str], None], before: Optional[Emit], after: Optional[Emit]) -> None:
        """One loop over the elements start … start + extent of the row computing `part` (the
        targets, specialised to those positions)."""
        local = dict(self.names)
        self.shift = start
        self.vector_loop_head(extent)
        here = position_reads(part, self.names, natural=True)  # what is read at this position
        for x in self.elem_inputs:
            if x not in here:
                continue
            if self.plan.cached and x in self.full:
                local[x] = f"{x.arg}_r[k].v[j]"
            else:
                self.lines.append(f"      {self.vtype(x.dtype)} {x.arg}_c;")
                self.lines += self.load(x, f"{x.arg}_c", "      ", start)
                local[x] = f"{x.arg}_c.v[j]"
        for o in self.kept_now:
            local[o] = Expr(f"{self.kept[o]}[k][j]")
        if before:
            before("      ")
        self.slot, self.shifted = len(self.lines), {}
        self.lines.append(f"      for (int j = 0; j < {self.plan.vec}; ++j) {{")
        position, body = None, len(self.lines)
        if any(n.op in ("index", "scatter") for n in here) or self.whole:
            position = "i"
            self.lines.append(f"        const int i = int(v) * {self.plan.vec} + j;")
            local[Node("index", (), dt.int32, extent)] = "i"
            self.position_shift["i"] = 0
            self.stored_at(local, self.loop_length, f"i + {start}" if start else "i")
        local[Node("index", (), dt.int32, 1)] = "0"
        emit_tail(self.values(part, local, "        ", position), "        ")
        self.lines[body:] = without_unused_positions(self.lines[body:])
        self.lines.append("      }")
        self.slot = None
        self.position_shift.clear()
        if after:
            after("      ")
        self.lines += ["    }", "  }"]
        self.shift = 0

    # ---- reductions --------------------------------------------------------------------------
    def reduce_level(self, lv: int, reductions: list[Node]) -> None:
        """One pass over the row computing the associative reductions of a level, then its folds."""
        group = [r for r in reductions if r.op != "fold"]
        accs = {r: f"{short_name(r.op)}{lv}_{j}" for j, r in enumerate(group)}
        for r in group:
            self.lines.append(f"  {self.c.ctype(r.dtype)} {accs[r]} = {self.identity(r)};")

        operand = {r: self.online[r][2] if r in self.online else r.args[0] for r in group}
        for extent in sorted({self.length[operand[r]] for r in group}):
            part = [r for r in group if self.length[operand[r]] == extent]
            online = [r for r in part if r in self.online]

            keep = [o for o in dict.fromkeys(operand[r] for r in part) if o in self.kept and o not in self.kept_now]
            for o in keep:
                self.lines.append(f"  {self.c.ctype(o.dtype)} {self.kept[o]}[{self.KV}][{self.plan.vec}];")

            def tail(vals: dict, ind: str, part: list = part, keep: list = keep) -> None:
                vals = dict(vals)
                for o in keep:  # into its registers, read from there by this pass and the later ones
                    self.lines.append(f"{ind}{self.kept[o]}[k][j] = {vals[o]};")
                    vals[o] = Expr(f"{self.kept[o]}[k][j]")
                for r in part:
                    if r in self.online:  # kept for the vector's online step (after)
                        self.lines.append(f"{ind}{accs[r]}_e[j] = {vals[operand[r]]};")
                    else:
                        self.lines.append(f"{ind}{accs[r]} = {self.combine(r, accs[r], vals[operand[r]])};")
            before = (lambda ind, online=online: self.online_before(online, accs, ind)) if online else None
            after = (lambda ind, online=online: self.online_after(online, accs, ind)) if online else None
            self.element_loop([operand[r] for r in part], extent, tail, before, after)
            self.kept_now.update(keep)
        local_max = {}
        for r in group:
            if r in self.online:
                m = accs[self.online[r][0]]
                if f"{m}_here" not in local_max.values():  # one per maximum (two sums may share it)
                    self.lines.append(f"  const {self.c.ctype(r.dtype)} {m}_here = {m};")
                local_max[r] = f"{m}_here"
        # the pass's reductions over the group together (the maxima too: the online sums rescale to them)
        self.lines.extend(self.block_reduce([r for r in group if r not in self.online], accs))
        for r in group:
            if r in self.online:
                self.online_total(r, accs[r], accs[self.online[r][0]], local_max[r])
            self.names[r] = accs[r]
        for j, r in enumerate(r for r in reductions if r.op == "fold"):
            self.serial_fold(r, f"fold{lv}_{j}")

    def kept_between_passes(self, level: dict) -> dict[Node, str]:
        """Rows held in registers: a reduction's per-element operand that a later pass reads again
        (softmax's exp(x - max), read by its output) stays in registers from the pass computing it
        instead of being computed twice, as far as the register budget (MAX_REGISTER_ELEMENTS a
        thread, the row's inputs included) allows; not a value one op (or a cast) makes from the
        row's inputs, which costs less to recompute than the registers. A value a tie test compares
        with its row's max or min (ir.rows.tie_operands) is kept whatever the budget: a second copy
        may round differently and tie nothing. Maps each to their name."""
        users: dict[Node, list[Node]] = {}
        for n in toposort(self.p.outputs):
            for a in n.args:
                users.setdefault(a, []).append(n)
        room = MAX_REGISTER_ELEMENTS // (self.KV * self.plan.vec) - max(1, len(self.full))
        ties = tie_operands(self.p.outputs)
        kept: dict[Node, str] = {o: self.state.temp(f"{short_name(o.op)}_r") for o in toposort(list(ties))
                                 if o in ties}
        for r in self.reductions:
            o = r.args[0] if r.op != "fold" and r.args else None
            if o is None or o in kept or len(kept) >= room or self.rows[o] or o.op in LEAF_OPS \
                    or self.length[o] != self.plan.rowsize:
                continue
            work = [n for n in toposort([o], stop=self.names) if not self.rows[n] and n.op not in LEAF_OPS and n.op != "cast"]
            same_pass = {u for u in self.reductions if level[u] == level[r]}
            if len(work) >= 2 and any(u not in same_pass for u in users.get(o, [])):  # not for a lone x * x
                kept[o] = self.state.temp(f"{short_name(o.op)}_r")
        return kept

    # ---- sum(exp(e - max(e))) in the max's pass (an online normaliser) ------------------------
    def online_before(self, online: list[Node], accs: dict, ind: str) -> None:
        """Before a vector's elements: each online sum's values of the vector (`<sum>_e`), and the
        maximum as it was before them (`<max>_before`)."""
        for m in dict.fromkeys(self.online[r][0] for r in online):
            self.lines.append(f"{ind}const float {accs[m]}_before = {accs[m]};")
        self.lines += [f"{ind}float {accs[r]}_e[{self.plan.vec}];" for r in online]

    def online_after(self, online: list[Node], accs: dict, ind: str) -> None:
        """After a vector's elements (the maximum now includes them): each online sum rescaled to the
        new maximum once, then the vector's exp(e - max) added; a sum stays 0 while its maximum is
        -inf (no element yet above it)."""
        exp = self.c.spellings["exp"].template("f")
        self.c.note_helpers(exp, self.state)
        for r in online:
            acc, m = accs[r], accs[self.online[r][0]]
            self.lines += [f"{ind}if ({m} != -INFINITY) {{",
                           f"{ind}  {acc} = {acc} * {exp.format(f'{m}_before - {m}')};",
                           f"{ind}  for (int j = 0; j < {self.plan.vec}; ++j) {acc} += {exp.format(f'{acc}_e[j] - {m}')};",
                           f"{ind}}}"]

    def online_total(self, r: Node, acc: str, m: str, here: str) -> None:
        """The online sum over the group: each thread's sum rescaled to the row's maximum m, then
        summed. A row whose maximum is infinite (where the rescaling is undefined) gets the sum by
        its own pass, as it is written."""
        c, L = self.c, self.lines
        exp = c.spellings["exp"].template("f")
        L.append(f"  {acc} = {m} == -INFINITY ? 0.0f : {acc} * {exp.format(f'{here} - {m}')};")
        L.extend(self.block_reduce([r], {r: acc}))
        self.bind_per_row(self.frontier([r.args[0]]))
        L.append(f"  if (isinf({m})) {{  // the sum's own pass: no rescaling to an infinite maximum")
        start = len(L)
        L.append(f"    {acc} = 0.0f;")

        def tail(vals: dict, ind: str) -> None:
            L.append(f"{ind}{acc} = {self.combine(r, acc, vals[r.args[0]])};")
        self.element_loop([r.args[0] for r in [r]], self.length[r.args[0]], tail)
        L.extend(self.block_reduce([r], {r: acc}))
        L[start + 1:] = ["  " + line for line in L[start + 1:]]
        L.append("  }")

    def identity(self, r: Node) -> str:
        """The registry's neutral element of reduction r, spelled for r's dtype (limits for ints)."""
        value, c = OPS[r.op].identity, self.c
        if r.dtype == dt.bool_:
            return "true" if value > 0 else "false"
        if r.dtype.is_int and math.isinf(value):
            lo, hi = r.dtype.limits
            if value > 0:
                return c.literal(const(hi, r.dtype))
            return "0u" if r.dtype.kind == "u" else f"(-{c.literal(const(hi, r.dtype))} - 1)"
        return c.literal(const(value, r.dtype))

    def combine(self, r: Node, acc: str, v: Expr) -> str:
        """acc combined with v (the text of r's operand) by reduction r's spelling: a call, or
        `{0} + {1}`, where v binding looser than `+` is bracketed (`acc + (x > 0.0f)`)."""
        spellings = self.c.spellings
        template = spellings[r.op].template(r.dtype.kind)
        self.c.note_helpers(template, self.state)
        if not bare_argument(template, 1) and v.prec <= spellings["add"].prec:
            v = f"({v})"
        return template.format(acc, v)

    def block_reduce(self, rs: list[Node], accs: dict[Node, str]) -> list[str]:
        """Reduce each accumulator accs[r] over the threadgroup: within each simdgroup, then across
        them through shared memory, all of them between one pair of barriers (a slice of 32 of their
        dtype's scratch each: rmsnorm's backward sums two per row)."""
        threads, c = self.plan.threads, self.c
        lines = [f"  {accs[r]} = zmlx_simd_{r.op}({accs[r]});" for r in rs]  # simd_helpers define them
        if threads <= 32 or not rs:
            return lines
        slot: dict[Node, str] = {}
        for r in rs:
            k = sum(q.dtype == r.dtype for q in slot)
            slot[r] = f"{k * 32} + " if k else ""
            self.scratch_slices[r.dtype] = max(self.scratch_slices.get(r.dtype, 1), k + 1)
        lines += [f"  if (lane == 0) {{ " + " ".join(f"{scratch_name(r.dtype)}[{slot[r]}warp] = {accs[r]};" for r in rs) + " }"
                  if len(rs) > 1 else f"  if (lane == 0) {scratch_name(rs[0].dtype)}[warp] = {accs[rs[0]]};", f"  {c.barrier}"]
        lines += [f"  {accs[r]} = zmlx_simd_{r.op}(lane < {threads // 32} ? {scratch_name(r.dtype)}[{slot[r]}lane] : "
                  f"{self.identity(r)});" for r in rs]
        return lines + [f"  {c.barrier}"]

    def serial_fold(self, r: Node, name: str) -> None:
        """A fold (a non-associative `reduce` update): thread 0 of the row runs
        `acc = init; for i < D: acc = update(acc, operands at i);` reading the row from memory,
        then every thread of the row reads the result from threadgroup memory after a barrier
        (so later levels and the per-element outputs can use it)."""
        c, L = self.c, self.lines
        init, operands, lam = r.args[0], r.args[1:], r.arg
        elem = [o for o in operands if not self.rows[o]]
        self.bind_per_row([init, *[o for o in operands if self.rows[o]], *self.frontier(elem)])
        ct = c.ctype(r.dtype)
        slot = "0" if self.plan.rows_per_group == 1 else f"{c.local_id} / 32"
        self.top.append(f"  {c.shared} {ct} zmlx_{name}[{self.plan.rows_per_group}];")
        L.append("  if (lid == 0) {  // a serial loop over the row: the update is not associative")
        L.append(f"    {ct} zmlx_{name}_acc = {self.names[init]};")
        L.append("    for (int zmlx_i = 0; zmlx_i < D; ++zmlx_i) {")
        local = dict(self.names)
        for x in self.elem_inputs:
            local[x] = f"{x.arg}[{self.base[x] + ' + ' if self.base[x] else ''}zmlx_i]"
        vals = c.render_values(elem, local, L, "      ", self.state, name_roots=True) if elem else local
        bind = {lam.params[0]: f"zmlx_{name}_acc"}
        bind.update({q: vals[o] for q, o in zip(lam.params[1:], operands)})
        step = c.render_values([lam.body], bind, L, "      ", self.state)
        L += [f"      zmlx_{name}_acc = {step[lam.body]};", "    }", f"    zmlx_{name}[{slot}] = zmlx_{name}_acc;",
              "  }", f"  {c.barrier}", f"  const {ct} {name} = zmlx_{name}[{slot}];"]
        self.names[r] = name

    # ---- outputs -----------------------------------------------------------------------------
    def outputs(self) -> None:
        """Per-row outputs written by lane 0; per-element outputs in a last pass over the row."""
        c, L = self.c, self.lines
        row_outputs = [(k, o) for k, o in enumerate(self.p.outputs) if self.rows[o]]
        elem_outputs = [(k, o) for k, o in enumerate(self.p.outputs) if not self.rows[o]]
        if row_outputs:
            vals = self.values([o for _, o in row_outputs], self.names, "  ", None, prefix="row_")
            L.append("  if (lid == 0) {")
            L += [f"    {c.out_name(k)}[row] = {vals[o]};" for k, o in row_outputs]
            L.append("  }")
        for extent in sorted({self.length[o] for _, o in elem_outputs}):
            self.write_outputs([(k, o) for k, o in elem_outputs if self.length[o] == extent], extent)

    def write_outputs(self, elem_outputs: list, extent: int) -> None:
        """The per-element outputs of one row length, in a pass over the row (those summed over the
        rows added to their registers instead)."""
        c, L, vec = self.c, self.lines, self.plan.vec
        written = [(k, o) for k, o in elem_outputs if k not in self.plan.row_sums]

        def declare(ind: str) -> None:
            L.extend(f"{ind}{self.vtype(o.dtype)} res{k};" for k, o in written)

        def store(vals: dict, ind: str) -> None:
            L.extend(f"{ind}{self.row_sum(k)}[k][j] += {vals[o]};" if k in self.plan.row_sums else
                     f"{ind}res{k}.v[j] = {vals[o]};" for k, o in elem_outputs)

        def write(ind: str) -> None:
            for k, o in written:
                start = f"{self.shift} + " if self.shift else ""
                dst = f"{c.out_name(k)} + row * {'D' if extent == self.plan.rowsize else extent} + {start}v * {vec}"
                if c.vector_struct:
                    L.append(f"{ind}*({self.vtype(o.dtype)}*)({dst}) = res{k};")
                elif vec % 4 == 0 and o.dtype != dt.bool_:
                    v4 = f"vec<{c.ctype(o.dtype)}, 4>"
                    L.append(f"{ind}for (int q = 0; q < {vec}; q += 4) *({c.device_ptr} {v4}*)({dst} + q) = "
                             f"*({c.thread_ref} {v4}*)(res{k}.v + q);")
                else:
                    L.append(f"{ind}for (int j = 0; j < {vec}; ++j) ({dst})[j] = res{k}.v[j];")
        self.element_loop([o for _, o in elem_outputs], extent, store, declare, write)


    def row_sum(self, k: int) -> str:
        """The registers summing output k over the rows of this group."""
        return f"{self.c.out_name(k)}_sum"

    def row_sum_partials(self) -> list[str]:
        """After the loop over the group's rows: each thread's partial sums, as row `group` of the
        summed outputs (`group * rows_per_group + slot` for short rows; the launcher adds the rows
        of partial sums up)."""
        if not self.plan.row_sums:
            return []
        c, plan, R = self.c, self.plan, self.plan.rows_per_group
        group = c.index(c.group_id, self.idx)
        group = f"({group} * {R} + {c.local_id} / {plan.threads})" if R > 1 else group
        lines = ["  // this group's partial sums over its rows",
                 f"  for (int k = 0; k < {self.KV}; ++k) {{",
                 f"    const {c.uint} v = lid + k * {plan.threads};",
                 f"    if (v < {plan.rowsize // plan.vec}) {{",
                 f"      for (int j = 0; j < {plan.vec}; ++j) {{"]
        lines += [f"        {c.out_name(k)}[{group} * D + v * {plan.vec} + j] = {self.row_sum(k)}[k][j];"
                  for k in plan.row_sums]
        return lines + ["      }", "    }", "  }"]
