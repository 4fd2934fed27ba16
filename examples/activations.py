"""Activation functions as Python kernels (the decorator form), checked against MLX: values,
dtypes and gradients. The same kernels written as ZMLX strings are in cookbook_activation.py."""
import math

import mlx.core as mx
import mlx.nn as nn

import zmlx_dsl as zmlx
from zmlx_dsl.testing import assert_gradient_matches, assert_matches


@zmlx.elementwise
def silu(x):
    return x * mx.sigmoid(x)


@zmlx.elementwise
def gelu_tanh(x):
    return 0.5 * x * (1.0 + mx.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


@zmlx.elementwise
def mish(x):
    return x * mx.tanh(mx.logaddexp(x, 0.0))


@zmlx.elementwise
def leaky_relu(x, slope=0.01):
    if x > 0:               # both branches are computed and merged with a select
        return x
    return slope * x


# one name, two forms: the same SiLU as a ZMLX string
silu_str = zmlx.elementwise("kk_silu(x)", name="silu_str")

CASES = [(silu, nn.silu), (gelu_tanh, nn.gelu_approx), (mish, nn.mish),
         (leaky_relu, lambda x: nn.leaky_relu(x, 0.01)), (silu_str, nn.silu)]

if __name__ == "__main__":
    for kernel, ref in CASES:
        atol = 1e-3 if ref is nn.gelu_approx else None  # MLX's gelu_approx uses a slightly different constant
        assert_matches(kernel, ref, shapes=[(4, 256)], atol=atol, rtol=1e-2 if atol else None)
        assert_gradient_matches(kernel, ref, shapes=[(4, 256)], atol=atol, rtol=1e-2 if atol else None)
        print(f"{kernel.name}: values and gradients match MLX")
    assert_matches(silu, nn.silu, shapes=[(1000,)], dtypes=[mx.float16, mx.bfloat16])  # output keeps the dtype
    print(silu.ir(mx.zeros((4,))))
