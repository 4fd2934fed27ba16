"""COOKBOOK: Cross-entropy with integer labels: a row reduction that indexes its row by a per-row value.

logits are (R, V), labels (R,) integers; each body is MLX code for ONE row, where the row's label
is one 0-d value. `logits[label]` gathers the true class's logit; the label-smoothed loss builds
its target row from `mx.arange(V) == label`, and `mx.take_along_axis(logits, label[None], axis=-1)`
(the way mlx.nn writes the gather, summed to one value) works in a body too. Values and gradients of the logits
(random cotangent) are checked against mlx.nn.losses.cross_entropy(reduction="none"), with and
without label_smoothing. Then the generated Metal source of the plain loss is printed.

  python examples/cookbook_cross_entropy.py                           # default backend (mlx on Linux)
  ZMLX_DSL_BACKEND=metal-sim python examples/cookbook_cross_entropy.py  # the MSL, run on the CPU
"""
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np

import zmlx_dsl as zmlx
from zmlx_dsl import backend as backends


@zmlx.reduce
def cross_entropy(logits, label):
    return mx.logsumexp(logits) - logits[label]


@zmlx.reduce
def cross_entropy_take(logits, label):  # mlx.nn's gather; .sum() makes its (1,) result one value
    # (MLX's `[0]` is rejected here: in a body label[None] stays one value per row, not a row of one)
    return mx.logsumexp(logits) - mx.take_along_axis(logits, label[None], axis=-1).sum()


@zmlx.reduce
def cross_entropy_smoothed(logits, label, smoothing=0.1):
    V = logits.shape[-1]
    target = mx.where(mx.arange(V) == label, 1.0 - smoothing, 0.0) + smoothing / V
    return mx.logsumexp(logits) - (target * logits).sum()


def example_inputs(R=16, V=1000):
    """logits (R, V) float32 and labels (R,) int32, the shapes every kernel above takes."""
    mx.random.seed(0)
    return mx.random.normal((R, V)) * 3, mx.random.randint(0, V, (R,), dtype=mx.int32)


if __name__ == "__main__":
    logits, labels = example_inputs()
    print(f"backend: {backends.default()}  logits {logits.shape}, labels {labels.shape} {labels.dtype}")

    failed = False
    cot = mx.array(np.random.default_rng(0).standard_normal(labels.shape).astype(np.float32))
    cases = [(cross_entropy, {}, 0.0), (cross_entropy_take, {}, 0.0),
             (cross_entropy_smoothed, {}, 0.1), (cross_entropy_smoothed, {"smoothing": 0.3}, 0.3)]
    for kernel, kw, ls in cases:
        got = kernel(logits, labels, **kw)
        want = nn.losses.cross_entropy(logits, labels, label_smoothing=ls, reduction="none")
        err = mx.abs(got - want).max().item()
        # gradient of the logits under a random cotangent (labels are integers: no gradient)
        _, (g_got,) = mx.vjp(lambda z: [kernel(z, labels, **kw)], [logits], [cot])
        _, (g_want,) = mx.vjp(lambda z: [nn.losses.cross_entropy(z, labels, label_smoothing=ls)], [logits],
                               [cot])
        g_err = mx.abs(g_got - g_want).max().item()
        ok = (got.shape == want.shape and got.dtype == want.dtype and err <= 1e-4
              and g_got.shape == logits.shape and g_err <= 1e-5)
        failed |= not ok
        print(f"{kernel.name:<22} label_smoothing={ls}: max|err| {err:.1e}, "
              f"gradient max|err| {g_err:.1e}  {'ok' if ok else 'FAIL'}")

    # The MSL that runs on a Mac, for these arguments. (`zmlx-dsl show FILE::KERNEL` cannot show this
    # kernel: it calls it with every input of one --shape and --dtype, and labels are (R,) integers.)
    print("\n// metal source of cross_entropy for logits (R, V) float32, labels (R,) int32:")
    print(cross_entropy.source(logits, labels, backend="metal"))
    if failed:
        sys.exit("cookbook_cross_entropy: FAILED")
    print("cookbook_cross_entropy: ok")
