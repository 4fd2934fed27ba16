"""Launching rendered C kernels through an MLX custom-kernel factory (Metal, metal-sim or CUDA).

Kernels are specialised per launch plan (how each input is read, 64-bit indexing, row length),
cached per plan; the per-call path is shape arithmetic and one dictionary lookup.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Optional, Sequence

import mlx.core as mx

from ..ir import dtypes as dt
from ..ir.build import cast
from ..ir.node import Node
from ..ir.passes import rewrite
from ..ir.rows import per_row
from ..ir.program import Program, stable_name
from ..ir.registry import OPS
from . import mlx as portable
from . import plan as plans
from .base import sum_rows
from .c_expr import short_name
from .cstyle import CStyle
from .plan import Plan

# Names the generated kernels use for their own locals (and C keywords): user names are suffixed.
RESERVED = {"base", "n", "contiguous", "first", "c", "q", "i", "j", "k", "v", "row", "lid", "lane", "warp",
            "D", "d", "group", "block", "nrows", "ngroups", "int", "float",
            "half", "bool", "uint", "long", "char", "short", "double", "auto", "const", "device",
            "thread", "threadgroup", "constant", "kernel", "vec", "signed", "unsigned", "void",
            "return", "if", "else", "for", "while", "do", "switch", "case", "default", "break",
            "continue", "struct", "union", "enum", "static", "inline", "template", "typename",
            "using", "namespace", "class", "true", "false", "this", "operator", "new", "delete",
            "sizeof", "volatile", "register", "extern", "goto", "typedef", "bfloat", "uint3", "float4"}


def called(renderer: CStyle) -> set[str]:
    """The functions a renderer's spellings call (`exp`, `sin`, `zmlx_fmax`...): an input of that
    name would shadow the function in the kernel."""
    names: set[str] = set()
    for sp in renderer.spellings.values():
        for t in sp.text.values() if isinstance(sp.text, dict) else [sp.text]:
            names.update(re.findall(r"([A-Za-z_]\w*)\s*\(", t))
    return names


def _temporary(name: str) -> bool:
    """A name of the renderer's temporaries or accumulators: an op's (short) name and a counter,
    e.g. `exp_0`, `sig_3`, `max1_0`."""
    m = re.fullmatch(r"([a-z_]+?)_?(\d+)(?:_\d+)?", name)
    return bool(m) and (m.group(1) in OPS or m.group(1) in {short_name(op) for op in OPS})


def c_safe(p: Program, renderer: CStyle) -> Program:
    """The program with input/param names that cannot clash with generated code, C keywords or the
    functions the renderer calls."""
    leaves = p.inputs + p.params
    taken = RESERVED | called(renderer)
    if not any(n.arg in taken or n.arg.startswith(("out", "res", "zmlx", "row_")) or _temporary(n.arg)
               for n in leaves):
        return p
    ren = {n: Node(n.op, (), n.dtype, n.arg + "_") for n in leaves}
    outs = rewrite(p.outputs, lambda n: ren.get(n, n))
    return Program(p.name, p.kind, tuple(ren[n] for n in p.inputs), tuple(ren[n] for n in p.params), tuple(outs),
                   p.lengths)


def source_name(p: Program, header: str, body: str) -> str:
    """The name MLX gets for one kernel text: the program's name plus a digest of the text. MLX
    caches compiled kernels by name (CUDA's JIT module cache by the name alone), and one program
    has a different text per launch plan (row length, size-1 inputs, 64-bit indexing)."""
    return stable_name(p.kernel_name, header, body, length=8)


def accumulated(o: Node) -> Node:
    """What a sum of output o over the rows accumulates: o's value before its cast to a narrower
    type, and at least float32."""
    if o.op == "cast" and o.args[0].dtype.bits > o.dtype.bits:
        o = o.args[0]
    return cast(o, dt.float32) if o.dtype.is_float and o.dtype.bits < 32 else o


class Launcher:
    """Runs one program with a renderer and a kernel factory (mx.fast.metal_kernel's signature)."""

    def __init__(self, program: Program, renderer: CStyle, factory: Callable, target: str) -> None:
        self.program = c_safe(program, renderer)
        self.renderer = renderer
        self.factory = factory
        self.target = target
        self.eager = target == "metal-sim"  # its kernels run on the host when called (constant outputs)
        self.kernels: dict = {}
        self.launches: dict = {}  # input shapes -> what a launch needs but the arrays (see rows/elementwise)
        self.fallback = None
        p = self.program
        self.row_flags = per_row(p.outputs) if p.kind == "row" else {}
        groups: dict[tuple, list[int]] = {}
        for k, o in enumerate(p.outputs):
            groups.setdefault(p.depends(o), []).append(k)
        # elementwise outputs reading different inputs have different shapes: one launch per group
        self.groups = [(deps, ks, Program(p.name, p.kind, tuple(p.inputs[i] for i in deps), p.params,
                                          tuple(p.outputs[k] for k in ks))) for deps, ks in groups.items()]

    def split(self, arrays: Sequence[mx.array]) -> tuple[list, list]:
        """(inputs, params): the params as the (1,) arrays a kernel reads them from."""
        n_in = len(self.program.inputs)
        return list(arrays[:n_in]), [q.reshape((1,)) for q in arrays[n_in:]]

    def __call__(self, arrays: Sequence[mx.array]) -> list[mx.array]:
        inputs, params = self.split(arrays)
        if self.program.kind == "row":
            return self.rows(inputs, params)
        outs: list = [None] * len(self.program.outputs)
        for deps, ks, sub in self.groups:
            for k, o in zip(ks, self.elementwise(sub, [inputs[i] for i in deps], params)):
                outs[k] = o
        return outs

    def elementwise(self, p: Program, inputs: list, params: list) -> list[mx.array]:
        if not inputs:  # outputs that read no array (mx.maximum(1.5, 2.5)): 0-d, as MLX ops give
            return portable.to_mlx(p)(*[q.reshape(()) for q in params])
        key = (p.outputs,) + tuple(x.shape for x in inputs)
        launch = self.launches.get(key)
        if launch is None:  # once per shape signature: the plan and the kernel
            shape = tuple(mx.broadcast_shapes(*[x.shape for x in inputs]))
            if math.prod(shape) == 0:
                return [mx.zeros(shape, o.dtype.mx) for o in p.outputs]
            _, plan = plans.elementwise_plan(p, inputs, shape)
            launch = self.launches[key] = (shape, plan.modes, self.kernel(p, plan), [shape] * len(p.outputs),
                                           [o.dtype.mx for o in p.outputs], plan.grid, (plan.group_threads, 1, 1))
        shape, modes, kernel, out_shapes, out_dtypes, grid, group = launch
        args = [plans.elementwise_view(x, m, shape) for x, m in zip(inputs, modes)]
        return kernel(inputs=args + params, output_shapes=out_shapes, output_dtypes=out_dtypes, grid=grid,
                      threadgroup=group)

    def rows(self, inputs: list, params: list) -> list[mx.array]:
        key = tuple(x.shape for x in inputs)
        launch = self.launches.get(key)
        if launch is None:  # once per shape signature: the plan and the kernel
            p = self.program
            lead, lengths = self.row_grid(inputs)
            if min(lengths) == 0 or math.prod(lead) == 0:
                return self.portable(inputs, params)
            _, plan = self.row_plan(inputs)
            if plan.as_ops:
                return self.portable(inputs, params)
            out_lengths = p.output_lengths() if p.lengths else [lengths[0]] * len(p.outputs)
            launch = self.launches[key] = (
                lead, lengths, plan.modes, plan.row_index, self.kernel(p, plan),
                [lead + (1 if self.row_flags[o] else n,) for o, n in zip(p.outputs, out_lengths)],
                [o.dtype.mx for o in p.outputs], plan.grid, (plan.group_threads, 1, 1))
        return self.launch_rows(launch, inputs, params)

    @staticmethod
    def launch_rows(launch: tuple, inputs: list, params: list) -> list[mx.array]:
        """A row kernel launched as `launch` (what rows() or row_sum_launch() planned) on these arrays."""
        lead, lengths, modes, index, kernel, out_shapes, out_dtypes, grid, group = launch
        views = [plans.row_view(x, m, lead, n, i) for x, m, n, i in zip(inputs, modes, lengths, index)]
        return kernel(inputs=views + params, output_shapes=out_shapes, output_dtypes=out_dtypes, grid=grid,
                      threadgroup=group)

    def row_summed(self, arrays: Sequence[mx.array], summed: tuple[int, ...]) -> list[mx.array]:
        """The outputs, those in `summed` summed over the rows (shape (1, ..., 1, D), see
        base.sum_rows): accumulated in float32 in the kernel, one row of partial sums per group then
        added up here, where plan.row_sum_plan allows; else written as rows and summed."""
        inputs, params = self.split(arrays)
        key = (summed,) + tuple(x.shape for x in inputs)
        if key not in self.launches:  # once per shape signature, as rows()
            self.launches[key] = self.row_sum_launch(inputs, summed)
        launch = self.launches[key]
        if launch is None:
            return [sum_rows(o) if k in summed else o for k, o in enumerate(self.rows(inputs, params))]
        ones = (1,) * len(launch[0])  # the row grid's axes, kept
        return [o.sum(axis=0).astype(p.dtype.mx).reshape(ones + o.shape[-1:]) if k in summed else o
                for k, (o, p) in enumerate(zip(self.launch_rows(launch, inputs, params), self.program.outputs))]

    def row_sum_launch(self, inputs: list, summed: tuple[int, ...]):
        """What a launch summing `summed` in the kernel needs but the arrays, or None where it cannot."""
        variant = self.row_sum_variant(inputs, summed)
        if variant is None:
            return None
        q, plan = variant
        lead, lengths = self.row_grid(inputs)
        out_lengths = q.output_lengths() if q.lengths else [lengths[0]] * len(q.outputs)
        shapes = [(plan.groups * plan.rows_per_group, n) if k in summed else lead + (1 if self.row_flags[o] else n,)
                  for k, (o, n) in enumerate(zip(self.program.outputs, out_lengths))]
        return (lead, lengths, plan.modes, plan.row_index, self.kernel(q, plan), shapes,
                [o.dtype.mx for o in q.outputs], plan.grid, (plan.group_threads, 1, 1))

    def row_sum_variant(self, inputs: list, summed: tuple[int, ...]) -> Optional[tuple[Program, Plan]]:
        """The program and plan of a launch summing outputs `summed` over the rows in the kernel
        (plan.row_sum_plan), or None where it cannot."""
        p = self.program
        lead, lengths = self.row_grid(inputs)
        if min(lengths) == 0 or math.prod(lead) == 0:
            return None
        plan = plans.row_sum_plan(p, self.row_plan(inputs)[1], summed, math.prod(lead))
        if plan is None:
            return None
        outs = tuple(accumulated(o) if k in summed else o for k, o in enumerate(p.outputs))
        return Program(p.name, p.kind, p.inputs, p.params, outs, p.lengths), plan

    def row_grid(self, inputs: list) -> tuple[tuple, tuple]:
        """The row grid and each input's row length: a program with row lengths broadcasts its
        inputs' leading axes; one without (a string kernel) broadcasts every axis."""
        p = self.program
        if p.lengths:
            return tuple(mx.broadcast_shapes(*[x.shape[:-1] for x in inputs])), p.lengths
        shape = tuple(mx.broadcast_shapes(*[x.shape for x in inputs]))
        return shape[:-1], (shape[-1],) * len(inputs)

    def row_plan(self, inputs: list) -> tuple[list, Plan]:
        """The input views and the plan of a row launch."""
        lead, lengths = self.row_grid(inputs)
        return plans.row_plan(self.program, inputs, lead, lengths, self.renderer.register_budget)

    def portable(self, inputs, params):
        """The launch as MLX ops: behind stop_gradient, as a kernel's outputs are (the custom
        function around it gives every derivative; mx.jvp, which walks inside it, must not
        differentiate these ops, some of which MLX cannot: cummax's forward mode)."""
        if self.fallback is None:
            self.fallback = portable.compile(self.program)
        return self.fallback([mx.stop_gradient(x) for x in inputs] + [mx.stop_gradient(q.reshape(())) for q in params])

    def render(self, p: Program, plan: Plan) -> tuple[str, str]:
        """(header, body) of the kernel a plan describes."""
        return self.renderer.row(p, plan) if p.kind == "row" else self.renderer.elementwise(p, plan)

    def kernel(self, p: Program, plan: Plan):
        key = (p.outputs, plan)
        hit = self.kernels.get(key)
        if hit is None:
            header, body = self.render(p, plan)
            hit = self.kernels[key] = self.factory(
                name=source_name(p, header, body), input_names=[x.arg for x in p.inputs + p.params],
                output_names=[self.renderer.out_name(i) for i in range(len(p.outputs))], source=body,
                header=header, ensure_row_contiguous=p.kind == "row")
        return hit

    def source(self, arrays: Sequence[mx.array], full: Callable, summed: tuple[int, ...] = ()) -> str:
        """The full kernel text(s) for these inputs, as the factory would compile them (with the
        outputs `summed` over the rows where the launch sums them, see row_summed)."""
        n_in = len(self.program.inputs)
        inputs = list(arrays[:n_in])
        texts = []
        p = self.program
        if p.kind == "row":
            views, plan = self.row_plan(inputs)
            if plan.as_ops:
                return (f"// {p.name}: no kernel for these shapes; it runs as MLX ops (a value compared with its\n"
                        f"// row's max or min is computed once only in a row held in registers)\n")
            p, plan = (self.row_sum_variant(inputs, summed) if summed else None) or (p, plan)
            groups = [(p, views, plan)]
        else:
            groups = []
            for deps, ks, sub in self.groups:
                xs = [inputs[i] for i in deps]
                groups.append((sub, *plans.elementwise_plan(sub, xs, tuple(mx.broadcast_shapes(*[x.shape for x in xs])))))
        for sub, xs, plan in groups:
            header, body = self.render(sub, plan)
            params = [mx.zeros((1,), q.dtype.mx) for q in sub.params]
            texts.append(full(sub, source_name(sub, header, body), header, body, xs + params,
                              [self.renderer.out_name(i) for i in range(len(sub.outputs))]))
        return "\n".join(texts)
