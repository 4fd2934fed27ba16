"""ZMLX's autograd constructors: ops from expression strings or raw Metal bodies with given VJPs.

`unary_from_expr` / `binary_from_expr` parse their strings (every backend; the given VJP is used);
strings outside the expression subset, and every `nary_from_expr` body, are raw Metal: they run
on metal/metal-sim through `mx.fast.metal_kernel` (or its CPU twin) with an mx.custom_function VJP.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import mlx.core as mx

from . import raw
from .api import pointwise
from .errors import ZMLXBackendError, ZMLXTypeError
from .runtime import unbroadcast


def unary_from_expr(*, name: str, fwd_expr: str, vjp_expr: str, compute_dtype: Any, use_output: bool = True,
                    vjp_prelude: str = "", header: str = "") -> Callable:
    """A unary op `fwd_expr(x)` whose VJP is `vjp_expr` over `g`, `x` and (use_output) the output `y`."""
    return pointwise(name, ["x"], fwd_expr, [vjp_expr], prelude=vjp_prelude, use_output=use_output,
                     compute_dtype=compute_dtype, header=header)


def binary_from_expr(*, name: str, fwd_expr: str, vjp_lhs_expr: str, vjp_rhs_expr: str, compute_dtype: Any,
                     vjp_prelude: str = "", header: str = "") -> Callable:
    """A binary op `fwd_expr(a, b)` (inputs broadcast) with VJPs for `a` and `b` over `a`, `b`, `g`."""
    return pointwise(name, ["a", "b"], fwd_expr, [vjp_lhs_expr, vjp_rhs_expr], prelude=vjp_prelude,
                     use_output=False, compute_dtype=compute_dtype, header=header)


class RawOp:
    """An op from raw Metal bodies: forward kernel and optional backward kernel (inputs + cotan -> d<input>)."""

    def __init__(self, name: str, fwd: raw.RawKernel, bwd: Optional[raw.RawKernel], *, n_in: int,
                 template: Callable[[list[mx.array]], list], out_dtype: Callable[[list[mx.array]], Any],
                 backend: Optional[str], bwd_extra: Callable[[list, mx.array, mx.array], list]) -> None:
        self.name = self.__name__ = name
        self.fwd, self.bwd, self.n_in = fwd, bwd, n_in
        self.template, self.out_dtype, self.backend, self.bwd_extra = template, out_dtype, backend, bwd_extra
        fn = mx.custom_function(self._forward)
        fn.vjp(self._vjp)
        self.fn = fn

    def __call__(self, *inputs: mx.array) -> mx.array:
        if len(inputs) != self.n_in or not all(isinstance(a, mx.array) for a in inputs):
            raise ZMLXTypeError(f"{self.name}() takes {self.n_in} mx.array arguments, got "
                                f"({', '.join(type(a).__name__ for a in inputs)})")
        return self.fn(*inputs)

    def _forward(self, *inputs: mx.array) -> mx.array:
        xs = raw.broadcast(inputs)
        return self.fwd(raw.target_of(self.backend), xs, [xs[0].shape], [self.out_dtype(xs)],
                        self.template(xs))[0]

    def _vjp(self, primals, cotangents, outputs):
        primals = list(primals) if isinstance(primals, (list, tuple)) else [primals]
        g = cotangents[0] if isinstance(cotangents, (list, tuple)) else cotangents
        y = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        if self.bwd is None:
            raise ZMLXBackendError(f"'{self.name}' is raw Metal without a gradient; pass grad_expr "
                                   "(or write it in the expression subset for an automatic gradient)")
        xs = raw.broadcast(primals)
        grads = self.bwd(raw.target_of(self.backend), self.bwd_extra(xs, y, g), [x.shape for x in xs],
                         [x.dtype for x in xs], self.template(xs))
        return [unbroadcast(d, p.shape) for d, p in zip(grads, primals)]


def raw_pointwise(name: str, arg_names: Sequence[str], fwd: str, grads: Optional[Sequence[str]], *,
                  prelude: str, use_output: bool, compute_dtype: Any, header: str,
                  backend: Optional[str], why: str) -> RawOp:
    """api.pointwise for strings outside the subset: ZMLX's kernels (values in `T`, output in `O`)."""
    loads = "".join(f"  T {n} = {n}_in[elem];\n" for n in arg_names)
    src = f"  uint elem = thread_position_in_grid.x;\n{loads}  out[elem] = (O)({fwd});\n"
    fk = raw.RawKernel(name, [f"{n}_in" for n in arg_names], ["out"], src, header, why)
    bk = None
    extra = ["y"] if use_output else []
    if grads:
        loads_b = loads + "".join(f"  T {n} = {n}_in[elem];\n" for n in extra + ["g"])
        writes = "".join(f"  d{n}[elem] = (O)({e});\n" for n, e in zip(arg_names, grads))
        bsrc = f"  uint elem = thread_position_in_grid.x;\n{loads_b}{prelude}\n{writes}"
        bk = raw.RawKernel(name + "_vjp", [f"{n}_in" for n in list(arg_names) + extra + ["g"]],
                           [f"d{n}" for n in arg_names], bsrc, header, why)
    cd = compute_dtype or mx.float32
    return RawOp(name, fk, bk, n_in=len(arg_names), backend=backend,
                 template=lambda xs: [("T", cd), ("O", xs[0].dtype)], out_dtype=lambda xs: xs[0].dtype,
                 bwd_extra=lambda xs, y, g: xs + ([y] if use_output else []) + [g])


def nary_from_expr(*, name: str, fwd_source: str, bwd_source: str, input_names: Sequence[str],
                   output_names: Sequence[str], compute_dtype: Any, header: str = "",
                   backend: Optional[str] = None) -> RawOp:
    """An op from raw Metal bodies over `input_names` (one thread per element, `T` = compute_dtype);
    the backward body reads the inputs and `cotan` and writes `d<input>` for every input."""
    if len(output_names) != 1:
        raise ZMLXTypeError(f"{name}: nary_from_expr supports exactly one output (the backward body reads "
                            f"one cotangent 'cotan'), got {list(output_names)}")
    why = "nary_from_expr bodies are Metal source"
    fk = raw.RawKernel(name, input_names, output_names, fwd_source, header, why)
    bk = raw.RawKernel(name + "_vjp", list(input_names) + ["cotan"], [f"d{n}" for n in input_names],
                       bwd_source, header, why)
    cd = compute_dtype or mx.float32
    return RawOp(name, fk, bk, n_in=len(input_names), backend=backend, template=lambda xs: [("T", cd)],
                 out_dtype=lambda xs: xs[0].dtype, bwd_extra=lambda xs, y, g: xs + [g])

