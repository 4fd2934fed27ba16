"""Checking a row kernel against its body applied row by row (zmlx_dsl.testing.rowwise): values,
shape and dtype of every output, then mx.vjp with random cotangents for every float input.
Shared by the row-kernel API tests (indexing, scans and sorts)."""
from __future__ import annotations

import zlib
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np

import zmlx_dsl as zmlx
from zmlx_dsl.kernels import row_inputs
from zmlx_dsl.testing import rowwise

from conftest import assert_close, kernel_of, random_like, restricted

# (atol, rtol): for values and for gradients, per dtype. Data movement is exact; the tolerance is
# for the arithmetic around it (logsumexp, sigmoid), which the kernel computes in float32.
TOL = {mx.float32: (1e-5, 1e-5), mx.bfloat16: (3e-2, 3e-2)}
TOL_GRAD = {mx.float32: (1e-5, 1e-4), mx.bfloat16: (5e-2, 5e-2)}


class GradientMismatch(AssertionError):
    """A gradient differs from the body's (raised after the values matched): what the known-bug
    xfails below expect, so a regression in the values still fails them."""


# ---- helpers --------------------------------------------------------------------------------------

_KERNELS: dict = {}


def kernel(body: Callable, backend: str, kind: str = "map_reduce", **kw) -> zmlx.Kernel:
    """One kernel per (body, backend, kind, options; "mlx:ir": the generated derivatives), shared by the tests (metal-sim compiles once)."""
    key = (body, backend, kind, tuple(sorted(kw.items())))
    if key not in _KERNELS:
        _KERNELS[key] = kernel_of(body, backend, kind, **kw)
    return _KERNELS[key]


def rng_for(*key: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def normal(shape: Sequence[int], rng: np.random.Generator, dtype=mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(tuple(shape)).astype(np.float32)).astype(dtype)


def ints(values: Any) -> mx.array:
    return mx.array(np.asarray(values).astype(np.int32))


def float_pos(args: Sequence[Any]) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, mx.array) and a.dtype in (mx.float32, mx.bfloat16)]


def compare(got: Any, want: Any, tol: tuple, what: str) -> None:
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    assert isinstance(got, tuple) == isinstance(want, tuple), f"{what}: kernel returned {type(got).__name__}"
    assert len(got_t) == len(want_t), f"{what}: {len(got_t)} outputs, the body has {len(want_t)}"
    for k, (g, w) in enumerate(zip(got_t, want_t)):
        assert isinstance(g, mx.array), f"{what} output {k}: {type(g).__name__}"
        assert g.shape == w.shape, f"{what} output {k}: shape {g.shape} != body's {w.shape}"
        assert_close(g, w, atol=tol[0], rtol=tol[1], what=f"{what} output {k}: ")


def check(body: Callable, args: Sequence[Any], backend: str, kind: str = "map_reduce", *,
          grads: bool = True, seed: Any = 0, tol: Optional[tuple] = None, tol_grad: Optional[tuple] = None,
          reference: Callable = rowwise, **kw) -> Any:
    """The kernel of `body` against the body applied row by row (`reference(body, args)`, by
    default testing.rowwise): values, shape, dtype of every output, then mx.vjp with random
    cotangents w.r.t. every float array input."""
    k = kernel(body, backend, kind, **kw)
    ref = reference(body, list(args))
    got, want = k(*args), ref(*args)
    mx.eval(got, want)
    dtype = next(a.dtype for a in args if isinstance(a, mx.array) and a.dtype in TOL) \
        if any(isinstance(a, mx.array) and a.dtype in TOL for a in args) else mx.float32
    compare(got, want, tol or TOL[dtype], f"{body.__name__} on {backend}")
    if not grads:
        return got
    pos = float_pos(args)
    rng = rng_for(body.__name__, seed, "cotangent")
    outs = want if isinstance(want, tuple) else (want,)
    cots = [random_like(o, rng) for o in outs]
    primals = [args[i] for i in pos]
    _, g_ref = mx.vjp(restricted(ref, args, pos), primals, cots)
    _, g_k = mx.vjp(restricted(k, args, pos), primals, cots)
    mx.eval(g_ref, g_k)
    atol, rtol = tol_grad or TOL_GRAD[dtype]
    try:
        for i, gk, gr in zip(pos, g_k, g_ref):
            assert gk.shape == args[i].shape, f"grad {i}: shape {gk.shape} != input's {args[i].shape}"
            assert_close(gk, gr, atol=atol, rtol=rtol, what=f"{body.__name__} on {backend}: grad of argument {i}: ")
    except AssertionError as e:
        raise GradientMismatch(str(e)) from None
    return got
