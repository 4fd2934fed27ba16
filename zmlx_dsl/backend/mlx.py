"""The portable backend: IR evaluated as MLX ops under mx.compile (any device, the CPU included)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import mlx.core as mx

from ..ir.evaluate import evaluate
from ..ir.node import Node
from ..ir.program import Program
from ..ir.registry import OPS
from .base import BackendFunctions

name = "mlx"


def to_mlx(program: Program) -> Callable[..., list[mx.array]]:
    """A plain function (inputs..., params...) -> outputs computing the program with MLX ops.

    Row programs take rows on the last axis: their array inputs are broadcast together first, over
    their leading axes where the program has row lengths (each keeps its own row), else over every
    axis (a (B, 1) input of a string kernel is a row of D equal values); reductions keep the row
    axis, so per-row values broadcast back as the kernel semantics say. Integer and bool inputs pass
    through mx.stop_gradient: differentiated by MLX, they get zero gradients as on every backend
    (MLX would push a float cotangent through astype and truncate it)."""
    leaves = program.inputs + program.params
    n_in = len(program.inputs)
    discrete = [not x.dtype.is_float for x in program.inputs]

    def run(*arrays: mx.array) -> list[mx.array]:
        if program.kind == "row" and n_in:
            arrays = broadcast_rows(program, arrays[:n_in]) + tuple(arrays[n_in:])
        if any(discrete):
            arrays = tuple(mx.stop_gradient(a) if d else a for a, d in zip(arrays, discrete)) + tuple(arrays[n_in:])
        env = dict(zip(leaves, arrays))

        def leaf(n: Node):
            if n.op == "const":
                return mx.array(n.arg, dtype=n.dtype.mx)
            if n.op == "rowsize":
                return mx.array(max(a.shape[-1] for a in arrays[:len(program.inputs)]), dtype=n.dtype.mx)
            if n.op == "index":
                return mx.arange(n.arg, dtype=n.dtype.mx)
            return env[n]

        outs = _evaluate(program.outputs, leaf)
        if program.lengths and n_in:  # an output that reads no input still has every row
            outs = [grid_shaped(program, o, arrays[:n_in]) for o in outs]
        seen: set = set()
        for k, (o, node) in enumerate(zip(outs, program.outputs)):
            if id(o) in seen and node.dtype.is_float:
                outs[k] = o * 1  # a distinct array: MLX's VJP counts one cotangent per array object
            seen.add(id(o))
        return outs

    return run


def broadcast_rows(program: Program, arrays: Sequence[mx.array]) -> tuple[mx.array, ...]:
    """A row program's inputs broadcast together: over their leading axes when the program has row
    lengths (each keeping its row), else over every axis."""
    if program.lengths:
        lead = mx.broadcast_shapes(*[a.shape[:-1] for a in arrays])
        return tuple(a if a.shape[:-1] == lead else mx.broadcast_to(a, lead + a.shape[-1:]) for a in arrays)
    shape = mx.broadcast_shapes(*[a.shape for a in arrays])
    return tuple(a if a.shape == shape else mx.broadcast_to(a, shape) for a in arrays)


def grid_shaped(program: Program, out: mx.array, arrays: Sequence[mx.array]) -> mx.array:
    """A row program's output over the whole row grid (the broadcast inputs' leading axes): a row
    computed from constants alone is every row's."""
    lead, row = tuple(arrays[0].shape[:-1]), tuple(out.shape[-1:]) if out.ndim else (1,)
    return out if tuple(out.shape) == lead + row else mx.broadcast_to(out, lead + row)


def _evaluate(roots, leaf) -> list:
    """roots in MLX ops; ops carrying a Lambda (a fold) evaluate its body through `step`."""
    def step(lam, values):
        bound = dict(zip(lam.params, values))
        return _evaluate([lam.body], lambda n: bound[n] if n.op == "bound" else leaf(n))[0]

    def call(n: Node, args: list):
        op = OPS[n.op]
        return op.mx(n, step, *args) if op.graph else op.mx(*args)

    return evaluate(roots, leaf, lambda v, n: v.astype(n.dtype.mx), call)


def compile(program: Program, target: str = name,
            fast_math: Optional[bool] = None) -> Callable[[Sequence[mx.array]], list[mx.array]]:
    """The runner for a program: mx.compile of its MLX-op form (MLX's own ops: fast_math does not apply). Where MLX has its CUDA backend,
    empty arrays skip the compiled path (0.32.4 crashes launching a fused kernel over zero
    elements); elsewhere the runner is the compiled function itself (a call costs nothing more)."""
    plain = to_mlx(program)
    fn = mx.compile(plain)
    if not mx.cuda.is_available():
        return lambda arrays: fn(*arrays)

    def run(arrays: Sequence[mx.array]) -> list[mx.array]:
        for a in arrays:
            if a.size == 0:
                return plain(*arrays)
        return fn(*arrays)
    return run


def source(program: Program, target: str, arrays: Sequence[mx.array], fast_math: Optional[bool] = None,
           summed: tuple[int, ...] = ()) -> str:
    """What this backend runs, for display: the program listing (MLX ops, fused by mx.compile; the
    outputs `summed` over the rows are summed after it)."""
    return program.text()


BACKEND = BackendFunctions(compile, source)
