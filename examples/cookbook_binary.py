"""COOKBOOK: Binary Op with Gradient (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl import autograd
import mlx.core as mx

# Safe multiply: a * b with gradients for both
safe_mul = autograd.binary_from_expr(
    name="safe_mul",
    fwd_expr="a * b",
    vjp_lhs_expr="g * b",
    vjp_rhs_expr="g * a",
    compute_dtype=mx.float32,
)

a = mx.random.normal((1024,))
b = mx.random.normal((1024,))
y = safe_mul(a, b)

# ---- check against MLX: values, and gradients for both inputs with random cotangents ----
import zmlx_dsl.testing  # noqa: E402

assert mx.allclose(y, a * b)
zmlx_dsl.testing.assert_gradient_matches(safe_mul, lambda p, q: p * q, shapes=[(1024,), (4, 64)], n_inputs=2)
# broadcasting: the gradient of the smaller input is summed over the broadcast axis
row = mx.random.normal((64,))
m = mx.random.normal((4, 64))
cot = mx.random.normal((4, 64))
_, (ga, gb) = mx.vjp(lambda p, q: safe_mul(p, q), [m, row], [cot])
assert gb.shape == row.shape and mx.allclose(gb, (cot * m).sum(axis=0), atol=1e-5)
print("cookbook_binary: ok")
