"""COOKBOOK: Layer Norm (Map-Reduce Pattern) (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl.api import map_reduce

my_layernorm = map_reduce(
    pass1={"init": "0.0f", "update": "acc1 + x", "reduce": "a + b"},
    pass2={"init": "0.0f", "update": "acc2 + (x - s1/D) * (x - s1/D)", "reduce": "a + b"},
    write="(x - s1/D) * rsqrt(s2/D + 1e-5f)",
    name="my_layernorm",
    threadgroup=256,
)

# ---- check against MLX's layer norm (no affine), values and gradient ----
import mlx.core as mx  # noqa: E402
import zmlx_dsl.testing  # noqa: E402

ref = lambda z: mx.fast.layer_norm(z, None, None, 1e-5)  # noqa: E731
x = mx.random.normal((8, 1024))
assert mx.allclose(my_layernorm(x), ref(x), atol=1e-4)
zmlx_dsl.testing.assert_matches(my_layernorm, ref, shapes=[(8, 1024)], dtypes=[mx.float32, mx.bfloat16], atol=1e-4)
zmlx_dsl.testing.assert_gradient_matches(my_layernorm, ref, shapes=[(4, 256)], atol=1e-4, rtol=1e-3)
print("cookbook_layernorm: ok")
