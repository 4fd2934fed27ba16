"""The decorators `elementwise`, `reduce`, `map_reduce`: a Python function becomes a Kernel, a ZMLX string an api kernel.

Options: name, compute_dtype, backend, fast_math (the C backends' fast exp/erf/tanh/sigmoid: None,
the default, picks them when no output is float32; True or False forces them on or off), and the
kind's own (axis=, autodiff=; the string forms' grad_expr=, header=...)."""
from __future__ import annotations

from typing import Any, Callable, Optional

import mlx.core as mx

from . import api
from .kernels import Kernel


def _decorator(kind: str) -> Callable:
    def make(fn: Optional[Callable] = None, *, name: Optional[str] = None, compute_dtype: Any = mx.float32,
             backend: Optional[str] = None, fast_math: Optional[bool] = None, **extra: Any):
        if isinstance(fn, str):  # the ZMLX string form, e.g. elementwise("kk_silu(x)", grad_expr=...)
            return getattr(api, kind)(fn, name=name, compute_dtype=compute_dtype, backend=backend,
                                      fast_math=fast_math, **extra)
        def wrap(f: Callable) -> Kernel:
            return Kernel(f, kind=kind, name=name, compute_dtype=compute_dtype, backend=backend,
                          fast_math=fast_math, **extra)
        return wrap if fn is None else wrap(fn)
    make.__name__ = kind
    return make


elementwise = _decorator("elementwise")
reduce = _decorator("reduce")
map_reduce = _decorator("map_reduce")
