"""Raw Metal bodies (ZMLX strings outside the expression subset): launched on metal or metal-sim only.

One thread per element over the (broadcast) output; kernel names are the user's name plus a
SHA-256 of the source, so they are stable across processes and never collide.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx

from . import backend as backends
from .errors import ZMLXBackendError

THREADGROUP = 256


def factory(target: str, name: str, why: str) -> Callable:
    """mx.fast.metal_kernel (metal) or its CPU twin (metal-sim); a clear error on other backends."""
    if target == "metal":
        return mx.fast.metal_kernel
    if target == "metal-sim":
        from .backend.metal_sim import metal_kernel
        return metal_kernel
    raise ZMLXBackendError(f"'{name}' is raw Metal ({why}), which runs only on the 'metal' and 'metal-sim' "
                           f"backends, not on {target!r}. Pass backend='metal-sim' (or set ZMLX_DSL_BACKEND), "
                           "or write it as an expression of the portable subset or as a Python kernel "
                           "to run it on every backend.")


def stable_name(name: str, *texts: str) -> str:
    """A valid kernel identifier: the user's name plus a hash of the sources."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "kernel"
    return f"{safe}_{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:12]}"


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
