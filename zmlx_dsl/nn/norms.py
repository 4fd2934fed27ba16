"""Norms as fused row kernels: mlx.nn.RMSNorm and LayerNorm (same parameters, so weights load
unchanged), and the `1 + weight` RMSNorm of the gemma families."""
from __future__ import annotations

from typing import Optional

import mlx.core as mx
import mlx.nn as mnn

from .. import decorators as zmlx
from .backends import on


@zmlx.map_reduce
def rms_norm_kernel(x, w, *, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


@zmlx.map_reduce
def rms_norm_offset_kernel(x, w, *, eps):  # gemma: the weight is stored as (scale - 1)
    return x * mx.rsqrt(mx.mean(x * x) + eps) * (1 + w)


@zmlx.map_reduce
def rms_norm_plain_kernel(x, *, eps):  # no weight (mx.fast.rms_norm(x, None, eps))
    return x * mx.rsqrt(mx.mean(x * x) + eps)


@zmlx.map_reduce
def layer_norm_kernel(x, w, b, *, eps):
    d = x - mx.mean(x)
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w + b


@zmlx.map_reduce
def layer_norm_weight_kernel(x, w, *, eps):
    d = x - mx.mean(x)
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w


@zmlx.map_reduce
def layer_norm_plain_kernel(x, *, eps):
    d = x - mx.mean(x)
    return d * mx.rsqrt(mx.mean(d * d) + eps)


def rms_norm(x: mx.array, weight: Optional[mx.array], eps: float, *, offset: bool = False,
             backend: Optional[str] = None) -> mx.array:
    """mx.fast.rms_norm(x, weight, eps) (with weight 1 + `weight` when offset=True), one row kernel."""
    if weight is None:
        return on(rms_norm_plain_kernel, backend)(x, eps=eps)
    if offset and weight.dtype != mx.float32:
        # gemma's `1.0 + weight` rounds to the weight's dtype, but in a kernel body `(1 + w).astype(w.dtype)`
        # keeps the unrounded float32 intermediate: the sum is made by MLX, outside the kernel
        return on(rms_norm_kernel, backend)(x, 1.0 + weight, eps=eps)
    return on(rms_norm_offset_kernel if offset else rms_norm_kernel, backend)(x, weight, eps=eps)


def layer_norm(x: mx.array, weight: Optional[mx.array], bias: Optional[mx.array], eps: float, *,
               backend: Optional[str] = None) -> mx.array:
    """mx.fast.layer_norm(x, weight, bias, eps), one row kernel."""
    if weight is None and bias is None:
        return on(layer_norm_plain_kernel, backend)(x, eps=eps)
    if bias is None:
        return on(layer_norm_weight_kernel, backend)(x, weight, eps=eps)
    if weight is None:
        return on(layer_norm_kernel, backend)(x, mx.ones(x.shape[-1:], bias.dtype), bias, eps=eps)
    return on(layer_norm_kernel, backend)(x, weight, bias, eps=eps)


class RMSNorm(mnn.RMSNorm):
    """mlx.nn.RMSNorm computed by a row kernel (`weight` and `eps` as mlx.nn's)."""

    def __init__(self, dims: int, eps: float = 1e-5, *, backend: Optional[str] = None) -> None:
        super().__init__(dims, eps)
        self.backend = backend

    def __call__(self, x: mx.array) -> mx.array:
        return rms_norm(x, self["weight"], self.eps, backend=self.backend)


class OffsetRMSNorm(RMSNorm):
    """The gemma families' RMSNorm: scales by `1 + weight` (their checkpoints store the scale minus one)."""

    def __call__(self, x: mx.array) -> mx.array:
        return rms_norm(x, self["weight"], self.eps, offset=True, backend=self.backend)


class LayerNorm(mnn.LayerNorm):
    """mlx.nn.LayerNorm computed by a row kernel (`weight`/`bias` present as mlx.nn's affine/bias say)."""

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True, *,
                 backend: Optional[str] = None) -> None:
        super().__init__(dims, eps, affine, bias)
        self.backend = backend

    def __call__(self, x: mx.array) -> mx.array:
        return layer_norm(x, self.get("weight"), self.get("bias"), self.eps, backend=self.backend)
