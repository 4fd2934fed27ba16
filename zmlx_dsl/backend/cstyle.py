"""One C-style renderer for every C backend: IR -> kernel source for MLX's custom-kernel APIs.

Metal and CUDA subclass `CStyle` and differ only in data and a few hooks (type names, qualifiers,
thread indices, barrier and simd spellings) — tinygrad's renderer/cstyle.py is the model.
A kernel is (header, body): the header holds the helpers the ops need and one `<name>_body`
function computing the program per element; the body is the launch logic MLX wraps.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ir import dtypes as dt
from ..ir.passes import per_row
from ..ir.build import const
from ..ir.node import LEAF_OPS, Node, toposort
from ..ir.program import Program
from .plan import Plan
from ..ir.registry import OPS
from .c_ops import HELPERS, SPELLINGS, Spelling, helper_deps

SIMD64 = "zmlx_simd64"  # a row kernel reduces 64-bit values (see CStyle.simd64_helpers)
ATOM = 9  # the precedence of a name, literal, call or subscript: never bracketed


class Expr(str):
    """The C text of a value with the precedence of its outermost operator (ATOM when atomic), so
    every consumer brackets it by the same rule however many levels it passes through."""

    def __new__(cls, text: str, prec: float = ATOM) -> "Expr":
        e = super().__new__(cls, text)
        e.prec = prec
        return e


@dataclass
class RenderState:
    """What one render accumulates: the helper functions its ops use and its temporaries' counter
    (per render, so kernels rendered from several threads get the same text)."""

    helpers: set[str] = field(default_factory=set)
    temps: int = 0

    def temp(self, stem: str) -> str:
        """A fresh temporary name `<stem>_<n>`."""
        name = f"{stem}_{self.temps}"
        self.temps += 1
        return name


class CStyle:
    """Renders programs to C-like kernel text; subclasses fill in the spellings."""

    # the spellings each backend supplies (see metal.MetalRenderer, cuda.CUDARenderer)
    backend: str                    # the backend's name
    spellings: dict[str, Spelling] = SPELLINGS  # op name -> C text (a renderer overrides entries)
    fn_qual: str                    # qualifier of helper functions
    device_ptr: str                 # address-space qualifier of a global pointer
    constant_ptr: str               # of a small input MLX places in constant memory
    thread_ref: str                 # of a reference to a local
    shared: str                     # of block-shared memory
    barrier: str
    types: dict                     # IR dtype name -> C type
    global_id: str                  # thread index expressions
    group_id: str
    local_id: str
    group_count: str                # groups in the grid
    simd_helpers = ""               # zmlx_simd_<reduction> for the types collectives take natively
    simd64_helpers = ""             # and for 64-bit integers, where the backend needs more
    uint = "uint"                   # 32-bit unsigned index type
    vector_struct = False           # fast path through an aligned 16-byte struct (else scalar accesses)

    def register_budget(self, itemsize: int) -> int:
        """Row elements of `itemsize` bytes a group may hold in registers (per thread x threads)."""
        return 16384

    # ---- expressions ---------------------------------------------------------------------
    def ctype(self, d: dt.DType) -> str:
        return self.types[d.name]

    def literal(self, n: Node) -> str:
        v, d = n.arg, n.dtype
        if d == dt.bool_:
            return "true" if v else "false"
        if d.is_int:
            return f"{v}" + ("u" if d.kind == "u" else "") + ("l" if d.bits == 64 else "")
        v = dt.round_float(v, dt.float32)  # the text is a float literal (narrow types cast it)
        if np.isnan(v):
            text = "NAN"
        elif np.isinf(v):
            text = "INFINITY" if v > 0 else "-INFINITY"
        else:
            text = repr(v)
            text = (text if ("." in text or "e" in text) else text + ".0") + "f"
        return text if d == dt.float32 else f"{self.ctype(d)}({text})"

    def cast(self, text: str, src: dt.DType, d: dt.DType) -> str:
        return f"{self.ctype(d)}({text})"

    def render_values(self, roots: list[Node], names: dict[Node, str], lines: list[str], indent: str,
                      state: "RenderState", prefix: str = "", name_roots: bool = False) -> dict[Node, "Expr"]:
        """Emit statements computing roots; returns node -> C expression (an `Expr`, which carries
        its precedence, so a caller may pass it back in `names` and it is bracketed where needed).
        Values used once are inlined into their consumer; shared ones (and roots, with name_roots)
        get a `const` temporary. Plain strings in `names` are atomic (names, element reads)."""
        order = [n for n in toposort(roots, stop=names) if n not in names]
        uses: dict[Node, int] = {}
        for n in order:
            for a in n.args:
                uses[a] = uses.get(a, 0) + 1
        expr: dict[Node, Expr] = {n: v if isinstance(v, Expr) else Expr(v) for n, v in names.items()}
        for n in order:
            if n.op == "const":
                expr[n] = Expr(self.literal(n))
                continue
            if n.op in LEAF_OPS:
                raise KeyError(f"unbound leaf {n}")
            text = self._op_text(n, expr, state)
            if uses.get(n, 0) > 1 or len(text) > 72 or (name_roots and n in roots):
                name = state.temp(f"{prefix}{_short(n.op)}")  # `log_10`: `log10` is a C function
                lines.append(f"{indent}const {self.ctype(n.dtype)} {name} = {text};")
                expr[n] = Expr(name)
            else:
                expr[n] = text
        return expr

    def _op_text(self, n: Node, expr: dict[Node, "Expr"], state: "RenderState") -> "Expr":
        if n.op == "cast":
            return Expr(self.cast(expr[n.args[0]], n.args[0].dtype, n.dtype))
        op = self.spellings.get(n.op)
        if op is None:
            raise NotImplementedError(f"op {n.op} has no C spelling")
        template = op.template(n.args[0].dtype.kind if n.op != "where" else n.dtype.kind)
        state.helpers.update(h.name for h in HELPERS.values() if h.name in template)
        parts = []
        for i, a in enumerate(n.args):
            text = expr[a]
            aprec = text.prec
            repeated = template.count("{%d}" % i) > 1
            needs = op.prec and aprec != ATOM and (aprec < op.prec or (aprec == op.prec and i > 0)
                                                   or op.prec >= 6)
            if repeated and aprec != ATOM:
                needs = True
            if not op.prec and aprec != ATOM and not _bare_argument(template, i):
                needs = True  # an operand of an infix expression inside a call, e.g. floor({0} / {1})
            parts.append(f"({text})" if needs else text)
        return Expr(template.format(*parts), op.prec or ATOM)

    def helper_text(self, names: set[str]) -> str:
        out, done = [], set()

        def emit(name):
            if name in done:
                return
            for dep in helper_deps(name):
                emit(dep)
            done.add(name)
            out.append(HELPERS[name].code.format(q=self.fn_qual))
        for name in sorted(names):
            emit(name)
        return "\n".join(out)

    # ---- the per-element body function ---------------------------------------------------
    def body_function(self, fname: str, params: list[tuple[Node, str]], outputs: list[Node],
                      state: RenderState) -> str:
        """`<fname>(inputs..., outputs&...)`: the program for one element (or one row element)."""
        sig = [f"const {self.ctype(n.dtype)} {name}" for n, name in params]
        sig += [f"{self.thread_ref} {self.ctype(o.dtype)}& out{k}".strip().replace("  ", " ")
                for k, o in enumerate(outputs)]
        lines: list[str] = []
        names = {n: name for n, name in params}
        vals = self.render_values(outputs, names, lines, "  ", state)
        for k, o in enumerate(outputs):
            lines.append(f"  out{k} = {vals[o]};")
        head = f"{self.fn_qual} void {fname}(" + ", ".join(sig) + ") {"
        return "\n".join([head] + lines + ["}"])

    # ---- elementwise kernels -------------------------------------------------------------
    def elementwise(self, p: Program, plan: Plan) -> tuple[str, str]:
        """(header, body) of an elementwise kernel.

        Every non-scalar input has the output's shape (the launcher broadcasts views). When all are
        row-contiguous (checked at run time from their strides), each thread moves
        plan.vectors vectors with 16-byte accesses; otherwise it indexes through the strides."""
        state = RenderState()
        leaves = list(p.inputs) + list(p.params)
        params = [(n, n.arg) for n in leaves]
        fname = f"{p.kernel_name}_body"
        body_fn = self.body_function(fname, params, list(p.outputs), state)
        mode = dict(zip(p.inputs, plan.modes))
        arrays = [x for x in p.inputs if mode[x] != "scalar"]
        full = [x for x in arrays if mode[x] == "full"]
        per = plan.vec
        idx = "size_t" if plan.wide_index else self.uint
        ref = full[0].arg
        V = plan.vectors
        L = [f"  // {p.name}: {V} vector(s) of {per} elements per thread, block-cyclic; "
             "contiguous inputs take the vector path",
             f"  const {idx} n = zmlx_numel({ref}_shape, {ref}_ndim);"]
        for x in arrays:  # broadcasts along trailing (suffix) or leading (prefix) dims, read in place
            if mode[x] == "suffix":
                L.append(f"  const {idx} {x.arg}_size = zmlx_numel({x.arg}_shape, {x.arg}_ndim);")
            elif mode[x] == "prefix":
                L.append(f"  const {idx} {x.arg}_run = n / zmlx_numel({x.arg}_shape, {x.arg}_ndim);")
        step = plan.threads * per  # elements between a thread's consecutive vectors
        L.append("  const bool contiguous = " + " && ".join(
            f"zmlx_row_contiguous({a.arg}_shape, {a.arg}_strides, {a.arg}_ndim)" for a in arrays) + ";")
        top, L = L, []
        block = self.index(self.group_id, idx)
        if plan.grid_stride:  # more blocks than one grid holds: each group loops over blocks
            top.append(f"  for ({idx} block = {block}; block * {V * step} < n; "
                       f"block += {self.index(self.group_count, idx)}) {{")
            block = "block"
        L.append(f"  const {idx} first = {block} * {V * step} + {self.index(self.local_id, idx)} * {per};")
        scalar_reads = {x: f"{x.arg}[0]" for x in p.inputs if mode[x] == "scalar"}
        scalar_reads.update({q: f"{q.arg}[0]" for q in p.params})
        dev = f"{self.device_ptr} " if self.device_ptr else ""
        space = {x: self.space(plan, i) for i, x in enumerate(p.inputs)}

        def position(x: Node, i: str) -> str:
            """Index into x's own elements of output element i."""
            j = i if i.isidentifier() else f"({i})"
            return {"full": i, "suffix": f"{j} % {x.arg}_size", "prefix": f"{j} / {x.arg}_run"}[mode[x]]

        def call(ind: str, element: Callable[[Node], str], dest: Callable[[int], str]) -> None:
            """One element: read each array with `element`, run the body, store output j at dest(j)."""
            for j, o in enumerate(p.outputs):
                L.append(f"{ind}{self.ctype(o.dtype)} res{j};")
            args = [element(x) if x in arrays else scalar_reads[x] for x in leaves]
            L.append(f"{ind}{fname}({', '.join(args + [f'res{j}' for j in range(len(p.outputs))])});")
            for j in range(len(p.outputs)):
                L.append(f"{ind}{dest(j)} = res{j};")

        # The fast path: the thread's V vectors are all in range and every array is row-contiguous.
        # All loads are issued before any store (a store could alias a later load, so the compiler
        # would not hoist it), so each thread has V 16-byte loads per array in flight.
        L.append(f"  if (contiguous && first + {(V - 1) * step + per} <= n) {{")
        vt = None
        if self.vector_struct:  # one aligned 16-byte access per array and vector
            vt, width, item = (lambda d: f"zmlx_vec<{self.ctype(d)}, {per}>"), per, ".v[k]"
        elif per % 4 == 0 and not any(a.dtype == dt.bool_ for a in full + list(p.outputs)):
            # Metal: vectors are at most 4 wide, so 16 bytes are per/4 vec<T, 4> (bool arrays take
            # the scalar loop: clang, which metal-sim compiles with, crashes on bool vectors)
            vt, width, item = (lambda d: f"vec<{self.ctype(d)}, 4>"), 4, "[k]"
        if vt is not None:
            lanes = per // width          # vector accesses per 16 bytes
            slots = V * lanes
            off = f"c * {step}" if lanes == 1 else f"(c / {lanes}) * {step} + (c % {lanes}) * {width}"
            at = f"first + {off}" if slots > 1 else "first"
            for a in full:
                L.append(f"    {vt(a.dtype)} {a.arg}_v[{slots}];")
            L.append(f"    for (int c = 0; c < {slots}; ++c) {{")
            for a in full:
                L.append(f"      {a.arg}_v[c] = *(const {space[a]}{vt(a.dtype)}*)({a.arg} + {at});")
            L.append("    }")
            L.append(f"    for (int c = 0; c < {slots}; ++c) {{")
            for j, o in enumerate(p.outputs):
                L.append(f"      {vt(o.dtype)} res{j}_v;")
            L.append(f"      for (int k = 0; k < {width}; ++k) {{")
            call("        ", lambda x: f"{x.arg}_v[c]{item}" if x in full else f"{x.arg}[{position(x, at + ' + k')}]",
                 lambda j: f"res{j}_v{item}")
            L.append("      }")
            for j, o in enumerate(p.outputs):
                L.append(f"      *({dev}{vt(o.dtype)}*)({self.out_name(j)} + {at}) = res{j}_v;")
            L.append("    }")
        else:  # 8-byte types (two elements per 16 bytes) and bool: plain accesses
            L.append(f"    for (int c = 0; c < {V}; ++c) {{")
            L.append(f"      for (int k = 0; k < {per}; ++k) {{")
            L.append(f"        const {idx} i = first + c * {step} + k;")
            call("        ", lambda x: f"{x.arg}[{position(x, 'i')}]", lambda j: f"{self.out_name(j)}[i]")
            L.append("      }")
            L.append("    }")
        # The rest: the last threads of the grid and strided (non-contiguous) inputs, per element.
        L.append("  } else {")
        L.append(f"    for (int c = 0; c < {V}; ++c) {{")
        L.append(f"      const {idx} base = first + c * {step};")
        L.append(f"      for ({idx} i = base; i < n && i < base + {per}; ++i) {{")
        call("        ", lambda x: f"{x.arg}[contiguous ? {position(x, 'i')} : "
             f"zmlx_loc({position(x, 'i')}, {x.arg}_shape, {x.arg}_strides, {x.arg}_ndim)]",
             lambda j: f"{self.out_name(j)}[i]")
        L.append("      }")
        L.append("    }")
        L.append("  }")
        L = top + (["  " + line for line in L] + ["  }"] if plan.grid_stride else L)
        header = "\n".join(x for x in (self.common_header(), self.helper_text(state.helpers), body_fn) if x)
        return header + "\n", "\n".join(L) + "\n"

    def space(self, plan: Plan, i: int) -> str:
        """The address-space qualifier (with a trailing space) MLX gives input i, for pointer casts."""
        small = plan.in_constant[i] if i < len(plan.in_constant) else False
        q = self.constant_ptr if small else self.device_ptr
        return f"{q} " if q else ""

    def index(self, expr: str, idx: str) -> str:
        """A thread-index expression as idx (a cast only when widening to 64 bits)."""
        return f"{idx}({expr})" if idx == "size_t" else expr

    def out_name(self, k: int) -> str:
        return f"out{k}"

    vec_struct = "template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };\n"

    def common_header(self) -> str:
        q, off = self.fn_qual, self.ctype(dt.int64)
        return self.vec_struct + f"""
template <typename S> {q} size_t zmlx_numel(const S& shape, int ndim) {{
  size_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= size_t(shape[d]);
  return n;
}}

template <typename S, typename St> {q} bool zmlx_row_contiguous(const S& shape, const St& strides, int ndim) {{
  long expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {{
    if (shape[d] != 1 && long(strides[d]) != expected) return false;
    expected *= long(shape[d]);
  }}
  return true;
}}

template <typename I, typename S, typename St> {q} {off} zmlx_loc(I index, const S& shape, const St& strides, int ndim) {{
  // memory offset of the index-th element in row-major order, through arbitrary strides: signed
  // (a stride may be negative) and 64-bit (a view may span more storage than it has elements)
  {off} loc = 0;
  for (int d = ndim - 1; d >= 0; --d) {{
    loc += {off}(index % I(shape[d])) * {off}(strides[d]);
    index /= I(shape[d]);
  }}
  return loc;
}}
"""

    # ---- row kernels ---------------------------------------------------------------------
    def row_count(self, p: Program, plan: Plan, idx: str, R: int) -> list[str]:
        """Lines declaring `ngroups`, the row count over R, from the shape of an input that has a
        value per row (a full row or one per row: a kernel of shared rows only has one row)."""
        x, mode = next((x, m) for x, m in zip(p.inputs, plan.modes) if m in ("full", "per_row"))
        last = f"{x.arg}_ndim - 1" if mode == "full" else f"{x.arg}_ndim"
        return [f"  {idx} nrows = 1;",
                f"  for (int d = 0; d < {last}; ++d) nrows *= {x.arg}_shape[d];",
                f"  const {idx} ngroups = nrows / {R};"]

    def row(self, p: Program, plan: Plan) -> tuple[str, str]:
        """(header, body) of a row kernel: one threadgroup per row (rows contiguous on the last
        axis). Reductions are grouped by dependency level, one pass over the row per level, all
        reductions of a level fused into that pass. Each thread moves whole vectors of `vec`
        elements; the row is read once into registers when it fits."""
        D, threads, vec, cached = plan.rowsize, plan.threads, plan.vec, plan.cached
        NV = D // vec
        KV = -(-NV // threads)
        state = RenderState()
        rows = per_row(p.outputs)
        reductions = [n for n in toposort(p.outputs) if n.op != "cast" and n.op in OPS and OPS[n.op].reduction]
        level: dict[Node, int] = {}
        for n in toposort(p.outputs):
            lv = max((level.get(a, 0) for a in n.args), default=0)
            level[n] = lv + 1 if n in reductions else lv
        used = set(toposort(p.outputs))  # an unused input (it may only fix the row shape) is not read
        full = [x for x, m in zip(p.inputs, plan.modes) if m == "full" and x in used]
        idx = "size_t" if plan.wide_index else self.uint
        u = self.uint
        R = plan.rows_per_group  # > 1 for short rows: one simdgroup per row, several rows per group
        # `top`: what the kernel declares once (shared memory included, which Metal wants at
        # function scope); `L`: the work for one row (looped over rows when the grid strides)
        top = [f"  // {p.name}: one row of {D} per threadgroup of {threads}, vectors of {vec}, "
               + (f"row held in registers ({KV * vec} per thread)" if cached else "row re-read per pass"),
               f"  constexpr int D = {D};",
               f"  const {u} lid = {self.local_id}{' % 32' if R > 1 else ''};"]
        if threads > 32:  # several simdgroups: partial results meet in shared memory, in their own type
            top += [f"  const {u} lane = lid % 32;",
                    f"  const {u} warp = lid / 32;"]
            for d in sorted({r.dtype for r in reductions if r.op != "fold"}, key=lambda d: d.name):
                top.append(f"  {self.shared} {self.ctype(d)} {_scratch(d)}[32];")
        group = self.index(self.group_id, idx)
        if plan.grid_stride:  # more rows than the grid can hold: each group loops over rows
            group = "group"
            top += self.row_count(p, plan, idx, R)
            top.append(f"  for ({idx} group = {self.index(self.group_id, idx)}; group < ngroups; "
                       f"group += {self.index(self.group_count, idx)}) {{")
        L = [f"  const {idx} row = {group}" + (f" * {R} + {self.local_id} / 32;" if R > 1 else ";")]
        if any(r.dtype.bits == 64 for r in reductions):
            state.helpers.add(SIMD64)
        names: dict[Node, str] = {q: f"{q.arg}[0]" for q in p.params}
        names[Node("rowsize", (), dt.int32)] = "D"
        elem_inputs, offset = [], {}
        for x, mode in zip(p.inputs, plan.modes):
            if mode in ("scalar", "per_row"):
                names[x] = f"{x.arg}[{'0' if mode == 'scalar' else 'row'}]"
            else:
                elem_inputs.append(x)
                offset[x] = f"{'row * D + ' if mode == 'full' else ''}v * {vec}"

        def vtype(d: dt.DType) -> str:
            return f"zmlx_vec<{self.ctype(d)}, {vec}>"

        space = {x: self.space(plan, i) for i, x in enumerate(p.inputs)}

        def load(x: Node, into: str, ind: str) -> None:
            if self.vector_struct:
                L.append(f"{ind}{into} = *(const {vtype(x.dtype)}*)({x.arg} + {offset[x]});")
            elif vec % 4 == 0 and x.dtype != dt.bool_:  # Metal: vec<T, 4> accesses (aligned struct)
                v4 = f"vec<{self.ctype(x.dtype)}, 4>"
                L.append(f"{ind}for (int q = 0; q < {vec}; q += 4) *({self.thread_ref} {v4}*)({into}.v + q) = "
                         f"*(const {space[x]}{v4}*)({x.arg} + {offset[x]} + q);")
            else:
                L.append(f"{ind}for (int j = 0; j < {vec}; ++j) {into}.v[j] = {x.arg}[{offset[x]} + j];")

        if cached:
            for x in full:
                L.append(f"  {vtype(x.dtype)} {x.arg}_r[{KV}];")
            L.append(f"  for (int k = 0; k < {KV}; ++k) {{")
            L.append(f"    const {u} v = lid + k * {threads};")
            L.append(f"    if (v < {NV}) {{")
            for x in full:
                load(x, f"{x.arg}_r[k]", "      ")
            L.append("    }")
            L.append("  }")

        def element_loop(targets: list[Node], emit_tail, before=None, after=None) -> None:
            """A loop over this thread's vectors and their elements computing targets; the per-row
            values they need are computed once, before the loop."""
            frontier = {a: None for n in toposort(targets, stop=names) if not rows.get(n, True)
                        for a in n.args if rows.get(a) and a.op not in LEAF_OPS and a not in names}
            if frontier:
                names.update(self.render_values(list(frontier), names, L, "  ", state, prefix="row_",
                                                name_roots=True))
            local = dict(names)
            if cached:
                L.append(f"  for (int k = 0; k < {KV}; ++k) {{")
                L.append(f"    const {u} v = lid + k * {threads};")
                L.append(f"    if (v < {NV}) {{")
            else:
                L.append(f"  for ({u} v = lid; v < {NV}; v += {threads}) {{")
                L.append("    {")
            for x in elem_inputs:
                if cached and x in full:
                    local[x] = f"{x.arg}_r[k].v[j]"
                elif any(x in toposort([t]) for t in targets):
                    L.append(f"      {vtype(x.dtype)} {x.arg}_c;")
                    load(x, f"{x.arg}_c", "      ")
                    local[x] = f"{x.arg}_c.v[j]"
            if before:
                before("      ")
            L.append(f"      for (int j = 0; j < {vec}; ++j) {{")
            vals = self.render_values(targets, local, L, "        ", state)
            emit_tail(vals, "        ")
            L.append("      }")
            if after:
                after("      ")
            L.append("    }")
            L.append("  }")

        def serial_fold(r: Node, name: str) -> None:
            """A fold (a non-associative `reduce` update): thread 0 of the row runs
            `acc = init; for i < D: acc = update(acc, operands at i);` reading the row from memory,
            then every thread of the row reads the result from threadgroup memory after a barrier
            (so later levels and the per-element outputs can use it)."""
            init, operands, lam = r.args[0], r.args[1:], r.arg
            elem = [o for o in operands if not rows[o]]
            frontier = {a: None for n in toposort(elem, stop=names) if not rows.get(n, True)
                        for a in n.args if rows.get(a) and a.op not in LEAF_OPS and a not in names}
            before = [v for v in [init, *[o for o in operands if rows[o]], *frontier] if v not in names]
            if before:  # per-row values the loop needs: computed (by every thread) before it
                names.update(self.render_values(before, names, L, "  ", state, prefix="row_", name_roots=True))
            ct = self.ctype(r.dtype)
            slot = "0" if plan.rows_per_group == 1 else f"{self.local_id} / 32"
            top.append(f"  {self.shared} {ct} zmlx_{name}[{plan.rows_per_group}];")
            L.append("  if (lid == 0) {  // a serial loop over the row: the update is not associative")
            L.append(f"    {ct} zmlx_{name}_acc = {names[init]};")
            L.append("    for (int zmlx_i = 0; zmlx_i < D; ++zmlx_i) {")
            local = dict(names)
            for x in elem_inputs:
                local[x] = f"{x.arg}[{'row * D + ' if x in full else ''}zmlx_i]"
            vals = self.render_values(elem, local, L, "      ", state, name_roots=True) if elem else local
            bind = {lam.params[0]: f"zmlx_{name}_acc"}
            bind.update({q: vals[o] for q, o in zip(lam.params[1:], operands)})
            step = self.render_values([lam.body], bind, L, "      ", state)
            L.append(f"      zmlx_{name}_acc = {step[lam.body]};")
            L.append("    }")
            L.append(f"    zmlx_{name}[{slot}] = zmlx_{name}_acc;")
            L.append("  }")
            L.append(f"  {self.barrier}")
            L.append(f"  const {ct} {name} = zmlx_{name}[{slot}];")
            names[r] = name

        max_level = max((level[r] for r in reductions), default=0)
        for lv in range(1, max_level + 1):
            group = [r for r in reductions if level[r] == lv and r.op != "fold"]
            accs = {}
            for j, r in enumerate(group):
                acc = f"{_short(r.op)}{lv}_{j}"
                accs[r] = acc
                L.append(f"  {self.ctype(r.dtype)} {acc} = {self.identity(r)};")

            def tail(vals, ind, group=group, accs=accs):
                for r in group:
                    L.append(f"{ind}{accs[r]} = {self.combine(r, accs[r], vals[r.args[0]], state)};")
            if group:
                element_loop([r.args[0] for r in group], tail)
            for r in group:
                L.extend(self.block_reduce(r, accs[r], threads))
                names[r] = accs[r]
            for j, r in enumerate(r for r in reductions if level[r] == lv and r.op == "fold"):
                serial_fold(r, f"fold{lv}_{j}")
        row_outputs = [(k, o) for k, o in enumerate(p.outputs) if rows[o]]
        elem_outputs = [(k, o) for k, o in enumerate(p.outputs) if not rows[o]]
        if row_outputs:
            vals = self.render_values([o for _, o in row_outputs], names, L, "  ", state, prefix="row_")
            L.append("  if (lid == 0) {")
            for k, o in row_outputs:
                L.append(f"    {self.out_name(k)}[row] = {vals[o]};")
            L.append("  }")
        if elem_outputs:
            def declare(ind):
                for k, o in elem_outputs:
                    L.append(f"{ind}{vtype(o.dtype)} res{k};")

            def store(vals, ind):
                for k, o in elem_outputs:
                    L.append(f"{ind}res{k}.v[j] = {vals[o]};")

            def write(ind):
                for k, o in elem_outputs:
                    dst = f"{self.out_name(k)} + row * D + v * {vec}"
                    if self.vector_struct:
                        L.append(f"{ind}*({vtype(o.dtype)}*)({dst}) = res{k};")
                    elif vec % 4 == 0 and o.dtype != dt.bool_:
                        v4 = f"vec<{self.ctype(o.dtype)}, 4>"
                        L.append(f"{ind}for (int q = 0; q < {vec}; q += 4) *({self.device_ptr} {v4}*)({dst} + q) = "
                                 f"*({self.thread_ref} {v4}*)(res{k}.v + q);")
                    else:
                        L.append(f"{ind}for (int j = 0; j < {vec}; ++j) ({dst})[j] = res{k}.v[j];")
            element_loop([o for _, o in elem_outputs], store, declare, write)
        if plan.grid_stride:  # the next row's writes to shared memory wait for this row's reads
            L = top + ["  " + line for line in L] + ([f"    {self.barrier}"] if any(t.startswith(f"  {self.shared} ") for t in top) else []) \
                + ["  }"]
        else:
            L = top + L
        simd = self.simd_helpers + (self.simd64_helpers if SIMD64 in state.helpers else "")
        state.helpers.discard(SIMD64)
        header = "\n".join(x for x in (self.vec_struct, simd.format(q=self.fn_qual),
                                         self.helper_text(state.helpers)) if x)
        return header + "\n", "\n".join(L) + "\n"

    def identity(self, r: Node) -> str:
        """The registry's neutral element of reduction r, spelled for r's dtype (limits for ints)."""
        value = OPS[r.op].identity
        if r.dtype == dt.bool_:
            return "true" if value > 0 else "false"
        if r.dtype.is_int and math.isinf(value):
            top = (1 << (r.dtype.bits - (r.dtype.kind == "i"))) - 1
            if value > 0:
                return self.literal(const(top, r.dtype))
            return "0u" if r.dtype.kind == "u" else f"(-{self.literal(const(top, r.dtype))} - 1)"
        return self.literal(const(value, r.dtype))

    def combine(self, r: Node, acc: str, v: Expr, state: RenderState) -> str:
        """acc combined with v (the text of r's operand) by reduction r, in the registry's
        spelling: a call, or `{0} + {1}`, where v binding looser than `+` is parenthesised
        (so `acc + (x > 0.0f)` keeps its meaning)."""
        template = self.spellings[r.op].template(r.dtype.kind)
        state.helpers.update(h.name for h in HELPERS.values() if h.name in template)
        if not _bare_argument(template, 1) and v.prec <= self.spellings["add"].prec:
            v = f"({v})"
        return template.format(acc, v)

    def block_reduce(self, r: Node, acc: str, threads: int) -> list[str]:
        """Reduce acc over the threadgroup: within each simdgroup, then across them via shared memory."""
        f = f"zmlx_simd_{r.op}"  # the backend's simd_helpers define one per associative reduction
        lines = [f"  {acc} = {f}({acc});"]
        if threads <= 32:
            return lines
        scratch = _scratch(r.dtype)
        return lines + [f"  if (lane == 0) {scratch}[warp] = {acc};",
                        f"  {self.barrier}",
                        f"  {acc} = {f}(lane < {threads // 32} ? {scratch}[lane] : {self.identity(r)});",
                        f"  {self.barrier}"]


def _bare_argument(template: str, i: int) -> bool:
    """Whether placeholder {i} only ever appears as a whole call argument (after `(` or `,`, before `,` or `)`)."""
    return all(template[:m.start()].rstrip().endswith(("(", ",")) and template[m.end():].lstrip().startswith((",", ")"))
               for m in re.finditer(r"\{%d\}" % i, template))


def _scratch(d: dt.DType) -> str:
    """The shared array through which simdgroups combine partial reductions of dtype d."""
    return "zmlx_scratch" if d == dt.float32 else f"zmlx_scratch_{d.name}"


def _short(op: str) -> str:
    return {"sigmoid": "sig", "where": "sel", "logical_and": "and", "logical_or": "or"}.get(op, op)
