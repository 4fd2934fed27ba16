"""The ZMLX-compatible string API: `elementwise`, `reduce` and `map_reduce` from C-like expressions.

Strings that parse (cexpr's subset) become IR programs: every backend runs them, gradients are
automatic unless `grad_expr` gives the VJP, and `reduce`/`map_reduce` become the same fused row
kernels as the decorator form (an update that is not `acc ⊕ f(v)` for an associative ⊕ becomes a
serial "fold" over the row). Strings using Metal outside the subset run on metal/metal-sim only.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import mlx.core as mx

from . import raw
from .errors import ZMLXTypeError
from .frontend import zmlx_strings
from .frontend.zmlx_strings import Builder, VJPBuilder
from .ir import dtypes as dt
from .ir.node import Node
from .ir.passes import optimize, widen
from .ir.rows import per_row
from .ir.program import Program, stable_name
from .kernels import Entry, Kernel
from .msl import DEFAULT_HEADER


class ExprKernel(Kernel):
    """A kernel whose body is built from expression strings; called like a decorated kernel."""

    def __init__(self, name: str, kind: str, arg_names: Sequence[str], build: Builder, *,
                 compute_dtype: Any = None, backend: Optional[str] = None,
                 given_vjp: Optional[VJPBuilder] = None, threadgroup: Optional[int] = None,
                 fast_math: Optional[bool] = None) -> None:
        # autodiff "ir": a given grad_expr or a serial fold must act alike on every backend
        super().__init__(None, kind=kind, name=name, compute_dtype=compute_dtype or mx.float32,
                         backend=backend, autodiff="ir", arg_names=arg_names, fast_math=fast_math)
        self.threadgroup = threadgroup  # map_reduce's (checked, ZMLX-compatible; the backend picks the launch)
        self._make = build
        self._given = given_vjp

    def build(self, args: tuple, kwargs: dict) -> Entry:
        """The program for these array arguments (every argument is an array, none a keyword)."""
        if kwargs or len(args) != len(self.positional):
            raise ZMLXTypeError(f"{self.name}() takes {len(self.positional)} array argument(s) "
                                f"({', '.join(self.positional)}), got {len(args)}"
                                + (f" and keywords {sorted(kwargs)}" if kwargs else ""))
        inputs = []
        for pname, a in zip(self.positional, args):
            if not isinstance(a, mx.array):
                raise ZMLXTypeError(f"{self.name}(): argument '{pname}' must be an mx.array, got "
                                    f"{type(a).__name__}; wrap scalars with mx.array(...)")
            inputs.append(Node("input", (), dt.from_mx(a.dtype), pname))
        outs = optimize(widen(optimize(self._make(inputs)), self.compute))
        flags = [per_row(outs)[o] for o in outs] if self.kind != "elementwise" else [False] * len(outs)
        kind = "elementwise" if self.kind == "elementwise" else "row"
        program = Program(self.name, kind, tuple(inputs), (), tuple(outs))
        return Entry(program, [("array", i) for i in range(len(inputs))], False, flags, [],
                     self._given(inputs, outs) if self._given else None)


# ---- elementwise -------------------------------------------------------------------------------

def pointwise(name: str, arg_names: Sequence[str], fwd: str, grads: Optional[Sequence[str]], *,
              prelude: str = "", use_output: bool = True, compute_dtype: Any = None,
              header: Optional[str] = None, backend: Optional[str] = None,
              fast_math: Optional[bool] = None) -> Callable:
    """An elementwise kernel of len(arg_names) inputs from strings; `grads` (one VJP per input,
    over the inputs, `y` and `g`) replaces the automatic gradient. Shared by api and autograd.
    fast_math as the decorators' (raw Metal that does not parse runs as written)."""
    header = DEFAULT_HEADER if header is None else header
    why = zmlx_strings.raw_reason(name, arg_names, fwd, grads, prelude=prelude, use_output=use_output,
                                  compute=compute_dtype, header=header)
    if why:
        return raw.pointwise(name, arg_names, fwd, grads, prelude=prelude, use_output=use_output,
                             compute_dtype=compute_dtype, header=header, backend=backend, why=why)
    body = zmlx_strings.pointwise_body(name, arg_names, fwd, compute=compute_dtype, header=header)
    given = zmlx_strings.pointwise_vjp(name, arg_names, grads, prelude=prelude, use_output=use_output,
                                       compute=compute_dtype, header=header) if grads else None
    return ExprKernel(name, "elementwise", arg_names, body, compute_dtype=compute_dtype, backend=backend,
                      given_vjp=given, fast_math=fast_math)


def elementwise(expr: str, *, name: Optional[str] = None, grad_expr: Optional[str] = None,
                grad_prelude: str = "", use_output: bool = True, compute_dtype: Any = None,
                header: Optional[str] = None, backend: Optional[str] = None,
                fast_math: Optional[bool] = None) -> Callable:
    """An elementwise op from a C expression in `x`; differentiable automatically, or via
    `grad_expr` (in `g`, `x`, `y` when use_output, and `grad_prelude` declarations)."""
    return pointwise(name or stable_name("elementwise", expr, length=8), ["x"], expr,
                     [grad_expr] if grad_expr is not None else None, prelude=grad_prelude,
                     use_output=use_output, compute_dtype=compute_dtype, header=header, backend=backend,
                     fast_math=fast_math)


# ---- row reductions ----------------------------------------------------------------------------

def reduce(*, init: str, update: str, finalize: str = "acc", name: Optional[str] = None,
           compute_dtype: Any = None, header: Optional[str] = None, backend: Optional[str] = None,
           fast_math: Optional[bool] = None) -> Callable:
    """A row reduction (last axis) from `init`, `update` (in `acc`, `v`, `D`) and `finalize`
    (in `acc` or `s`): one fused row kernel; output shape drops the last axis.

    An update `acc ⊕ f(v)` with ⊕ one of +, -, max, min (fmax/fmin) is a parallel reduction and
    differentiable. Any other update (`acc * 0.5f + v`, `acc * v`, …) runs as written: a serial
    loop over the row in element order (one thread per row on the C backends), with no gradient
    (asking for one raises ZMLXGradientError)."""
    name = name or stable_name("reduce", init, update, finalize, length=8)
    header = DEFAULT_HEADER if header is None else header
    body = zmlx_strings.reduce_body(name, init=init, update=update, finalize=finalize, compute=compute_dtype,
                                    header=header)
    return ExprKernel(name, "reduce", ["x"], body, compute_dtype=compute_dtype, backend=backend,
                      fast_math=fast_math)


def map_reduce(*, pass1: Mapping[str, str], pass2: Mapping[str, str], write: str, name: Optional[str] = None,
               threadgroup: int = 256, compute_dtype: Any = None, header: Optional[str] = None,
               backend: Optional[str] = None, fast_math: Optional[bool] = None) -> Callable:
    """Two row reductions then a per-element write (softmax, norms): pass1 accumulates `acc1`
    over `x` into `s1`, pass2 `acc2` (may use `s1`) into `s2`, `write` uses `x, s1, s2, D`.
    One fused row kernel; the backend picks the launch (`threadgroup` is checked, ZMLX-compatible).
    A pass whose update is not `acc ⊕ f(x)` (see `reduce`) runs as a serial loop over the row and
    its `reduce` is not used (a serial loop has no partial results to combine)."""
    name = name or stable_name("map_reduce", str(pass1), str(pass2), write, length=8)
    header = DEFAULT_HEADER if header is None else header
    if not isinstance(threadgroup, int) or threadgroup < 32 or threadgroup > 1024 or threadgroup & (threadgroup - 1):
        raise ValueError(f"{name}: threadgroup must be a power of two from 32 to 1024, got {threadgroup!r} "
                         "(partial sums of other sizes are lost in a tree reduction)")
    for k, p in (("pass1", pass1), ("pass2", pass2)):
        missing = {"init", "update"} - set(p)
        if missing:
            raise ZMLXTypeError(f"{name}: {k} needs the keys 'init' and 'update' (and 'reduce'); missing "
                                f"{', '.join(sorted(missing))}")
    body = zmlx_strings.map_reduce_body(name, pass1=pass1, pass2=pass2, write=write, compute=compute_dtype,
                                        header=header)
    return ExprKernel(name, "map_reduce", ["x"], body, compute_dtype=compute_dtype, backend=backend,
                      threadgroup=threadgroup, fast_math=fast_math)
