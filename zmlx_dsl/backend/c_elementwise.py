"""The elementwise-kernel writer of the C renderer: each thread moves a few 16-byte vectors
(block-cyclic) when its arrays are row-contiguous, and indexes through strides otherwise."""
from __future__ import annotations

from typing import Callable

from ..ir import dtypes as dt
from ..ir.node import Node
from ..ir.program import Program
from .c_expr import RenderState
from .plan import Plan


def render_elementwise(c, p: Program, plan: Plan) -> tuple[str, str]:
    """(header, body) of an elementwise kernel for renderer c.

    Every non-scalar input has the output's shape (the launcher broadcasts views). When all are
    row-contiguous (checked at run time from their strides), each thread moves
    plan.vectors vectors with 16-byte accesses; otherwise it indexes through the strides."""
    state = RenderState()
    leaves = list(p.inputs) + list(p.params)
    params = [(n, n.arg) for n in leaves]
    fname = f"{p.kernel_name}_body"
    body_fn = c.body_function(fname, params, list(p.outputs), state)
    mode = dict(zip(p.inputs, plan.modes))
    arrays = [x for x in p.inputs if mode[x] != "scalar"]
    full = [x for x in arrays if mode[x] == "full"]
    per = plan.vec
    idx = "size_t" if plan.wide_index else c.uint
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
    block = c.index(c.group_id, idx)
    if plan.grid_stride:  # more blocks than one grid holds: each group loops over blocks
        top.append(f"  for ({idx} block = {block}; block * {V * step} < n; "
                   f"block += {c.index(c.group_count, idx)}) {{")
        block = "block"
    L.append(f"  const {idx} first = {block} * {V * step} + {c.index(c.local_id, idx)} * {per};")
    scalar_reads = {x: f"{x.arg}[0]" for x in p.inputs if mode[x] == "scalar"}
    scalar_reads.update({q: f"{q.arg}[0]" for q in p.params})
    dev = f"{c.device_ptr} " if c.device_ptr else ""
    space = {x: c.space(plan, i) for i, x in enumerate(p.inputs)}

    def position(x: Node, i: str) -> str:
        """Index into x's own elements of output element i."""
        j = i if i.isidentifier() else f"({i})"
        return {"full": i, "suffix": f"{j} % {x.arg}_size", "prefix": f"{j} / {x.arg}_run"}[mode[x]]

    def call(ind: str, element: Callable[[Node], str], dest: Callable[[int], str]) -> None:
        """One element: read each array with `element`, run the body, store output j at dest(j)."""
        for j, o in enumerate(p.outputs):
            L.append(f"{ind}{c.ctype(o.dtype)} res{j};")
        args = [element(x) if x in arrays else scalar_reads[x] for x in leaves]
        L.append(f"{ind}{fname}({', '.join(args + [f'res{j}' for j in range(len(p.outputs))])});")
        for j in range(len(p.outputs)):
            L.append(f"{ind}{dest(j)} = res{j};")

    # The fast path: the thread's V vectors are all in range and every array is row-contiguous.
    # All loads are issued before any store (a store could alias a later load, so the compiler
    # would not hoist it), so each thread has V 16-byte loads per array in flight.
    L.append(f"  if (contiguous && first + {(V - 1) * step + per} <= n) {{")
    vt = None
    if c.vector_struct:  # one aligned 16-byte access per array and vector
        vt, width, item = (lambda d: f"zmlx_vec<{c.ctype(d)}, {per}>"), per, ".v[k]"
    elif per % 4 == 0 and not any(a.dtype == dt.bool_ for a in full + list(p.outputs)):
        # Metal: vectors are at most 4 wide, so 16 bytes are per/4 vec<T, 4> (bool arrays take
        # the scalar loop: clang, which metal-sim compiles with, crashes on bool vectors)
        vt, width, item = (lambda d: f"vec<{c.ctype(d)}, 4>"), 4, "[k]"
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
            L.append(f"      *({dev}{vt(o.dtype)}*)({c.out_name(j)} + {at}) = res{j}_v;")
        L.append("    }")
    else:  # 8-byte types (two elements per 16 bytes) and bool: plain accesses
        L.append(f"    for (int c = 0; c < {V}; ++c) {{")
        L.append(f"      for (int k = 0; k < {per}; ++k) {{")
        L.append(f"        const {idx} i = first + c * {step} + k;")
        call("        ", lambda x: f"{x.arg}[{position(x, 'i')}]", lambda j: f"{c.out_name(j)}[i]")
        L.append("      }")
        L.append("    }")
    # The rest: the last threads of the grid and strided (non-contiguous) inputs, per element.
    L.append("  } else {")
    L.append(f"    for (int c = 0; c < {V}; ++c) {{")
    L.append(f"      const {idx} base = first + c * {step};")
    L.append(f"      for ({idx} i = base; i < n && i < base + {per}; ++i) {{")
    call("        ", lambda x: f"{x.arg}[contiguous ? {position(x, 'i')} : "
         f"zmlx_loc({position(x, 'i')}, {x.arg}_shape, {x.arg}_strides, {x.arg}_ndim)]",
         lambda j: f"{c.out_name(j)}[i]")
    L.append("      }")
    L.append("    }")
    L.append("  }")
    L = top + (["  " + line for line in L] + ["  }"] if plan.grid_stride else L)
    header = "\n".join(x for x in (c.common_header(), c.helper_text(state.helpers), body_fn) if x)
    return header + "\n", "\n".join(L) + "\n"
