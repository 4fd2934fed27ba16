"""One C-style renderer for every C backend: IR -> kernel source for MLX's custom-kernel APIs.

Metal and CUDA subclass `CStyle` and differ only in data and a few hooks (type names, qualifiers,
thread indices, barrier and simd spellings) — tinygrad's renderer/cstyle.py is the model.
A kernel is (header, body): the header holds the helpers the ops need and one `<name>_body`
function computing the program per element; the body is the launch logic MLX wraps.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from ..ir import dtypes as dt
from ..ir.node import LEAF_OPS, Node, toposort
from ..ir.program import Program
from .c_elementwise import render_elementwise
from .c_expr import ATOM, Expr, RenderState, bare_argument, short_name
from .c_ops import FAST_SPELLINGS, HELPERS, SPELLINGS, Spelling, helper_deps
from .c_rows import RowWriter
from .plan import Plan


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
    warp_barrier: str               # orders shared memory within a simdgroup (warp) only
    shuffle_up: str                 # "{0} from the lane {1} below" (lanes below {1} keep their own)
    ushort: str                     # 16-bit unsigned type (a sort's positions)
    shared_memory: int              # bytes of block-shared memory a kernel may declare
    simd_helpers = ""               # zmlx_simd_<reduction> for the types collectives take natively
    simd64_helpers = ""             # and for 64-bit integers, where the backend needs more
    uint = "uint"                   # 32-bit unsigned index type
    vector_struct = False           # fast path through an aligned 16-byte struct (else scalar accesses)
    fast_exp2 = "exp2"              # the exp2 the fast_math helpers call (c_ops.FAST_SPELLINGS)
    fast_divide = "a / b"           # their division of a by b (Metal: its `/`; CUDA: __fdividef)
    fast_math = False               # whether exp, erf, tanh, sigmoid take the fast spellings

    def fast(self) -> "CStyle":
        """This renderer with the fast_math spellings (one copy, made on first use)."""
        twin = self.__dict__.get("_fast")
        if twin is None:
            twin = self.__dict__["_fast"] = copy.copy(self)
            twin.spellings = {**self.spellings, **FAST_SPELLINGS}
            twin.fast_math = True
        return twin

    def for_program(self, p: Program, fast_math: Optional[bool]) -> "CStyle":
        """The renderer of a program: fast_math as given, else (None) fast when the program has
        float outputs and all are 16-bit (the fast path's error is far below their rounding)."""
        if fast_math is None:
            floats = [o.dtype for o in p.outputs if o.dtype.is_float]
            fast_math = bool(floats) and all(d.bits == 16 for d in floats)
        return self.fast() if fast_math else self

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
        if np.isnan(v):  # (const() holds the value rounded to its dtype: inf past its range)
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
                name = state.temp(f"{prefix}{short_name(n.op)}")  # `log_10`: `log10` is a C function
                lines.append(f"{indent}const {self.ctype(n.dtype)} {name} = {text};")
                expr[n] = Expr(name)
            else:
                expr[n] = text
        return expr

    def _op_text(self, n: Node, expr: dict[Node, "Expr"], state: "RenderState") -> "Expr":
        if n.op == "cast":
            return Expr(self.cast(expr[n.args[0]], n.args[0].dtype, n.dtype))
        if n.op == "where" and n.args[1] is n.args[2]:  # a value filled into a row (mx.full((n,), v)):
            return expr[n.args[1]]                      # the select only carries the row's length
        op = self.spellings.get(n.op)
        if op is None:
            raise NotImplementedError(f"op {n.op} has no C spelling")
        template = op.template(n.args[0].dtype.kind if n.op != "where" else n.dtype.kind)
        if template == "{0}":  # the identity (stop_gradient, floor of an integer): its operand as is
            return expr[n.args[0]]
        self.note_helpers(template, state)
        parts = []
        for i, a in enumerate(n.args):
            text = expr[a]
            aprec = text.prec
            repeated = template.count("{%d}" % i) > 1
            # at equal precedence: the right operand of a left-associative operator, every operand
            # of `?:` (`(a ? b : c) ? d : e` is not `a ? b : c ? d : e`, which is `a ? b : (c ? d : e)`)
            tied = n.op == "where" or i > 0
            needs = op.prec and aprec != ATOM and (aprec < op.prec or (aprec == op.prec and tied) or op.prec >= 6)
            if repeated and aprec != ATOM:
                needs = True
            if not op.prec and aprec != ATOM and not bare_argument(template, i):
                needs = True  # an operand of an infix expression inside a call, e.g. floor({0} / {1})
            parts.append(f"({text})" if needs else text)
        return Expr(template.format(*parts), op.prec or ATOM)

    def note_helpers(self, template: str, state: RenderState) -> None:
        """Record the helper functions a spelling calls (emitted once, in the header)."""
        state.helpers.update(h.name for h in HELPERS.values() if h.name in template)

    def helper_text(self, names: set[str]) -> str:
        out, done = [], set()

        def emit(name):
            if name in done:
                return
            for dep in helper_deps(name):
                emit(dep)
            done.add(name)
            out.append(HELPERS[name].code.format(q=self.fn_qual, exp2=self.fast_exp2, fdiv=self.fast_divide))
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
        """(header, body) of an elementwise kernel (see c_elementwise)."""
        return render_elementwise(self, p, plan)

    def row(self, p: Program, plan: Plan) -> tuple[str, str]:
        """(header, body) of a row kernel (see c_rows)."""
        return RowWriter(self, p, plan).render()

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
