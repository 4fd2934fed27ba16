"""COOKBOOK: Testing Your Kernel (only `zmlx` renamed to `zmlx_dsl`)."""
import zmlx_dsl.testing
from zmlx_dsl.api import elementwise
import mlx.core as mx

_mish_kernel = elementwise("x * tanh(log(1 + exp(x)))", name="test_mish")

def my_mish(x):
    return _mish_kernel(x)

def ref_mish(x):
    return x * mx.tanh(mx.log(1 + mx.exp(x)))

# Value check
zmlx_dsl.testing.assert_matches(my_mish, ref_mish, shapes=[(128,), (1024, 512)])

# Gradient check (both must be differentiable)
# zmlx_dsl.testing.assert_gradient_matches(my_mish_grad, ref_mish, shapes=[(64, 128)])

# ---- parsed expressions get an automatic gradient, so the check runs here ----
zmlx_dsl.testing.assert_gradient_matches(my_mish, ref_mish, shapes=[(64, 128)])
print("cookbook_testing: ok")
