"""COOKBOOK: Custom Reduction (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl.api import reduce
import mlx.core as mx

row_max = reduce(
    init="-INFINITY",
    update="max(acc, v)",
    name="row_max",
)

x = mx.random.normal((8, 2048))
maxvals = row_max(x)  # shape (8,)
mx.eval(maxvals)

# ---- check against MLX ----
import zmlx_dsl.testing  # noqa: E402

assert maxvals.shape == (8,)
assert mx.array_equal(maxvals, x.max(axis=-1))
zmlx_dsl.testing.assert_matches(row_max, lambda z: z.max(axis=-1), shapes=[(8, 2048), (3, 5, 7)])
zmlx_dsl.testing.assert_gradient_matches(row_max, lambda z: z.max(axis=-1), shapes=[(8, 64)])
print("cookbook_reduction: ok")
