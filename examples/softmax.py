"""Softmax and log-softmax as fused row kernels, checked against MLX (values, dtypes, gradients)."""
import mlx.core as mx

import zmlx_dsl as zmlx
from zmlx_dsl.testing import assert_gradient_matches, assert_matches


@zmlx.map_reduce
def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


@zmlx.map_reduce
def log_softmax(x):
    m = x.max()
    return x - m - mx.log(mx.exp(x - m).sum())


if __name__ == "__main__":
    for kernel, ref in ((softmax, lambda z: mx.softmax(z, axis=-1)),
                        (log_softmax, lambda z: z - mx.logsumexp(z, axis=-1, keepdims=True))):
        assert_matches(kernel, ref, shapes=[(8, 1024), (2, 3, 33)], dtypes=[mx.float32, mx.float16])
        assert_gradient_matches(kernel, ref, shapes=[(4, 128)])
        print(f"{kernel.name}: values and gradients match MLX")
    print(softmax.ir(mx.zeros((2, 8))))
