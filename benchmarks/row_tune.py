"""Row kernels at several thread counts per row (vectors per thread 1, 2, 4, 8), forward and backward,
against MLX's built-ins in the same run: what row_threads should choose (issue 16, measured).
Usage (device machine): source .mlx-cuda/activate && python3 benchmarks/row_tune.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu  # noqa: E402

import zmlx_dsl as zmlx  # noqa: E402
from zmlx_dsl.backend import plan as plans  # noqa: E402

DEFAULT = plans.row_threads


def threads_for(per_thread: int):
    def row_threads(rowsize: int, vec: int) -> int:
        want = max(1, -(-rowsize // (per_thread * vec)))
        return min(1024, max(32, 1 << (want - 1).bit_length()))
    return row_threads


def main() -> None:
    total = 1 << 26
    vjp_of = lambda f: mx.compile(lambda c, *a: mx.vjp(f, list(a), [c])[1])  # noqa: E731
    print("| workload | dtype | MLX µs | " + " | ".join(f"{v} vec/thread µs" for v in (1, 2, 4, 8)) + " |")
    print("|---|---|---|---|---|---|---|")
    for D in (1024, 4096):
        for dtype in (mx.float32, mx.bfloat16):
            x = mx.random.normal((total // D, D)).astype(dtype)
            w = mx.random.normal((D,)).astype(dtype)
            c = mx.random.normal(x.shape).astype(dtype)
            name = str(dtype).split(".")[-1]
            cases = [("rmsnorm", lambda k: (lambda: k(x, w, 1e-5)), gpu.rmsnorm_body, lambda: mx.fast.rms_norm(x, w, 1e-5), "map_reduce"),
                     ("softmax", lambda k: (lambda: k(x)), gpu.softmax_body, lambda: mx.softmax(x, axis=-1), "map_reduce"),
                     ("bwd rmsnorm", lambda k: (lambda f=vjp_of(lambda z, g: k(z, g, 1e-5)): f(c, x, w)), gpu.rmsnorm_body,
                      lambda f=vjp_of(lambda z, g: mx.fast.rms_norm(z, g, 1e-5)): f(c, x, w), "map_reduce"),
                     ("bwd softmax", lambda k: (lambda f=vjp_of(k): f(c, x)), gpu.softmax_body,
                      lambda f=vjp_of(lambda z: mx.softmax(z, axis=-1)): f(c, x), "map_reduce")]
            for label, call, body, base, kind in cases:
                ts = []
                for v in (1, 2, 4, 8):
                    plans.row_threads = threads_for(v)
                    k = getattr(zmlx, kind)(body)
                    ts.append(gpu.timed(call(k)))
                plans.row_threads = DEFAULT
                t0 = gpu.timed(base)
                print(f"| {label} D={D} | {name} | {t0 * 1e6:.1f} | " + " | ".join(f"{t * 1e6:.1f}" for t in ts) + " |",
                      flush=True)


if __name__ == "__main__":
    main()
