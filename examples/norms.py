"""RMSNorm and LayerNorm as fused row kernels (`@zmlx.map_reduce`: the body sees ONE row),
checked against mx.fast.rms_norm / layer_norm, gradients of the weight included."""
import mlx.core as mx

import zmlx_dsl as zmlx
from zmlx_dsl.testing import assert_gradient_matches, assert_matches


@zmlx.map_reduce
def rms_norm(x, w):
    return x * mx.rsqrt((x * x).mean() + 1e-5) * w


@zmlx.map_reduce
def layer_norm(x, w, b):
    mu = x.mean()
    d = x - mu
    return d * mx.rsqrt((d * d).mean() + 1e-5) * w + b


if __name__ == "__main__":
    D = 512
    w = mx.random.normal((D,))
    b = mx.random.normal((D,))
    x = mx.random.normal((8, D))
    assert mx.allclose(rms_norm(x, w), mx.fast.rms_norm(x, w, 1e-5), atol=1e-4)
    assert mx.allclose(layer_norm(x, w, b), mx.fast.layer_norm(x, w, b, 1e-5), atol=1e-4)
    # gradients w.r.t. x AND the weights (the weight's gradient is summed over the rows)
    assert_gradient_matches(lambda a, v: rms_norm(a, v[0]), lambda a, v: mx.fast.rms_norm(a, v[0], 1e-5),
                            shapes=[(6, D)], n_inputs=2, atol=1e-4, rtol=1e-3)
    assert_gradient_matches(lambda a, v, c: layer_norm(a, v[0], c[0]),
                            lambda a, v, c: mx.fast.layer_norm(a, v[0], c[0], 1e-5),
                            shapes=[(6, D)], n_inputs=3, atol=1e-4, rtol=1e-3)
    assert_matches(lambda a: rms_norm(a, mx.ones((D,))), lambda a: mx.fast.rms_norm(a, mx.ones((D,)), 1e-5),
                   shapes=[(3, 4, D)], dtypes=[mx.float32, mx.float16, mx.bfloat16], atol=1e-2, rtol=1e-2)
    print("rms_norm, layer_norm: values and gradients (x and weights) match MLX")
