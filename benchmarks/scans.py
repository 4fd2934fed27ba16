"""GPU benchmark of scans and sorts inside row kernels: cumsum, sort/argsort, a top-p filter, sparsemax.

Each workload is a `zmlx.map_reduce` body written for ONE row, timed against MLX in the same run:
  cumsum over rows (4096 x 4096 and 1024 x 32768, float32/bfloat16) vs mx.cumsum;
  sort and argsort of rows of 1024, 2048 and 4096 (2^24 elements in all) vs mx.sort / mx.argsort;
  mlx-lm's top-p filter (argsort -> softmax -> cumsum -> mask -> scatter back) vs the mx.compile'd body
  over whole arrays, at (64, 4096) and (64, 131072);
  sparsemax over (4096, 1024) vs the mx.compile'd body.
Checks, timing and the table are benchmarks/rowbench.py's (gpu.py's `timed`: warm-up, queued calls,
median); "% of copy" is against gpu.py's float4 copy kernel in the same run. Bytes moved: every input
read once, every output written once.
Usage (device machine): source .mlx-cuda/activate && python3 benchmarks/scans.py [--quick]
  --quick: tiny sizes and few repeats (a smoke test on the CPU: --quick --backend mlx).
"""
from __future__ import annotations

import os
import sys

import mlx.core as mx

import zmlx_dsl as zmlx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rowbench  # noqa: E402  (check, bench, the table)
from rowbench import bench  # noqa: E402


ARGS = rowbench.parse_args(__doc__.splitlines()[0])  # before the kernels below: their backend


# ---- kernels under test: one row ---------------------------------------------------------------
@zmlx.map_reduce(backend=ARGS.backend)
def cumsum(x):
    return mx.cumsum(x)


@zmlx.map_reduce(backend=ARGS.backend)
def sort(x):
    return mx.sort(x)


@zmlx.map_reduce(backend=ARGS.backend)
def argsort(x):
    return mx.argsort(x)


@zmlx.map_reduce(backend=ARGS.backend)
def top_p(logits, p):
    """mlx-lm's apply_top_p for one row: the smallest set of tokens whose probability exceeds p."""
    probs = mx.softmax(logits)
    order = mx.argsort(logits)
    cumulative = mx.cumsum(probs[order])
    kept = mx.where(cumulative > 1 - p, logits[order], -float("inf"))
    return mx.put_along_axis(mx.zeros_like(logits), order, kept, axis=-1)


@zmlx.map_reduce(backend=ARGS.backend)
def sparsemax(x):
    z = mx.sort(x)[::-1]
    k = mx.arange(1, x.shape[-1] + 1)
    support = 1 + k * z > mx.cumsum(z)
    tau = (mx.sum(mx.where(support, z, 0)) - 1) / mx.sum(support)
    return mx.maximum(x - tau, 0)


# ---- baselines: the same over whole arrays (rows on the last axis) -------------------------------
@mx.compile
def top_p_base(logits, p):
    probs = mx.softmax(logits, axis=-1)
    order = mx.argsort(logits, axis=-1)
    cumulative = mx.cumsum(mx.take_along_axis(probs, order, axis=-1), axis=-1)
    kept = mx.where(cumulative > 1 - p, mx.take_along_axis(logits, order, axis=-1), -float("inf"))
    return mx.put_along_axis(mx.zeros_like(logits), order, kept, axis=-1)


@mx.compile
def sparsemax_base(x):
    z = mx.sort(x, axis=-1)[..., ::-1]
    k = mx.arange(1, x.shape[-1] + 1)
    support = 1 + k * z > mx.cumsum(z, axis=-1)
    tau = (mx.sum(mx.where(support, z, 0), axis=-1, keepdims=True) - 1) / mx.sum(support, axis=-1, keepdims=True)
    return mx.maximum(x - tau, 0)


def main() -> None:
    q = ARGS.quick
    mx.random.seed(0)
    print(rowbench.header(ARGS.backend))
    copy_bw, copy_name = rowbench.copy_bandwidth((1 << 14) if q else (1 << 26))
    print(f"copy: {copy_name}, {copy_bw:.0f} GB/s")
    floats = (mx.float32, mx.bfloat16)

    for R, D in (((4, 256), (2, 1024)) if q else ((4096, 4096), (1024, 32768))):
        for dtype in floats:
            x = mx.random.normal((R, D)).astype(dtype)
            # (MLX's bfloat16 cumsum rounds each partial sum; the kernel adds in float32 and rounds once)
            bench(f"cumsum {R}x{D}", dtype, cumsum, lambda z: mx.cumsum(z, axis=-1), (x,), 2 * x.nbytes,
                  "mx.cumsum", truth=lambda z: mx.cumsum(z.astype(mx.float32), axis=-1).astype(z.dtype))

    total = (1 << 12) if q else (1 << 24)
    for D in ((256, 1024) if q else (1024, 2048, 4096)):
        for dtype in floats:
            x = mx.random.normal((total // D, D)).astype(dtype)
            bench(f"sort {total // D}x{D}", dtype, sort, lambda z: mx.sort(z, axis=-1), (x,), 2 * x.nbytes, "mx.sort")
            bench(f"argsort {total // D}x{D}", dtype, argsort, lambda z: mx.argsort(z, axis=-1), (x,),
                  x.nbytes + x.size * 4, "mx.argsort", exact=True)

    for V in ((256, 1024) if q else (4096, 131072)):
        for dtype in floats:
            logits = (3 * mx.random.normal((64, V))).astype(dtype)
            # (checked against the body in float32, as the kernel computes; which token crosses the
            # threshold depends on the cumulative sum's rounding: the one token at it per row may differ)
            bench(f"top-p 64x{V}", dtype, lambda z: top_p(z, 0.9), lambda z: top_p_base(z, 0.9), (logits,),
                  2 * logits.nbytes, "mx.compile(body)", outliers=1 / V,
                  truth=lambda z: top_p_base(z.astype(mx.float32), 0.9).astype(z.dtype))

    R, D = (16, 256) if q else (4096, 1024)
    for dtype in floats:
        x = mx.random.normal((R, D)).astype(dtype)
        bench(f"sparsemax {R}x{D}", dtype, sparsemax, sparsemax_base, (x,), 2 * x.nbytes, "mx.compile(body)")

    rowbench.table(copy_bw)


if __name__ == "__main__":
    main()
