"""COOKBOOK: Softmax (Map-Reduce Pattern) (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl.api import map_reduce
import mlx.core as mx

my_softmax = map_reduce(
    pass1={"init": "-INFINITY", "update": "max(acc1, x)", "reduce": "max(a, b)"},
    pass2={"init": "0.0f", "update": "acc2 + exp(x - s1)", "reduce": "a + b"},
    write="exp(x - s1) / s2",
    name="my_softmax",
)

x = mx.random.normal((8, 1024))
y = my_softmax(x)
mx.eval(y)

# Verify
ref = mx.softmax(x, axis=-1)
mx.eval(ref)
assert mx.allclose(y, ref, atol=1e-5)

# ---- more checks: dtypes and the (automatic) gradient ----
import zmlx_dsl.testing  # noqa: E402

sm = lambda z: mx.softmax(z, axis=-1)  # noqa: E731
zmlx_dsl.testing.assert_matches(my_softmax, sm, shapes=[(8, 1024), (2, 3, 100)], dtypes=[mx.float32, mx.float16])
zmlx_dsl.testing.assert_gradient_matches(my_softmax, sm, shapes=[(4, 128)])
print("cookbook_softmax: ok")
