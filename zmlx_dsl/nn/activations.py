"""Activations as kernels: mlx.nn's silu, gelu, gelu_approx, softmax, log_softmax, and the gated
products of LLM MLPs (swiglu, geglu), elementwise or on a fused gate|up row (phi3's gate_up_proj)."""
from __future__ import annotations

import math
from typing import Optional

import mlx.core as mx
import mlx.nn as mnn

from .. import decorators as zmlx  # @zmlx.elementwise, as users write it (the package itself would be an import circle)
from .backends import on

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _silu(x):
    return x * mx.sigmoid(x)


def _gelu(x):
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def _gelu_approx(x):  # mlx.nn.gelu_approx's formula
    return 0.5 * x * (1 + mx.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


@zmlx.elementwise
def silu_kernel(x):
    return _silu(x)


@zmlx.elementwise
def gelu_kernel(x):
    return _gelu(x)


@zmlx.elementwise
def gelu_approx_kernel(x):
    return _gelu_approx(x)


@zmlx.elementwise
def swiglu_kernel(gate, up):
    return _silu(gate) * up


@zmlx.elementwise
def geglu_kernel(gate, up):
    return _gelu(gate) * up


@zmlx.elementwise
def geglu_approx_kernel(gate, up):
    return _gelu_approx(gate) * up


@zmlx.map_reduce
def swiglu_halves_kernel(x):  # one row [gate | up] of length 2H -> H
    h = x.shape[-1] // 2
    return _silu(x[:h]) * x[h:]


@zmlx.map_reduce
def geglu_halves_kernel(x):
    h = x.shape[-1] // 2
    return _gelu(x[:h]) * x[h:]


@zmlx.map_reduce
def geglu_approx_halves_kernel(x):
    h = x.shape[-1] // 2
    return _gelu_approx(x[:h]) * x[h:]


@zmlx.map_reduce
def softmax_kernel(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


@zmlx.map_reduce
def log_softmax_kernel(x):
    return x - mx.logsumexp(x)


# gated products by the activation of the gate: (elementwise (gate, up), on one [gate | up] row)
GATED = {"silu": (swiglu_kernel, swiglu_halves_kernel), "gelu": (geglu_kernel, geglu_halves_kernel),
         "gelu_approx": (geglu_approx_kernel, geglu_approx_halves_kernel)}


def silu(x: mx.array, *, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.silu: x * sigmoid(x)."""
    return on(silu_kernel, backend)(x)


def gelu(x: mx.array, *, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.gelu: x * Phi(x) with the exact Gaussian CDF."""
    return on(gelu_kernel, backend)(x)


def gelu_approx(x: mx.array, *, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.gelu_approx: the tanh approximation of gelu."""
    return on(gelu_approx_kernel, backend)(x)


def swiglu(gate: mx.array, up: mx.array, *, backend: Optional[str] = None) -> mx.array:
    """silu(gate) * up, one kernel (mlx-lm's swiglu)."""
    return on(swiglu_kernel, backend)(gate, up)


def geglu(gate: mx.array, up: mx.array, *, approx: bool = False, backend: Optional[str] = None) -> mx.array:
    """gelu(gate) * up (gelu_approx with approx=True, as gemma2/3's MLP), one kernel."""
    return on(GATED["gelu_approx" if approx else "gelu"][0], backend)(gate, up)


def _on_axis(kernel, x: mx.array, axis: int, backend: Optional[str]) -> mx.array:
    """A row kernel over `axis` (moved last and back when it is another axis)."""
    k = on(kernel, backend)
    if axis in (-1, x.ndim - 1):
        return k(x)
    return mx.moveaxis(k(mx.moveaxis(x, axis, -1)), -1, axis)


def softmax(x: mx.array, axis: int = -1, *, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.softmax over one axis, one fused row kernel."""
    return _on_axis(softmax_kernel, x, axis, backend)


def log_softmax(x: mx.array, axis: int = -1, *, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.log_softmax over one axis, one fused row kernel."""
    return _on_axis(log_softmax_kernel, x, axis, backend)


class SiLU(mnn.Module):
    """mlx.nn.SiLU as a kernel."""

    def __init__(self, *, backend: Optional[str] = None) -> None:
        super().__init__()
        self.backend = backend

    def __call__(self, x: mx.array) -> mx.array:
        return silu(x, backend=self.backend)


class GELU(mnn.Module):
    """mlx.nn.GELU as a kernel: approx 'none' (erf) or 'precise'/'tanh' (the tanh form)."""

    def __init__(self, approx: str = "none", *, backend: Optional[str] = None) -> None:
        super().__init__()
        if approx not in ("none", "precise", "tanh"):
            raise ValueError(f"GELU: approx must be 'none', 'precise' or 'tanh' here, got {approx!r} "
                             f"(mlx.nn's 'fast' is x * sigmoid(1.702 x), not served)")
        self.approx = approx
        self.backend = backend

    def __call__(self, x: mx.array) -> mx.array:
        return (gelu if self.approx == "none" else gelu_approx)(x, backend=self.backend)


class SwiGLU(mnn.Module):
    """mlx-lm's SwiGLU activation module (switch_layers, the experts' MLPs): called (x, gate), silu(gate) * x."""

    def __init__(self, *, backend: Optional[str] = None) -> None:
        super().__init__()
        self.backend = backend

    def __call__(self, x: mx.array, gate: mx.array) -> mx.array:
        return swiglu(gate, x, backend=self.backend)
