"""GPU experiments behind RESULTS.md's explanations (MLX's CUDA backend).

    python3 benchmarks/gpu_profile.py          # long rows: register-cached vs re-read, timed A/B
    ncu --section SpeedOfLight --section Occupancy --section LaunchStats \
        python3 benchmarks/gpu_profile.py --once  # each kernel of interest once, for Nsight Compute

The A/B builds the same row kernels under two register budgets (the CUDA renderer's
register_budget): 16384 re-reads rows of 32768 per reduction level; 32768 holds them in
registers (32 per thread at 1024 threads, one group per SM). The CUDA renderer uses 32768 for
32-bit rows and 16384 for 16-bit ones, as these runs measured.
"""
from __future__ import annotations

import sys

import mlx.core as mx

import zmlx_dsl as zmlx
from zmlx_dsl.backend import cuda

import gpu  # the bodies, timing and the copy kernel of benchmarks/gpu.py


def long_rows(total: int) -> None:
    D = 32768
    for dtype in (mx.float32, mx.bfloat16):
        x = mx.random.normal((total // D, D)).astype(dtype)
        w = mx.random.normal((D,)).astype(dtype)
        b = mx.random.normal((D,)).astype(dtype)
        cases = (("softmax", zmlx.map_reduce, gpu.softmax_body, (x,), lambda: mx.softmax(x, axis=-1)),
                 ("rmsnorm", zmlx.map_reduce, gpu.rmsnorm_body, (x, w, 1e-5), lambda: mx.fast.rms_norm(x, w, 1e-5)),
                 ("layernorm", zmlx.map_reduce, gpu.layernorm_body, (x, w, b, 1e-5),
                  lambda: mx.fast.layer_norm(x, w, b, 1e-5)),
                 ("logsumexp", zmlx.reduce, gpu.logsumexp_body, (x,), lambda: mx.logsumexp(x, axis=-1)))
        for name, deco, body, args, builtin in cases:
            base = gpu.timed(builtin)
            line = [f"{name} D={D} {str(dtype).split('.')[-1]}: built-in {base * 1e6:.1f} µs"]
            for budget in (16384, 32768):
                cuda.RENDERER.register_budget = lambda itemsize, b=budget: b
                k = deco(body)
                err = mx.max(mx.abs(k(*args).astype(mx.float32) - builtin().astype(mx.float32))).item()
                t = gpu.timed(k, *args)
                line.append(f"budget {budget}: {t * 1e6:.1f} µs ({base / t:.2f}x, err {err:.1e})")
            del cuda.RENDERER.register_budget  # back to the renderer's own rule
            print("; ".join(line), flush=True)


def once(total: int) -> None:
    """Each kernel of interest once, ours then MLX's (inputs made and evaluated first)."""
    xf = mx.random.normal((total,))
    ct = mx.random.normal((total,))
    xe = mx.random.normal((total,)).astype(mx.bfloat16)
    x4 = mx.random.normal((total // 4096, 4096))
    w4 = mx.random.normal((4096,))
    x32 = mx.random.normal((total // 32768, 32768))
    x32e = x32.astype(mx.bfloat16)
    mx.eval(xf, ct, xe, x4, w4, x32, x32e)
    mx.synchronize()
    vjp_of = lambda f: mx.compile(lambda z, c: mx.vjp(f, [z], [c])[1][0])  # noqa: E731
    for fn in (lambda: gpu.silu(xf), lambda: mx.compile(gpu.silu_body)(xf),
               lambda: vjp_of(gpu.silu)(xf, ct), lambda: vjp_of(gpu.silu_body)(xf, ct),
               lambda: gpu.gelu(xe), lambda: mx.compile(gpu.gelu_body)(xe),
               lambda: gpu.rmsnorm(x4, w4, 1e-5), lambda: mx.fast.rms_norm(x4, w4, 1e-5),
               lambda: gpu.softmax(x32e), lambda: mx.softmax(x32e, axis=-1),
               lambda: gpu.logsumexp(x32), lambda: mx.logsumexp(x32, axis=-1)):
        mx.eval(fn())
        mx.synchronize()


if __name__ == "__main__":
    n = 1 << 26
    (once if "--once" in sys.argv else long_rows)(n)
