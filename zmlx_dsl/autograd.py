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
from .errors import ZMLXTypeError


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


def nary_from_expr(*, name: str, fwd_source: str, bwd_source: str, input_names: Sequence[str],
                   output_names: Sequence[str], compute_dtype: Any, header: str = "",
                   backend: Optional[str] = None) -> raw.RawOp:
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
    return raw.RawOp(name, fk, bk, n_in=len(input_names), backend=backend, template=lambda xs: [("T", cd)],
                     out_dtype=lambda xs: xs[0].dtype, bwd_extra=lambda xs, y, g: xs + [g])

