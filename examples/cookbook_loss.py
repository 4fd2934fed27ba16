"""COOKBOOK: Custom Loss Function (only `zmlx` renamed to `zmlx_dsl`), then checked vs MLX."""
from zmlx_dsl.api import reduce
import mlx.core as mx

# Entropy: -sum(x * log(x + eps))
entropy = reduce(
    init="0.0f",
    update="acc + (-v * log(v + 1e-8f))",
    name="entropy",
)

probs = mx.softmax(mx.random.normal((4, 1024)), axis=-1)
h = entropy(probs)  # shape (4,)
mx.eval(h)

# ---- check against MLX: values and the (automatic) gradient ----
import zmlx_dsl.testing  # noqa: E402

ref = lambda p: (-p * mx.log(p + 1e-8)).sum(axis=-1)  # noqa: E731
assert h.shape == (4,) and h.dtype == mx.float32
assert mx.allclose(h, ref(probs), atol=1e-4)
zmlx_dsl.testing.assert_gradient_matches(entropy, ref, shapes=[(4, 256)], domain=(0.01, 1.0), atol=1e-4)
print("cookbook_loss: ok")
