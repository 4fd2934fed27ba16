"""GPU benchmark of row kernels that index their row: RoPE, cross-entropy with integer labels, GLU.

Each workload is a `zmlx.map_reduce` body written for ONE row, timed against MLX in the same run:
  rope (half-split and interleaved), x (B, H, S, D) with cos/sin tables (S, D//2), vs mx.fast.rope;
  cross-entropy, logits (R, V) and labels (R,) int32, forward and forward+backward, vs mx.compile;
  GLU, x (8192, 8192) -> a * sigmoid(b) over the two halves of each row, vs mx.compile.
Every output is first compared with its baseline (not timed; a FAIL line if off, exit status 1 at
the end); rope's cos/sin are built as mx.fast.rope builds them (theta_i = base**(-2i/D), angle =
position * theta_i, position = the s index). Timing is benchmarks/gpu.py's (its `timed`: warm-up,
CALLS calls queued with mx.async_eval, one mx.synchronize, median of ITERS samples); "% of copy" is
against its float4 copy kernel measured in the same run (without CUDA: `x + 0` as MLX runs it).
Bytes moved are the minimum traffic: every input read once, every output written once.
Usage (device machine): source .mlx-cuda/activate && python3 benchmarks/indexing.py [--quick]
  --quick: tiny sizes and few repeats (a smoke test, seconds on the CPU: --quick --backend mlx).
"""
from __future__ import annotations

import os
import sys

import mlx.core as mx

import zmlx_dsl as zmlx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu  # noqa: E402  (benchmarks/gpu.py: timed, copy)
import rowbench  # noqa: E402  (check, bench, the table)
from rowbench import bench  # noqa: E402


ARGS = rowbench.parse_args(__doc__.splitlines()[0], once=True)  # before the kernels below: their backend


# ---- kernels under test: one row of each input ------------------------------------------------
@zmlx.map_reduce(backend=ARGS.backend)
def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[:h], x[h:]
    return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin])


@zmlx.map_reduce(backend=ARGS.backend)
def rope_interleaved(x, cos, sin):
    x1, x2 = x[0::2], x[1::2]
    return mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(-1)


@zmlx.map_reduce(backend=ARGS.backend)
def cross_entropy(logits, label):
    return mx.logsumexp(logits) - logits[label]


@zmlx.map_reduce(backend=ARGS.backend)
def glu(x):
    a, b = mx.split(x, 2)
    return a * mx.sigmoid(b)


# ---- baselines: the same computations over whole arrays (rows on the last axis) ---------------
@mx.compile
def cross_entropy_base(x, y):
    return mx.logsumexp(x, axis=-1) - mx.take_along_axis(x, y[:, None], axis=-1)[:, 0]


@mx.compile
def glu_base(x):
    a, b = mx.split(x, 2, axis=-1)
    return a * mx.sigmoid(b)


def rope_tables(S: int, D: int, dtype, base: float = 10000.0):
    """cos, sin of shape (S, D//2) as mx.fast.rope computes them (offset 0, scale 1)."""
    theta = mx.power(base, -mx.arange(0, D, 2, dtype=mx.float32) / D)
    angle = mx.arange(S, dtype=mx.float32)[:, None] * theta[None, :]
    return mx.cos(angle).astype(dtype), mx.sin(angle).astype(dtype)


def main() -> None:
    q = ARGS.quick
    print(rowbench.header(ARGS.backend))
    copy_bw, copy_name = rowbench.copy_bandwidth((1 << 14) if q else (1 << 26))
    print(f"copy: {copy_name}, {copy_bw:.0f} GB/s")
    floats = (mx.float32, mx.bfloat16)

    B, H, S = (1, 2, 16) if q else (4, 32, 2048)
    for D in (64, 128):
        for dtype in floats:
            x = mx.random.normal((B, H, S, D)).astype(dtype)
            cos, sin = rope_tables(S, D, dtype)
            moved = 2 * x.nbytes + cos.nbytes + sin.nbytes
            for k, trad in ((rope, False), (rope_interleaved, True)):
                base = lambda z, c, s, t=trad: mx.fast.rope(z, z.shape[-1], traditional=t, base=10000.0,  # noqa: E731
                                                            scale=1.0, offset=0)
                bench(f"{k.name} B,H,S,D={B},{H},{S},{D}", dtype, k, base, (x, cos, sin), moved,
                      f"mx.fast.rope(traditional={trad})")

    R = 8 if q else 4096
    for V in ((256, 1024) if q else (32768, 131072)):
        for dtype in floats:
            logits = mx.random.normal((R, V)).astype(dtype)
            labels = mx.random.randint(0, V, (R,), dtype=mx.int32)
            out = R * logits.itemsize
            bench(f"cross-entropy R={R} V={V}", dtype, cross_entropy, cross_entropy_base, (logits, labels),
                  logits.nbytes + labels.nbytes + out, "mx.compile(body)")
            ours_g = mx.grad(lambda z: cross_entropy(z, labels).sum())
            base_g = mx.compile(mx.grad(lambda z: cross_entropy_base(z, labels).sum()))
            bench(f"cross-entropy fwd+bwd R={R} V={V}", dtype, ours_g, base_g, (logits,),
                  2 * logits.nbytes + labels.nbytes, "mx.compile(grad(body))")

    N = 64 if q else 8192
    for dtype in floats:
        x = mx.random.normal((N, N)).astype(dtype)
        bench(f"glu {N}x{N}", dtype, glu, glu_base, (x,), x.nbytes + x.nbytes // 2, "mx.compile(body)")

    rowbench.table(copy_bw)


def once() -> None:
    """The kernels behind the misses, each run once at full size (ncu profiles them)."""
    x = mx.random.normal((4, 32, 2048, 64)).astype(mx.bfloat16)
    cos, sin = rope_tables(2048, 64, mx.bfloat16)
    mx.eval(rope(x, cos, sin), rope_interleaved(x, cos, sin))
    for dtype in (mx.float32, mx.bfloat16):
        logits = mx.random.normal((4096, 32768)).astype(dtype)
        labels = mx.random.randint(0, 32768, (4096,), dtype=mx.int32)
        mx.eval(cross_entropy(logits, labels))
    mx.synchronize()


if __name__ == "__main__":
    once() if ARGS.once else main()
