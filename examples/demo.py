"""zmlx_dsl demo: kernels written as Python, their generated Metal, and a check against MLX.

Runs on the best backend here (Metal on a Mac, CUDA on NVIDIA, else the portable MLX backend),
and, when a C++ compiler is available, also executes the generated Metal on the CPU (metal-sim).
"""
import mlx.core as mx

import zmlx_dsl as zmlx
from zmlx_dsl import backend as backends


@zmlx.elementwise
def silu(x):
    return x * mx.sigmoid(x)


@zmlx.elementwise
def gelu(x):
    return 0.5 * x * (1 + mx.erf(x * 0.7071067811865476))


@zmlx.map_reduce
def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


@zmlx.map_reduce
def rmsnorm(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


def main() -> None:
    x = mx.random.normal((8, 1024))
    w = mx.random.normal((1024,))
    print("Generated MSL for silu (what mx.fast.metal_kernel compiles):\n")
    print(silu.source(x, backend="metal"))
    ct = mx.random.normal(x.shape)
    generated = zmlx.map_reduce(softmax.__wrapped__, autodiff="ir")  # the symbolic backward kernel
    checks = {
        "silu": (silu(x), x * mx.sigmoid(x)),
        "gelu": (gelu(x), gelu.__wrapped__(x)),
        "softmax": (softmax(x), mx.softmax(x, axis=-1)),
        "rmsnorm": (rmsnorm(x, w, 1e-5), mx.fast.rms_norm(x, w, 1e-5)),
        "grad silu": (mx.grad(lambda z: silu(z).sum())(x), mx.grad(lambda z: (z * mx.sigmoid(z)).sum())(x)),
        "vjp softmax (generated backward)": (mx.vjp(generated, [x], [ct])[1][0],
                                             mx.vjp(lambda z: mx.softmax(z, axis=-1), [x], [ct])[1][0]),
    }
    print(f"backend: {backends.default()}")
    for name, (got, want) in checks.items():
        err = mx.max(mx.abs(got - want)).item()
        print(f"  {name:32s} max |kernel - MLX| = {err:.2e}")
        assert err < 1e-4, name
    try:
        from zmlx_dsl.backend.metal_sim.compiler import find_compiler
    except ImportError:
        find_compiler = None
    if find_compiler is not None and find_compiler():
        sim = zmlx.map_reduce(softmax.__wrapped__, backend="metal-sim")
        err = mx.max(mx.abs(sim(x) - mx.softmax(x, axis=-1))).item()
        print(f"  softmax on metal-sim (the MSL run on the CPU): max error {err:.2e}")
        assert err < 1e-5
    print("ok")


if __name__ == "__main__":
    main()
