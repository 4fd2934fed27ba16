"""Checking a kernel against a reference: values, shape and dtype, and gradients.

Gradients are compared with `mx.vjp` under RANDOM cotangents for EVERY input, so a VJP that
ignores its cotangent (or drops an input's gradient) fails; `.sum()` would hide that (g = 1).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np

from .kernels import row_inputs
from .runtime import as_tuple

# (atol, rtol) per dtype when the caller gives none
TOLERANCES = {mx.float32: (1e-5, 1e-4), mx.float16: (2e-3, 5e-3), mx.bfloat16: (2e-2, 2e-2)}


def rowwise(body: Callable, args: Sequence[Any]) -> Callable:
    """The reference of a row kernel: `body` applied to each row as the kernel sees it, called with
    the kernel's arguments. Arrays are rows on their last axis, broadcast over their leading axes;
    an (R,) or 0-d array is one value (0-d) per row; Python scalars are held fixed.

    The rows go through a Python loop, not mx.vmap: MLX 0.32.4's vmap is wrong for bodies real
    kernels contain (`a & b` with one operand made in the body reads past that operand's buffer;
    `z[1:3] = v` updates the first row of the batch only; a pad by an array value is refused), and
    a reference must be the body's own MLX semantics."""
    pos = [i for i, a in enumerate(args) if isinstance(a, mx.array)]

    def call(*full):
        arrays = [full[i] for i in pos]
        rows = row_inputs(arrays, getattr(body, "__name__", "body"))
        lead = tuple(mx.broadcast_shapes(*[r.shape[:-1] for r in rows]))
        flat = []
        for a, r in zip(arrays, rows):
            b = mx.broadcast_to(r, lead + r.shape[-1:]).reshape((-1, r.shape[-1]))
            flat.append(b[:, 0] if r.ndim != a.ndim else b)  # one value per row: 0-d in the body
        per_row, is_tuple = [], False
        for j in range(int(np.prod(lead))):
            one = list(full)
            for i, f in zip(pos, flat):
                one[i] = f[j]
            out = body(*one)
            is_tuple = isinstance(out, (tuple, list))
            per_row.append(as_tuple(out))
        if not per_row:  # no rows: the body on one row of zeros gives the output shapes and dtypes
            one = list(full)
            for i, f in zip(pos, flat):
                one[i] = mx.zeros(f.shape[1:], f.dtype)
            out = body(*one)
            is_tuple = isinstance(out, (tuple, list))
            shaped = [mx.zeros(lead + o.shape, o.dtype) for o in as_tuple(out)]
        else:
            shaped = [mx.stack(list(o)).reshape(lead + o[0].shape) for o in zip(*per_row)]
        return tuple(shaped) if is_tuple else shaped[0]
    return call


def _inputs(shape: tuple, dtype: Any, n: int, rng: np.random.Generator,
            domain: Optional[tuple[float, float]]) -> list[mx.array]:
    lo, hi = domain or (-3.0, 3.0)
    return [mx.array(rng.uniform(lo, hi, size=shape).astype(np.float32)).astype(dtype) for _ in range(n)]


def _name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _check(got: Any, want: Any, atol: Optional[float], rtol: Optional[float], what: str) -> None:
    """One array against its reference: dtype, shape, values (NaN matches NaN, infinities exactly)."""
    if not isinstance(got, mx.array):
        raise AssertionError(f"{what}: got {type(got).__name__}, expected an mx.array")
    if got.dtype != want.dtype:
        raise AssertionError(f"{what}: dtype {got.dtype} != reference dtype {want.dtype}")
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != reference shape {want.shape}")
    a_def, r_def = TOLERANCES.get(want.dtype, (0.0, 0.0))
    atol, rtol = (a_def if atol is None else atol), (r_def if rtol is None else rtol)
    g = np.array(got.astype(mx.float32) if got.dtype in TOLERANCES else got).astype(np.float64)
    w = np.array(want.astype(mx.float32) if want.dtype in TOLERANCES else want).astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = (np.isnan(g) & np.isnan(w)) | np.where(np.isinf(w) | np.isinf(g), g == w,
                                                     np.abs(g - w) <= atol + rtol * np.abs(w))
    if not ok.all():
        idx = [tuple(int(i) for i in ix) for ix in np.argwhere(~ok)[:3]]
        detail = ", ".join(f"{ix}: {float(g[ix])!r} vs {float(w[ix])!r}" for ix in idx)
        raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.size} values differ from the reference "
                             f"(atol={atol}, rtol={rtol}); e.g. at {detail}")


def assert_matches(fn: Callable, ref: Callable, shapes: Sequence[tuple], *, dtypes: Sequence[Any] = (mx.float32,),
                   atol: Optional[float] = None, rtol: Optional[float] = None, n_inputs: int = 1, seed: int = 0,
                   domain: Optional[tuple[float, float]] = None) -> None:
    """fn(*inputs) equals ref(*inputs) for random inputs of every shape and dtype (uniform in
    `domain`, default [-3, 3)): same number of outputs, dtypes, shapes and values."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for dtype in dtypes:
            xs = _inputs(tuple(shape), dtype, n_inputs, rng, domain)
            got, want = as_tuple(fn(*xs)), as_tuple(ref(*xs))
            mx.eval(got, want)
            where = f"shape {tuple(shape)} {_name(dtype)}"
            if len(got) != len(want):
                raise AssertionError(f"{where}: {len(got)} outputs, reference has {len(want)}")
            for k, (g, w) in enumerate(zip(got, want)):
                _check(g, w, atol, rtol, f"{where} output {k}")


def assert_gradient_matches(fn: Callable, ref: Callable, shapes: Sequence[tuple], *,
                            dtypes: Sequence[Any] = (mx.float32,), atol: Optional[float] = None,
                            rtol: Optional[float] = None, n_inputs: int = 1, seed: int = 0,
                            domain: Optional[tuple[float, float]] = None) -> None:
    """mx.vjp of fn equals mx.vjp of ref with random cotangents, for every input (gradient
    dtype and shape checked too)."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for dtype in dtypes:
            xs = _inputs(tuple(shape), dtype, n_inputs, rng, domain)
            outs = as_tuple(ref(*xs))
            cots = [mx.array(rng.standard_normal(o.shape).astype(np.float32)).astype(o.dtype) for o in outs]
            _, g_ref = mx.vjp(lambda *a: list(as_tuple(ref(*a))), xs, cots)
            _, g_fn = mx.vjp(lambda *a: list(as_tuple(fn(*a))), xs, cots)
            mx.eval(g_ref, g_fn)
            for i, (g, w) in enumerate(zip(g_fn, g_ref)):
                _check(g, w, atol, rtol, f"shape {tuple(shape)} {_name(dtype)} gradient of input {i}")
