"""COOKBOOK: Rotary embeddings (RoPE): row kernels that index their row, checked vs mx.fast.rope.

Each body is MLX code for ONE row (one head vector of length D): it slices the row into halves
(mlx-lm's default, `traditional=False`) or into even/odd lanes (`traditional=True`) and puts the
rotated halves back together. x is (B, H, S, D); the cos/sin tables are (S, D//2) and broadcast
over the leading axes (B, H) like any row input. Values are checked against mx.fast.rope;
gradients (random cotangent) of x against mx.fast.rope's, of cos and sin against MLX's of the
same rotation written over whole arrays. Then the Metal source of the half-split kernel is printed.

  python examples/cookbook_rope.py                           # default backend (mlx on Linux)
  ZMLX_DSL_BACKEND=metal-sim python examples/cookbook_rope.py  # the MSL, run on the CPU
"""
import sys

import mlx.core as mx
import numpy as np

import zmlx_dsl as zmlx
from zmlx_dsl import backend as backends


@zmlx.map_reduce
def rope(x, cos, sin):  # half-split rotation: (x1, x2) = (x[:h], x[h:])
    h = x.shape[-1] // 2
    x1, x2 = x[:h], x[h:]
    return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin])


@zmlx.map_reduce
def rope_traditional(x, cos, sin):  # interleaved rotation: (x1, x2) = (x[0::2], x[1::2])
    x1, x2 = x[0::2], x[1::2]
    return mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(-1)


def rope_tables(S, D, base=10000.0):
    """cos, sin of shape (S, D//2) as mx.fast.rope builds them: angle = position * base**(-2i/D)."""
    theta = mx.power(base, -mx.arange(0, D, 2, dtype=mx.float32) / D)
    angle = mx.arange(S, dtype=mx.float32)[:, None] * theta[None, :]
    return mx.cos(angle), mx.sin(angle)


def example_inputs(B=2, H=4, S=16, D=64):
    """x (B, H, S, D) and its cos/sin tables (S, D//2), the arguments both kernels above take."""
    mx.random.seed(0)
    return (mx.random.normal((B, H, S, D)),) + rope_tables(S, D)


# The same rotations over whole arrays (eager MLX): the gradient reference.
def rope_ref(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rope_traditional_ref(x, cos, sin):
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(x.shape)


if __name__ == "__main__":
    x, cos, sin = example_inputs()
    D = x.shape[-1]
    print(f"backend: {backends.default()}  x {x.shape}, cos/sin {cos.shape}")

    failed = False
    rng = np.random.default_rng(0)
    for kernel, ref, traditional in ((rope, rope_ref, False), (rope_traditional, rope_traditional_ref, True)):
        got = kernel(x, cos, sin)
        want = mx.fast.rope(x, D, traditional=traditional, base=10000.0, scale=1.0, offset=0)
        err = mx.abs(got - want).max().item()
        # gradients of x, cos and sin under one random cotangent, against MLX's of the eager body
        # (and x's against mx.fast.rope's own)
        cot = mx.array(rng.standard_normal(x.shape).astype(np.float32))
        _, g_got = mx.vjp(lambda *a: [kernel(*a)], [x, cos, sin], [cot])
        _, g_want = mx.vjp(lambda *a: [ref(*a)], [x, cos, sin], [cot])
        _, (g_fast,) = mx.vjp(lambda z: [mx.fast.rope(z, D, traditional=traditional, base=10000.0, scale=1.0,
                                                      offset=0)], [x], [cot])
        g_want = [g_fast] + list(g_want[1:])
        g_err = max(mx.abs(a - b).max().item() for a, b in zip(g_got, g_want))
        ok = (got.shape == want.shape and got.dtype == want.dtype and err <= 1e-4
              and all(a.shape == b.shape for a, b in zip(g_got, g_want)) and g_err <= 1e-4)
        failed |= not ok
        print(f"{kernel.name:<17} vs mx.fast.rope(traditional={traditional}): max|err| {err:.1e}, "
              f"gradients of x, cos, sin max|err| {g_err:.1e}  {'ok' if ok else 'FAIL'}")

    # The MSL that runs on a Mac, for these arguments. (`zmlx-dsl show FILE::KERNEL` cannot show this
    # kernel: it calls it with every input of one --shape, and cos/sin rows are half of x's.)
    print("\n// metal source of rope for x (B, H, S, D), cos/sin (S, D//2):")
    print(rope.source(x, cos, sin, backend="metal"))
    if failed:
        sys.exit("cookbook_rope: FAILED")
    print("cookbook_rope: ok")
