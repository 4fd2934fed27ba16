"""Fused losses with `@zmlx.reduce` (one value per row): cross-entropy from logits and entropy,
checked against MLX, gradients included."""
import mlx.core as mx
import mlx.nn as nn

import zmlx_dsl as zmlx
from zmlx_dsl.testing import assert_gradient_matches


@zmlx.reduce
def cross_entropy(logits, onehot):
    m = logits.max()
    lse = m + mx.log(mx.exp(logits - m).sum())
    return lse - (logits * onehot).sum()


@zmlx.reduce
def entropy(p):
    return -(p * mx.log(p + 1e-8)).sum()


if __name__ == "__main__":
    logits = mx.random.normal((16, 100))
    labels = mx.random.randint(0, 100, (16,))
    onehot = (mx.arange(100)[None, :] == labels[:, None]).astype(mx.float32)
    got = cross_entropy(logits, onehot)
    want = nn.losses.cross_entropy(logits, labels)
    assert got.shape == want.shape == (16,) and mx.allclose(got, want, atol=1e-5)
    g_got = mx.grad(lambda z: cross_entropy(z, onehot).mean())(logits)
    g_want = mx.grad(lambda z: nn.losses.cross_entropy(z, labels).mean())(logits)
    assert mx.allclose(g_got, g_want, atol=1e-6)
    assert_gradient_matches(entropy, lambda p: -(p * mx.log(p + 1e-8)).sum(axis=-1), shapes=[(4, 64)],
                            domain=(0.01, 1.0), atol=1e-4)
    print("cross_entropy, entropy: values and gradients match MLX")
