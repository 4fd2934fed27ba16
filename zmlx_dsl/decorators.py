"""The decorators `elementwise`, `reduce`, `map_reduce`: a Python function becomes a Kernel, a ZMLX string an api kernel."""
from __future__ import annotations

from typing import Any, Callable, Optional

import mlx.core as mx

from . import api
from .kernels import Kernel


def _decorator(kind: str) -> Callable:
    def make(fn: Optional[Callable] = None, *, name: Optional[str] = None, compute_dtype: Any = mx.float32,
             backend: Optional[str] = None, **extra: Any):
        if isinstance(fn, str):  # the ZMLX string form, e.g. elementwise("kk_silu(x)", grad_expr=...)
            return getattr(api, kind)(fn, name=name, compute_dtype=compute_dtype, backend=backend, **extra)
        def wrap(f: Callable) -> Kernel:
            return Kernel(f, kind=kind, name=name, compute_dtype=compute_dtype, backend=backend, **extra)
        return wrap if fn is None else wrap(fn)
    make.__name__ = kind
    return make


elementwise = _decorator("elementwise")
reduce = _decorator("reduce")
map_reduce = _decorator("map_reduce")
