"""Rotary position embeddings as row kernels: mlx.nn.RoPE (traditional or half-split, base, scale,
the KV cache's offset, partial `dims`) and mlx.fast.rope's `freqs=` form used by mlx-lm's scaled
ropes. The body rotates one head vector; the angles come from a position (a row of one) times the
inverse frequencies (a row of dims/2), so no cos/sin table is built per call."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import mlx.core as mx
import mlx.nn as mnn

from .. import backend as backends
from .. import decorators as zmlx
from ..kernels import Kernel
from .backends import on


@zmlx.map_reduce
def rope_kernel(x, pos, inv_freq, *, mscale):  # half-split: (x[:h], x[h:2h]) rotated, the rest kept
    h = inv_freq.shape[-1]
    a = pos * inv_freq
    c = mx.cos(a) * mscale
    s = mx.sin(a) * mscale
    x1, x2 = x[:h], x[h:2 * h]
    if 2 * h < x.shape[-1]:
        return mx.concatenate([x1 * c - x2 * s, x2 * c + x1 * s, x[2 * h:]]).astype(x.dtype)
    return mx.concatenate([x1 * c - x2 * s, x2 * c + x1 * s]).astype(x.dtype)


@zmlx.map_reduce
def rope_traditional_kernel(x, pos, inv_freq, *, mscale):  # interleaved pairs (x[0::2], x[1::2])
    h = inv_freq.shape[-1]
    a = pos * inv_freq
    c = mx.cos(a) * mscale
    s = mx.sin(a) * mscale
    x1, x2 = x[0:2 * h:2], x[1:2 * h:2]
    y = mx.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1).reshape(-1)
    if 2 * h < x.shape[-1]:
        return mx.concatenate([y, x[2 * h:]]).astype(x.dtype)
    return y.astype(x.dtype)


def inverse_frequencies(dims: int, base: Optional[float], freqs: Optional[mx.array] = None) -> mx.array:
    """The (dims/2,) angular frequencies mx.fast.rope uses: base**(-2i/dims), or 1/freqs."""
    if freqs is not None:
        return 1.0 / freqs.astype(mx.float32)
    return mx.exp(mx.arange(0, dims, 2, dtype=mx.float32) * (-math.log(base) / dims))


def positions(length: int, offset: Union[int, mx.array], scale: float) -> mx.array:
    """Scaled positions of the L rows as a row of one per position: (L, 1), or (B, 1, L, 1) for a (B,) offset."""
    if isinstance(offset, mx.array):
        p = offset.astype(mx.float32)[..., None] + mx.arange(length, dtype=mx.float32)
        p = p[..., None] if p.ndim == 1 else p[:, None, :, None]
    else:
        p = mx.arange(offset, offset + length, dtype=mx.float32)[:, None]
    return p * scale if scale != 1.0 else p


def rope(x: mx.array, dims: int, *, traditional: bool, base: Optional[float], scale: float,
         offset: Union[int, mx.array], freqs: Optional[mx.array] = None, mscale: float = 1.0,
         backend: Optional[str] = None) -> mx.array:
    """mx.fast.rope(x, dims, ...) over x (..., L, D), the rotated dims times `mscale` (a scaled rope's input scale)."""
    if dims % 2 or dims > x.shape[-1]:
        raise ValueError(f"rope: dims must be even and at most the last axis ({x.shape[-1]}), got {dims}")
    return rotate(x, positions(x.shape[-2], offset, scale), inverse_frequencies(dims, base, freqs),
                  traditional=traditional, mscale=mscale, backend=backend)


def rotate(x: mx.array, pos: mx.array, inv_freq: mx.array, *, traditional: bool, mscale: float = 1.0,
           backend: Optional[str] = None) -> mx.array:
    """The rotation kernel itself, for precomputed positions and inverse frequencies."""
    k = on(rope_traditional_kernel if traditional else rope_kernel, backend)
    if (backend or k.backend or backends.default()) == "mlx":  # MLX differentiates the kernel's ops itself
        return k(x, pos, inv_freq, mscale=mscale)
    return _with_vjp(k, mscale)(x, pos, inv_freq)


_VJP: dict[tuple[int, float], Callable] = {}


def _with_vjp(k: Kernel, mscale: float) -> Callable:
    """The kernel with its VJP written as the inverse rotation (the same kernel at -angle): the
    generated backward would also reduce the gradients of the positions and frequencies over every
    row, which nothing needs."""
    key = (id(k), mscale)
    f = _VJP.get(key)
    if f is None:
        @mx.custom_function
        def f(x, pos, inv_freq):
            return k(x, pos, inv_freq, mscale=mscale)

        @f.vjp
        def f_vjp(primals, cotangent, output):
            x, pos, inv_freq = primals
            return k(cotangent, pos, -inv_freq, mscale=mscale), mx.zeros_like(pos), mx.zeros_like(inv_freq)

        _VJP[key] = f
    return f


class RoPE(mnn.RoPE):
    """mlx.nn.RoPE (dims, traditional, base, scale; call with the KV cache's offset) as a row kernel."""

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000, scale: float = 1.0, *,
                 backend: Optional[str] = None) -> None:
        super().__init__(dims, traditional, base, scale)
        self.backend = backend
        self._inv_freq = inverse_frequencies(dims, base)  # not an mx.array attribute of the Module tree

    def __call__(self, x: mx.array, offset: Union[int, mx.array] = 0) -> mx.array:
        return rotate(x, positions(x.shape[-2], offset, self.scale), self._inv_freq,
                      traditional=self.traditional, backend=self.backend)


class FreqsRoPE(mnn.Module):
    """mx.fast.rope(..., base=None, freqs=) as a row kernel, the rotated dims times `mscale`: mlx-lm's
    Llama3RoPE, YarnRoPE, SuScaledRoPE and ProportionalRoPE. Called as YarnRoPE: (x, offset, scale, inverse)."""

    def __init__(self, dims: int, freqs: mx.array, traditional: bool = False, mscale: float = 1.0, *,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.mscale = mscale
        self.backend = backend
        self._freqs = freqs
        self._inv_freq = inverse_frequencies(dims, None, freqs)

    def __call__(self, x: mx.array, offset: Union[int, mx.array] = 0, scale: float = 1.0,
                 inverse: bool = False) -> mx.array:
        inv_freq, mscale = (-self._inv_freq, 1.0 / self.mscale) if inverse else (self._inv_freq, self.mscale)
        return rotate(x, positions(x.shape[-2], offset, scale), inv_freq, traditional=self.traditional,
                      mscale=mscale, backend=self.backend)
