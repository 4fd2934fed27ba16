"""Running programs: a compiled program made differentiable (vjp, jvp, vmap) with mx.custom_function.

The backward and forward-mode derivatives are generated programs themselves (see ir/autodiff.py),
compiled for the same backend, so derivatives of any order work. On the portable backend the
program already is MLX ops, so by default MLX differentiates and vmaps those ops itself
(autodiff="mlx"): the call then skips MLX's CustomTransforms primitive (~11 µs a call on the CPU)
and `mx.compile` can fuse the kernel with the code around it.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Optional, Sequence

import mlx.core as mx

from . import backend as backends
from . import stats
from .backend.base import sum_rows
from .errors import ZMLXGradientError
from .ir.autodiff import jvp as ir_jvp, simplify, vjp as ir_vjp
from .ir.build import cast
from .ir.node import Node, toposort
from .ir.passes import optimize, rewrite
from .ir.shifts import derived_without_shifts
from .ir.rows import per_row
from .ir.program import Program


class Compiled:
    """A program bound to a backend; call with (arrays, params) as lists of mx arrays."""

    def __init__(self, program: Program, target: str, autodiff: str = "ir", fast_math: Optional[bool] = None) -> None:
        """autodiff: "ir" attaches the generated derivative programs with mx.custom_function;
        "mlx" (portable backend only) leaves the MLX ops of the program to MLX's own transforms.
        fast_math: the C backends' fast transcendentals (None: per program, fast unless an output
        is float32; see backend/cstyle.py), passed on to the derivative programs."""
        self.program = program
        self.target = target
        self.fast_math = fast_math
        self.stat_key, start = (program.name, target), time.perf_counter()  # for profile.kernel_stats
        self.runner = backends.get(target).compile(program, target, fast_math)
        stats.record_compile(self.stat_key, time.perf_counter() - start)
        self.runs = stats.run_counter(self.stat_key)
        self.n_in = len(program.inputs)
        self.detach = not getattr(self.runner, "eager", False)  # see kernel_inputs
        if autodiff == "mlx":
            self._call = self.runner
            return
        fn = mx.custom_function(self._forward)
        fn.vjp(self._vjp)
        fn.jvp(self._jvp)
        fn.vmap(self._vmap)
        self._call = lambda arrays: list(fn(*arrays))

    def __call__(self, arrays: Sequence[mx.array]) -> list[mx.array]:
        """arrays: the inputs then the params (0-d arrays); returns the outputs."""
        self.runs[0] += 1
        return self._call(arrays)

    def _forward(self, *arrays: mx.array) -> list[mx.array]:
        return self.runner(self.kernel_inputs(arrays))

    def kernel_inputs(self, arrays: Sequence[mx.array]) -> list[mx.array]:
        """A custom function's inputs as its kernel reads them: behind stop_gradient, so that
        mx.jvp, which walks the graph inside a custom function too, never asks the kernel primitive
        for a JVP (MLX's CustomKernel has none: forward mode failed on CUDA); the function's own
        vjp/jvp/vmap rules give every derivative. A runner that evaluates its inputs on the host
        (metal-sim: its outputs are constants) reads them as they are."""
        return [mx.stop_gradient(a) for a in arrays] if self.detach else list(arrays)

    # ---- reverse mode --------------------------------------------------------------------
    @property
    def backward(self) -> tuple["Compiled", list, list, list]:
        """The generated backward program and the roles of its inputs: ("x", i) primal input i,
        ("g", k) cotangent of output k, ("y", k) forward output k (reused when cheaper)."""
        return self.backward_for(tuple(range(len(self.program.outputs))))

    def backward_for(self, picked: tuple[int, ...]) -> tuple["Compiled", list, list, list]:
        """The backward program for the outputs `picked` only (the others' cotangents are zero).

        Elementwise outputs of different shapes need one backward per shape: a single program
        would broadcast every output's contribution to the largest shape, and summing the
        gradient back over the broadcast axes would count a smaller output's part repeatedly."""
        cache = self.__dict__.setdefault("_backward_by_outputs", {})
        if picked in cache:
            return cache[picked]
        p = self.program
        cots = [Node("input", (), o.dtype, _fresh(p, f"cotan{k}")) if k in picked else None
                for k, o in enumerate(p.outputs)]
        float_inputs = [x for x in p.inputs if x.dtype.is_float]
        lengths = dict(zip(p.inputs, p.lengths)) if p.lengths else None
        with _named(p):
            grads = derived_without_shifts(p.outputs, lambda outs: ir_vjp(outs, cots, float_inputs, lengths))
        grads = [None if g is None else cast(g, x.dtype) for g, x in zip(grads, float_inputs)]
        grads = simplify(grads)
        grads, saved = _reuse_outputs(p, grads, picked)
        present = [g for g in grads if g is not None]
        leaves = [n for n in toposort(present) if n.op == "input"]
        if p.kind == "row":  # the primal inputs fix the row shape (D, and the rows), read or not
            leaves += [x for x in p.inputs if x not in leaves]
        roles = []
        for leaf in dict.fromkeys(leaves):
            if leaf in p.inputs:
                roles.append((("x", p.inputs.index(leaf)), leaf))
            elif leaf in cots:
                roles.append((("g", cots.index(leaf)), leaf))
            else:
                roles.append((("y", saved[leaf]), leaf))
        roles.sort(key=lambda r: ("xgy".index(r[0][0]), r[0][1]))
        lengths = ()
        if p.lengths:  # the cotangents and saved outputs are rows of their outputs' lengths
            out_lengths = p.output_lengths()
            lengths = tuple(p.lengths[k] if kind == "x" else out_lengths[k] for (kind, k), _ in roles)
        prog = Program(p.name + "_vjp", p.kind, tuple(leaf for _, leaf in roles), p.params, tuple(present), lengths)
        slots = [float_inputs.index(x) if x in float_inputs else None for x in p.inputs]
        which = [i for i, g in enumerate(grads) if g is not None]
        cache[picked] = Compiled(prog, self.target, fast_math=self.fast_math), [r for r, _ in roles], slots, which
        return cache[picked]

    def _vjp(self, primals, cotangents, outputs):
        primals, cotangents, outputs = as_tuple(primals), as_tuple(cotangents), as_tuple(outputs)
        groups: dict[tuple, list[int]] = {}
        for k, o in enumerate(outputs):
            groups.setdefault(tuple(o.shape), []).append(k)
        if self.program.kind != "elementwise" or len(groups) == 1:
            return self._vjp_outputs(self.backward, primals, cotangents, outputs)
        total = None
        for picked in groups.values():
            part = self._vjp_outputs(self.backward_for(tuple(picked)), primals, cotangents, outputs)
            total = part if total is None else [a + b for a, b in zip(total, part)]
        return total

    def _vjp_outputs(self, backward, primals, cotangents, outputs):
        compiled, roles, slots, which = backward
        arrays = primals[: self.n_in]
        params = primals[self.n_in:]
        args = []
        for kind, k in roles:
            if kind == "x":
                args.append(arrays[k])
            elif kind == "g":
                c = cotangents[k]
                args.append(mx.zeros_like(outputs[k]) if c is None else c)
            else:
                args.append(outputs[k])
        p = self.program
        rows = None
        if p.kind == "row" and arrays:
            rows = lead_shape(arrays) if p.lengths else tuple(mx.broadcast_shapes(*[a.shape for a in arrays]))
        summed = self.row_sums(arrays, backward)
        shared = {which[k] for k in summed}
        if not compiled.program.outputs:
            results = []
        else:
            results = compiled.row_summed(args + list(params), summed) if summed else compiled(args + list(params))
        by_float = dict(zip(which, results))
        # a row kernel reads its inputs broadcast over the rows: a gradient computed per row (or per
        # element) is first spread over that shape, then summed back to each input's own shape
        grads = []
        for x, slot in zip(arrays, slots):
            g = by_float.get(slot) if slot is not None else None
            if slot in shared:  # the rows' sum: of a gradient one value per row, the same for each element
                grads.append(g.reshape(x.shape) if g.size == x.size else mx.broadcast_to(g.reshape(()), x.shape))
                continue
            full = rows + g.shape[-1:] if p.lengths and rows is not None and g is not None else rows
            if g is not None and full is not None and g.shape != full:
                g = mx.broadcast_to(g, full)
            grads.append(mx.zeros_like(x) if g is None else unbroadcast(g, x.shape))
        return grads + [mx.zeros_like(p) for p in params]

    def row_sums(self, arrays: Sequence[mx.array], backward: Optional[tuple] = None) -> tuple[int, ...]:
        """The outputs of the backward program (self.backward, or `backward`) that are the gradient
        of a row shared by all rows (a (D,) weight of (..., D) rows): the sum of its rows, computed
        in the kernel (see row_summed)."""
        compiled, _, slots, which = backward or self.backward
        p = self.program
        if p.kind != "row" or not p.lengths or not arrays or math.prod(lead_shape(arrays[: self.n_in])) < 2:
            return ()
        shared = {slot for x, slot in zip(arrays, slots) if slot in which and x.size == x.shape[-1] > 1}
        return tuple(k for k, slot in enumerate(which) if slot in shared)

    def row_summed(self, arrays: Sequence[mx.array], summed: tuple[int, ...]) -> list[mx.array]:
        """The outputs, those in `summed` summed over the row grid (shape (1, ..., 1, D)): a weight's
        gradient, accumulated over the rows in the kernel where the backend can (never a rows x D
        array); differentiable as the sum of the plain outputs."""
        fns = self.__dict__.setdefault("_row_summed", {})
        if summed not in fns:
            fns[summed] = self._row_summed_function(summed)
        return list(fns[summed](*arrays))

    def _row_summed_function(self, summed: tuple[int, ...]):
        def total(outs: Sequence[mx.array]) -> list[mx.array]:
            return [sum_rows(o) if k in summed else o for k, o in enumerate(outs)]

        def forward(*arrays: mx.array) -> list[mx.array]:
            run = getattr(self.runner, "row_summed", None)  # C backends sum in the kernel
            arrays = self.kernel_inputs(arrays)
            return run(arrays, summed) if run else total(self.runner(arrays))

        def vjp(primals, cotangents, outputs):
            primals = as_tuple(primals)
            full = self(list(primals))  # the plain outputs (their shapes; saved values the backward reads)
            cots = [c if c is None or k not in summed else mx.broadcast_to(c, full[k].shape)
                    for k, c in enumerate(as_tuple(cotangents))]
            return self._vjp(primals, cots, full)

        def vmap(inputs, axes):  # the batch axis first, then the rows: summed over those
            outs, out_axes = self._vmap(inputs, axes)
            return [o if k not in summed or o.ndim < 3 else
                    o.sum(axis=tuple(range(1, o.ndim - 1)), keepdims=True) for k, o in enumerate(outs)], out_axes

        fn = mx.custom_function(forward)
        fn.vjp(vjp)
        fn.jvp(lambda primals, tangents: total(self._jvp(primals, tangents)))
        fn.vmap(vmap)
        return fn

    # ---- forward mode --------------------------------------------------------------------
    @cached_property
    def forward_mode(self) -> tuple["Compiled", list, list]:
        p = self.program
        tans = {x: Node("input", (), x.dtype, _fresh(p, f"tan_{x.arg}")) for x in p.inputs if x.dtype.is_float}
        lengths = dict(zip(p.inputs, p.lengths)) if p.lengths else None
        with _named(p):
            outs = derived_without_shifts(p.outputs, lambda outs: ir_jvp(outs, tans, lengths))
        outs = simplify([None if t is None else cast(t, o.dtype) for t, o in zip(outs, p.outputs)])
        present = [t for t in outs if t is not None]
        used = {n for n in toposort(present) if n.op == "input"}
        if p.kind == "row":  # the primal inputs fix the row shape, read or not
            used.update(p.inputs)
        inputs = tuple(x for x in p.inputs if x in used) + tuple(t for t in tans.values() if t in used)
        order = [("x", i) for i, x in enumerate(p.inputs) if x in used] + \
                [("t", i) for i, x in enumerate(p.inputs) if x in tans and tans[x] in used]
        lengths = tuple(p.lengths[i] for _, i in order) if p.lengths else ()  # a tangent is its input's shape
        prog = Program(p.name + "_jvp", p.kind, inputs, p.params, tuple(present), lengths)
        return Compiled(prog, self.target, fast_math=self.fast_math), order, [i for i, t in enumerate(outs) if t is not None]

    def _jvp(self, primals, tangents):
        primals, tangents = as_tuple(primals), as_tuple(tangents)
        compiled, order, which = self.forward_mode
        arrays, params = primals[: self.n_in], primals[self.n_in:]
        args = []
        for kind, i in order:
            if kind == "x":
                args.append(arrays[i])
            else:
                t = tangents[i]
                args.append(mx.zeros_like(arrays[i]) if t is None else t)
        results = dict(zip(which, compiled(args + list(params)))) if which else {}
        shapes = output_shapes(self.program, [a.shape for a in arrays])
        # a tangent computed per row (sum(t), say) spreads over its output's row
        return [(results[k] if results[k].shape == shapes[k] else mx.broadcast_to(results[k], shapes[k]))
                if k in results else mx.zeros(shapes[k], o.dtype.mx) for k, o in enumerate(self.program.outputs)]

    # ---- vmap ----------------------------------------------------------------------------
    def _vmap(self, inputs, axes):
        inputs, axes = as_tuple(inputs), as_tuple(axes)
        arrays, params = inputs[: self.n_in], inputs[self.n_in:]
        if any(a is not None for a in axes[self.n_in:]):
            raise ValueError("zmlx_dsl kernels cannot be vmapped over a scalar parameter")
        ranks = [a.ndim - (ax is not None) for a, ax in zip(arrays, axes)]
        top = max(ranks, default=0)
        moved = []
        for a, ax, r in zip(arrays, axes, ranks):
            if ax is None:
                moved.append(a)
            else:
                a = mx.moveaxis(a, ax, 0)
                moved.append(a.reshape((a.shape[0],) + (1,) * (top - r) + a.shape[1:]))
        outs = self(moved + list(params))
        return outs, [0] * len(outs)


class GivenVJP(Compiled):
    """A compiled elementwise program whose VJP is a user-given program (grad_expr).

    `roles` says what feeds each input of the VJP program: ("x", i) argument i, ("y", 0) the
    output, ("g", 0) the cotangent. The forward-mode rule reuses it: for an elementwise op the
    Jacobian is diagonal, so the tangent is sum_i vjp_i(g = t_i)."""

    def __init__(self, program: Program, target: str, vjp_program: Program, roles: list,
                 fast_math: Optional[bool] = None) -> None:
        self.given = Compiled(vjp_program, target, fast_math=fast_math)
        self.roles = roles
        super().__init__(program, target, fast_math=fast_math)

    def _given(self, arrays: Sequence[mx.array], y: mx.array, g: mx.array) -> list[mx.array]:
        pick = {"x": arrays, "y": [y], "g": [g]}
        return self.given([pick[r][k] for r, k in self.roles])

    def _vjp(self, primals, cotangents, outputs):
        primals, y, g = list(as_tuple(primals)), as_tuple(outputs)[0], as_tuple(cotangents)[0]
        g = mx.zeros_like(y) if g is None else g
        return [unbroadcast(d, x.shape) for d, x in zip(self._given(primals, y, g), primals)]

    def _jvp(self, primals, tangents):
        primals = list(as_tuple(primals))
        y = self(primals)[0]  # differentiable: a forward-mode derivative of this one reads y
        total = mx.zeros_like(y)
        for i, t in enumerate(as_tuple(tangents)):
            if t is not None:
                total = total + self._given(primals, y, mx.broadcast_to(t, y.shape).astype(y.dtype))[i]
        return [total.astype(y.dtype)]


@contextmanager
def _named(p: Program):
    """A body without a derivative (ZMLXGradientError from a rule) reported with the kernel's name."""
    try:
        yield
    except ZMLXGradientError as e:
        raise ZMLXGradientError(f"cannot differentiate kernel '{p.name}': {e.message}") from None


def lead_shape(arrays: Sequence[mx.array]) -> tuple:
    """The row grid of a row program's inputs: the broadcast of their leading axes."""
    return tuple(mx.broadcast_shapes(*[a.shape[:-1] for a in arrays]))


def as_tuple(x: Any) -> tuple:
    """One value, or a list or tuple of them (as mx.custom_function passes arrays), as a tuple."""
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _fresh(p: Program, base: str) -> str:
    taken = {n.arg for n in p.inputs + p.params}
    name = base
    while name in taken:
        name = "_" + name
    return name


def unbroadcast(g: mx.array, shape: tuple) -> mx.array:
    """Sum a gradient over the axes its input was broadcast along (as MLX does)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1]
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    g = g.reshape(g.shape[lead:]) if lead else g
    return mx.broadcast_to(g, shape) if g.shape != tuple(shape) else g


def output_shapes(p: Program, shapes: Sequence[tuple]) -> list[tuple]:
    """Each output's shape: elementwise, the broadcast of the input shapes it depends on; in a
    row program, the broadcast of all inputs (rows on the last axis), or (..., 1) for an output
    that holds one value per row."""
    if p.kind == "row" and p.lengths:
        lead = tuple(mx.broadcast_shapes(*[s[:-1] for s in shapes]))
        rows = per_row(p.outputs)
        return [lead + (1 if rows[o] else n,) for o, n in zip(p.outputs, p.output_lengths())]
    if p.kind == "row":
        full = tuple(mx.broadcast_shapes(*shapes)) if shapes else ()
        rows = per_row(p.outputs)
        return [full[:-1] + (1,) if rows[o] else full for o in p.outputs]
    out = []
    for o in p.outputs:
        deps = [shapes[i] for i in p.depends(o)]
        out.append(tuple(mx.broadcast_shapes(*deps)) if deps else ())
    return out


def _reuse_outputs(p: Program, grads: list, picked: Sequence[int]) -> tuple[list, dict]:
    """Replace forward values the backward recomputes by the saved outputs (among `picked`), when
    that is cheaper (fewer arrays read counts 8 ops each; transcendental ops 4). ZMLX's
    use_output, automatic."""
    present = [g for g in grads if g is not None]
    slots: dict[Node, int] = {}  # saved-output leaf -> output index
    if not present:
        return grads, slots
    subst: dict[Node, Node] = {}
    for k, o in enumerate(p.outputs):
        if k not in picked:
            continue
        inner = o.args[0] if o.op == "cast" else o
        if inner.op in ("input", "param", "const"):
            continue
        saved = Node("input", (), o.dtype, _fresh(p, f"out{k}"))
        if inner not in subst:
            subst[inner] = cast(saved, inner.dtype)
            slots[saved] = k
    if not subst:
        return grads, slots
    reused = optimize(rewrite(present, lambda n: subst.get(n, n)))
    if _cost(reused) < _cost(present):
        it = iter(reused)
        return [next(it) if g is not None else None for g in grads], slots
    return grads, slots


_TRANSCENDENTAL = {"exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sigmoid", "erf", "erfinv",
                   "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh",
                   "arccosh", "arctanh", "power", "arctan2", "logaddexp", "sqrt", "rsqrt", "div"}


def _cost(roots: Sequence[Node]) -> int:
    total = 0
    for n in toposort(roots):
        if n.op == "input":
            total += 8
        elif n.op not in ("const", "param", "rowsize", "cast"):
            total += 4 if n.op in _TRANSCENDENTAL else 1
    return total
