"""Backends: each turns a Program into a runner (list of mx arrays -> list of mx arrays)."""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import mlx.core as mx

from ..frontend.errors import ZMLXBackendError

NAMES = ("mlx", "metal", "metal-sim", "cuda")
_MODULES = {"mlx": "mlx", "metal": "metal", "metal-sim": "metal", "cuda": "cuda"}


def default() -> str:
    """The backend used when none is named: $ZMLX_DSL_BACKEND, else metal / cuda where available, else mlx."""
    env = os.environ.get("ZMLX_DSL_BACKEND")
    if env:
        return check(env)
    if mx.metal.is_available():
        return "metal"
    if mx.cuda.is_available():
        return "cuda"
    return "mlx"


def check(name: str) -> str:
    if name not in NAMES:
        raise ZMLXBackendError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    return name


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{_MODULES[check(name)]}")
