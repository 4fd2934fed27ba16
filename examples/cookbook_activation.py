"""COOKBOOK: Custom Activation with Gradient (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl.api import elementwise
from zmlx_dsl import msl
import mlx.core as mx

# SiLU (Swish) with analytic gradient
silu = elementwise(
    "kk_silu(x)",
    name="my_silu",
    grad_expr="g * (s + x * s * ((T)1 - s))",
    grad_prelude="T s = kk_sigmoid(x);",
    use_output=False,
    header=msl.DEFAULT_HEADER,
)

x = mx.random.normal((8, 1024))
y = silu(x)
gx = mx.grad(lambda z: silu(z).sum())(x)
mx.eval(y, gx)

# ---- check against MLX (random cotangents, so a VJP that ignored g would fail) ----
import zmlx_dsl.testing  # noqa: E402

ref = lambda z: z * mx.sigmoid(z)  # noqa: E731
assert y.shape == x.shape and y.dtype == x.dtype
assert mx.allclose(y, ref(x), atol=1e-6)
assert mx.allclose(gx, mx.grad(lambda z: ref(z).sum())(x), atol=1e-5)
zmlx_dsl.testing.assert_matches(silu, ref, shapes=[(8, 1024)], dtypes=[mx.float32, mx.float16])
zmlx_dsl.testing.assert_gradient_matches(silu, ref, shapes=[(8, 1024)])
print("cookbook_activation: ok")
