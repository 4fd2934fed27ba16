"""Launching rendered C kernels through an MLX custom-kernel factory (Metal, metal-sim or CUDA).

Kernels are specialised per launch plan (how each input is read, 64-bit indexing, row length),
cached per plan; the per-call path is shape arithmetic and one dictionary lookup.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from typing import Callable, Sequence

import mlx.core as mx

from ..ir.autodiff import per_row
from ..ir.node import Node
from ..ir.passes import rewrite
from ..ir.program import Program
from ..ir.registry import OPS
from . import mlx as portable
from .metal_source import MAX_CONSTANT_ARRAY_SIZE as METAL_CONSTANT_SIZE
from . import cstyle
from .cstyle import CStyle, Plan, _short

# Names the generated kernels use for their own locals (and C keywords): user names are suffixed.
RESERVED = {"base", "n", "contiguous", "first", "c", "q", "i", "j", "k", "v", "row", "lid", "lane", "warp",
            "D", "int", "float",
            "half", "bool", "uint", "long", "char", "short", "double", "auto", "const", "device",
            "thread", "threadgroup", "constant", "kernel", "vec", "signed", "unsigned", "void",
            "return", "if", "else", "for", "while", "do", "switch", "case", "default", "break",
            "continue", "struct", "union", "enum", "static", "inline", "template", "typename",
            "using", "namespace", "class", "true", "false", "this", "operator", "new", "delete",
            "sizeof", "volatile", "register", "extern", "goto", "typedef", "bfloat", "uint3", "float4"}


def _temporary(name: str) -> bool:
    """A name of the renderer's temporaries or accumulators: an op's (short) name and a counter,
    e.g. `exp_0`, `sig_3`, `max1_0`."""
    m = re.fullmatch(r"([a-z_]+?)_?(\d+)(?:_\d+)?", name)
    return bool(m) and (m.group(1) in OPS or m.group(1) in {_short(op) for op in OPS})


def c_safe(p: Program) -> Program:
    """The program with input/param names that cannot clash with generated code or C keywords."""
    leaves = p.inputs + p.params
    if not any(n.arg in RESERVED or n.arg.startswith(("out", "res", "zmlx", "row_")) or _temporary(n.arg)
               for n in leaves):
        return p
    ren = {n: Node(n.op, (), n.dtype, n.arg + "_") for n in leaves}
    outs = rewrite(p.outputs, lambda n: ren.get(n, n))
    return Program(p.name, p.kind, tuple(ren[n] for n in p.inputs), tuple(ren[n] for n in p.params), tuple(outs))


def row_mode(x: mx.array, shape: tuple) -> str:
    """How a row kernel reads an input broadcast to `shape` without materialising the broadcast:
    full rows, one row shared by all (a (D,) weight), one value per row ((B, 1)), or one scalar."""
    if x.shape == shape:
        return "full"
    if x.size == 1:
        return "scalar"
    if x.shape[-1] == shape[-1] and x.size == shape[-1]:
        return "shared"
    lead = (1,) * (len(shape) - x.ndim) + x.shape[:-1]
    return "per_row" if x.shape[-1] == 1 and lead == shape[:-1] else "full"


def row_view(x: mx.array, mode: str, shape: tuple) -> mx.array:
    """The array a row launch passes for input x read in `mode` (see row_mode)."""
    if mode == "full":
        return x if x.shape == shape else mx.broadcast_to(x, shape)
    if mode == "scalar":
        return x.reshape((1,))
    return x.reshape((shape[-1],) if mode == "shared" else (math.prod(shape[:-1]),))


def elementwise_modes(inputs: Sequence[mx.array], shape: tuple) -> list[str]:
    """How an elementwise launch over `shape` reads each input (see Plan.modes): broadcasts along
    leading or trailing dims are read in place, other broadcasts through stride-0 views; one
    array, at least, carries the full shape."""
    modes = [elementwise_mode(x, shape) for x in inputs]
    if "full" not in modes:
        modes[next((i for i, m in enumerate(modes) if m != "scalar"), 0)] = "full"
    return modes


def elementwise_view(x: mx.array, mode: str, shape: tuple) -> mx.array:
    """The array an elementwise launch passes for input x read in `mode`."""
    if mode == "scalar" or (mode == "full" and not shape):
        return x.reshape((1,))
    if mode == "full" and x.shape != shape:
        return mx.broadcast_to(x, shape)
    return x


def elementwise_plan(inputs: Sequence[mx.array], shape: tuple) -> tuple[list[mx.array], Plan]:
    """The input views and the plan of an elementwise launch over `shape`."""
    modes = elementwise_modes(inputs, shape)
    views = [elementwise_view(x, m, shape) for x, m in zip(inputs, modes)]
    return views, Plan(tuple(modes), math.prod(shape) >= 2**31,
                       in_constant=tuple(x.size < METAL_CONSTANT_SIZE for x in views))


def elementwise_mode(x: mx.array, shape: tuple) -> str:
    """How an elementwise kernel reads input x broadcast to `shape` (see Plan.modes)."""
    if x.size == 1:
        return "scalar"
    if x.shape == shape:
        return "full"
    dims = list(x.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    if tuple(dims) == shape[len(shape) - len(dims):]:
        return "suffix"
    padded = (1,) * (len(shape) - x.ndim) + tuple(x.shape)
    k = len(padded)
    while k and padded[k - 1] == 1:
        k -= 1
    return "prefix" if padded[:k] == shape[:k] else "full"


def grid_groups(groups: int, group_threads: int) -> int:
    """How many groups of `group_threads` to launch for `groups` of work: all of them, or as many
    as one grid holds (cstyle.MAX_GRID_THREADS), each then looping over its share."""
    return min(groups, max(1, cstyle.MAX_GRID_THREADS // group_threads))


def source_name(p: Program, header: str, body: str) -> str:
    """The name MLX gets for one kernel text: the program's name plus a digest of the text. MLX
    caches compiled kernels by name (CUDA's JIT module cache by the name alone), and one program
    has a different text per launch plan (row length, size-1 inputs, 64-bit indexing)."""
    digest = hashlib.sha256(f"{header}\0{body}".encode()).hexdigest()[:8]
    return f"{p.kernel_name}_{digest}"


class Launcher:
    """Runs one program with a renderer and a kernel factory (mx.fast.metal_kernel's signature)."""

    def __init__(self, program: Program, renderer: CStyle, factory: Callable, target: str) -> None:
        self.program = c_safe(program)
        self.renderer = renderer
        self.factory = factory
        self.target = target
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

    def __call__(self, arrays: Sequence[mx.array]) -> list[mx.array]:
        n_in = len(self.program.inputs)
        inputs, params = list(arrays[:n_in]), [q.reshape((1,)) for q in arrays[n_in:]]
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
        if launch is None:  # once per shape signature: the plan, the kernel and the grid
            shape = tuple(mx.broadcast_shapes(*[x.shape for x in inputs]))
            size = math.prod(shape)
            if size == 0:
                return [mx.zeros(shape, o.dtype.mx) for o in p.outputs]
            _, plan = elementwise_plan(inputs, shape)
            kernel, per = self.kernel(p, plan)
            threads = cstyle.THREADS
            groups = -(-size // (per * threads))
            if grid_groups(groups, threads) < groups:
                plan = dataclasses.replace(plan, grid_stride=True)
                kernel, _ = self.kernel(p, plan)
            launch = self.launches[key] = (shape, plan.modes, kernel, [shape] * len(p.outputs),
                                           [o.dtype.mx for o in p.outputs],
                                           (grid_groups(groups, threads) * threads, 1, 1), (threads, 1, 1))
        shape, modes, kernel, out_shapes, out_dtypes, grid, group = launch
        args = [elementwise_view(x, m, shape) for x, m in zip(inputs, modes)]
        return kernel(inputs=args + params, output_shapes=out_shapes, output_dtypes=out_dtypes, grid=grid,
                      threadgroup=group)

    def rows(self, inputs: list, params: list) -> list[mx.array]:
        key = tuple(x.shape for x in inputs)
        launch = self.launches.get(key)
        if launch is None:  # once per shape signature: the plan, the kernel and the grid
            p = self.program
            shape = tuple(mx.broadcast_shapes(*key))
            nrows = math.prod(shape[:-1])
            if shape[-1] == 0 or nrows == 0:
                return self.portable(inputs, params)
            _, plan, threads = self.row_plan(inputs, shape)
            kernel, _ = self.kernel(p, plan)
            group = threads * plan.rows_per_group
            launch = self.launches[key] = (
                shape, plan.modes, kernel, [shape[:-1] + (1,) if self.row_flags[o] else shape for o in p.outputs],
                [o.dtype.mx for o in p.outputs], (grid_groups(nrows // plan.rows_per_group, group) * group, 1, 1),
                (group, 1, 1))
        shape, modes, kernel, out_shapes, out_dtypes, grid, group = launch
        views = [row_view(x, m, shape) for x, m in zip(inputs, modes)]
        return kernel(inputs=views + params, output_shapes=out_shapes, output_dtypes=out_dtypes, grid=grid,
                      threadgroup=group)

    def row_plan(self, inputs: list, shape: tuple) -> tuple[list, Plan, int]:
        """How to launch rows of `shape`: the input views, the plan and threads per row."""
        modes = [row_mode(x, shape) for x in inputs]
        inputs = [row_view(x, m, shape) for x, m in zip(inputs, modes)]
        nrows = math.prod(shape[:-1])
        plan = Plan(tuple(modes), math.prod(shape) >= 2**31, shape[-1],
                    in_constant=tuple(x.size < METAL_CONSTANT_SIZE for x in inputs))
        threads = self.renderer.row_threads(self.program, plan)
        if threads == 32:  # one simdgroup per row: pack up to 8 rows (a divisor of nrows) per group
            plan = dataclasses.replace(plan, rows_per_group=math.gcd(nrows, 8))
        groups = nrows // plan.rows_per_group
        if grid_groups(groups, threads * plan.rows_per_group) < groups:
            plan = dataclasses.replace(plan, grid_stride=True)
        return list(inputs), plan, threads

    def portable(self, inputs, params):
        if self.fallback is None:
            self.fallback = portable.compile(self.program)
        return self.fallback(inputs + [q.reshape(()) for q in params])

    def render(self, p: Program, plan: Plan) -> tuple[str, str, int]:
        """(header, body, elements per thread) for a plan."""
        if p.kind == "row":
            header, body = self.renderer.row(p, plan)
            return header, body, 1
        return self.renderer.elementwise(p, plan)

    def kernel(self, p: Program, plan: Plan):
        key = (p.outputs, plan)
        hit = self.kernels.get(key)
        if hit is None:
            header, body, per = self.render(p, plan)
            k = self.factory(name=source_name(p, header, body), input_names=[x.arg for x in p.inputs + p.params],
                             output_names=[self.renderer.out_name(i) for i in range(len(p.outputs))],
                             source=body, header=header,
                             ensure_row_contiguous=p.kind == "row")
            hit = self.kernels[key] = (k, per)
        return hit

    def source(self, arrays: Sequence[mx.array], full: Callable) -> str:
        """The full kernel text(s) for these inputs, as the factory would compile them."""
        n_in = len(self.program.inputs)
        inputs = list(arrays[:n_in])
        texts = []
        p = self.program
        if p.kind == "row":
            inputs, plan, _ = self.row_plan(inputs, tuple(mx.broadcast_shapes(*[x.shape for x in inputs])))
            groups = [(p, inputs, plan)]
        else:
            groups = []
            for deps, ks, sub in self.groups:
                xs = [inputs[i] for i in deps]
                groups.append((sub, *elementwise_plan(xs, tuple(mx.broadcast_shapes(*[x.shape for x in xs])))))
        for sub, xs, plan in groups:
            header, body, _ = self.render(sub, plan)
            params = [mx.zeros((1,), q.dtype.mx) for q in sub.params]
            texts.append(full(sub, source_name(sub, header, body), header, body, xs + params,
                              [self.renderer.out_name(i) for i in range(len(sub.outputs))]))
        return "\n".join(texts)
