"""Raw Metal ops (ZMLX strings outside the expression subset, nary bodies): launched on metal or metal-sim only.

One thread per element over the (broadcast) output; kernel names are the user's name plus a
SHA-256 of the source, so they are stable across processes and never collide. A `RawOp` pairs a
forward kernel with an optional backward kernel through an mx.custom_function VJP.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx

from . import backend as backends
from .backend.metal import kernel_factory
from .errors import ZMLXBackendError, ZMLXTypeError
from .ir.program import stable_name
from .runtime import as_tuple, unbroadcast

THREADGROUP = 256


def factory(target: str, name: str, why: str) -> Callable:
    """mx.fast.metal_kernel (metal) or its CPU twin (metal-sim); a clear error on other backends."""
    if target in ("metal", "metal-sim"):
        return kernel_factory(target)
    raise ZMLXBackendError(f"'{name}' is raw Metal ({why}), which runs only on the 'metal' and 'metal-sim' "
                           f"backends, not on {target!r}. Pass backend='metal-sim' (or set ZMLX_DSL_BACKEND), "
                           "or write it as an expression of the portable subset or as a Python kernel "
                           "to run it on every backend.")


class RawKernel:
    """One Metal body with fixed input/output names, built per backend on first use."""

    def __init__(self, name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str, why: str) -> None:
        self.name = name
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.source = source
        self.header = header
        self.why = why
        self.kernels: dict[str, Any] = {}

    def __call__(self, target: str, inputs: Sequence[mx.array], output_shapes: Sequence[tuple],
                 output_dtypes: Sequence[mx.Dtype], template: Optional[list] = None) -> list[mx.array]:
        k = self.kernels.get(target)
        if k is None:
            k = self.kernels[target] = factory(target, self.name, self.why)(
                name=stable_name(self.name, self.source, self.header), input_names=self.input_names,
                output_names=self.output_names, source=self.source, header=self.header,
                ensure_row_contiguous=True)
        size = math.prod(output_shapes[0])
        if size == 0:
            return [mx.zeros(s, d) for s, d in zip(output_shapes, output_dtypes)]
        return list(k(inputs=list(inputs), template=template or [], output_shapes=list(output_shapes),
                      output_dtypes=list(output_dtypes), grid=(size, 1, 1),
                      threadgroup=(min(THREADGROUP, size), 1, 1)))


def target_of(backend: Optional[str]) -> str:
    """The backend a call runs on: the kernel's own, else the default one."""
    return backend or backends.default()


def broadcast(arrays: Sequence[mx.array]) -> list[mx.array]:
    """Inputs brought to one shape (a raw body indexes every input by the output element)."""
    shape = tuple(mx.broadcast_shapes(*[a.shape for a in arrays]))
    return [a if a.shape == shape else mx.broadcast_to(a, shape) for a in arrays]


class RawOp:
    """An op from raw Metal bodies: forward kernel and optional backward kernel (inputs + cotan -> d<input>)."""

    def __init__(self, name: str, fwd: RawKernel, bwd: Optional[RawKernel], *, n_in: int,
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
        xs = broadcast(inputs)
        return self.fwd(target_of(self.backend), xs, [xs[0].shape], [self.out_dtype(xs)], self.template(xs))[0]

    def _vjp(self, primals, cotangents, outputs):
        primals, g, y = list(as_tuple(primals)), as_tuple(cotangents)[0], as_tuple(outputs)[0]
        if self.bwd is None:
            raise ZMLXBackendError(f"'{self.name}' is raw Metal without a gradient; pass grad_expr "
                                   "(or write it in the expression subset for an automatic gradient)")
        xs = broadcast(primals)
        grads = self.bwd(target_of(self.backend), self.bwd_extra(xs, y, g), [x.shape for x in xs],
                         [x.dtype for x in xs], self.template(xs))
        return [unbroadcast(d, p.shape) for d, p in zip(grads, primals)]


def pointwise(name: str, arg_names: Sequence[str], fwd: str, grads: Optional[Sequence[str]], *,
              prelude: str, use_output: bool, compute_dtype: Any, header: str,
              backend: Optional[str], why: str) -> RawOp:
    """api.pointwise for strings outside the subset: ZMLX's kernels (values in `T`, output in `O`)."""
    loads = "".join(f"  T {n} = {n}_in[elem];\n" for n in arg_names)
    src = f"  uint elem = thread_position_in_grid.x;\n{loads}  out[elem] = (O)({fwd});\n"
    fk = RawKernel(name, [f"{n}_in" for n in arg_names], ["out"], src, header, why)
    bk = None
    extra = ["y"] if use_output else []
    if grads:
        loads_b = loads + "".join(f"  T {n} = {n}_in[elem];\n" for n in extra + ["g"])
        writes = "".join(f"  d{n}[elem] = (O)({e});\n" for n, e in zip(arg_names, grads))
        bsrc = f"  uint elem = thread_position_in_grid.x;\n{loads_b}{prelude}\n{writes}"
        bk = RawKernel(name + "_vjp", [f"{n}_in" for n in list(arg_names) + extra + ["g"]],
                       [f"d{n}" for n in arg_names], bsrc, header, why)
    cd = compute_dtype or mx.float32
    return RawOp(name, fk, bk, n_in=len(arg_names), backend=backend,
                 template=lambda xs: [("T", cd), ("O", xs[0].dtype)], out_dtype=lambda xs: xs[0].dtype,
                 bwd_extra=lambda xs, y, g: xs + ([y] if use_output else []) + [g])
