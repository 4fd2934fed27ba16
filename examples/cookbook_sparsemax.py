"""COOKBOOK: Sparsemax (Martins & Astudillo, 2016), written for ONE row: sort, cumsum, a threshold.

sparsemax(x) is the Euclidean projection of x onto the probability simplex: many outputs are
exactly 0. For one row: sort descending, find the support {k : 1 + k z_k > sum_{j<=k} z_j}, the
threshold tau = (sum of the support - 1) / |support|, and max(x - tau, 0). The body below is that,
as MLX code; the kernel fuses the sort, the cumsum, both sums and the output in one pass per row,
and its gradient (generated) scatters back through the sort's order. Checked against the same
code over whole arrays: values, the rows summing to 1, and the gradient under a random cotangent.

  python examples/cookbook_sparsemax.py                           # default backend (mlx on Linux)
  ZMLX_DSL_BACKEND=metal-sim python examples/cookbook_sparsemax.py  # the MSL, run on the CPU
"""
import sys

import mlx.core as mx
import numpy as np

import zmlx_dsl as zmlx
from zmlx_dsl import backend as backends


@zmlx.map_reduce
def sparsemax(x):
    z = mx.sort(x)[::-1]
    k = mx.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = 1 + k * z > mx.cumsum(z)
    tau = (mx.sum(mx.where(support, z, 0)) - 1) / mx.sum(support)
    return mx.maximum(x - tau, 0)


def sparsemax_reference(x):
    """The same over whole arrays (rows on the last axis)."""
    z = mx.sort(x, axis=-1)[..., ::-1]
    k = mx.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = 1 + k * z > mx.cumsum(z, axis=-1)
    tau = (mx.sum(mx.where(support, z, 0), axis=-1, keepdims=True) - 1) / mx.sum(support, axis=-1, keepdims=True)
    return mx.maximum(x - tau, 0)


if __name__ == "__main__":
    mx.random.seed(0)
    x = 2 * mx.random.normal((16, 512))
    print(f"backend: {backends.default()}  x {x.shape}")
    y, want = sparsemax(x), sparsemax_reference(x)
    err = mx.abs(y - want).max().item()
    sums = mx.abs(y.sum(axis=-1) - 1).max().item()
    nonzero = (y > 0).sum(axis=-1).tolist()
    cot = mx.array(np.random.default_rng(0).standard_normal(x.shape).astype(np.float32))
    _, (g,) = mx.vjp(lambda a: [sparsemax(a)], [x], [cot])
    _, (g_ref,) = mx.vjp(lambda a: [sparsemax_reference(a)], [x], [cot])
    g_err = mx.abs(g - g_ref).max().item()
    print(f"max |error| {err:.1e}, rows sum to 1 within {sums:.1e}, nonzero per row {nonzero[:8]}...")
    print(f"gradient max |error| {g_err:.1e}")
    sys.exit(0 if err < 1e-5 and sums < 1e-5 and g_err < 1e-5 else 1)
