"""Benchmark metal-sim: compile time per kernel, a 1M-element elementwise kernel, a 256x4096 softmax.

Run: python benchmarks/metal_sim.py [--no-append]; appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zmlx_dsl.backend.metal_sim import metal_kernel  # noqa: E402

SILU = "uint i = thread_position_in_grid.x; float v = x[i]; y[i] = v / (1.0f + metal::exp(-v));"
SOFTMAX = """
uint row = threadgroup_position_in_grid.x, lid = thread_position_in_threadgroup.x;
uint lane = thread_index_in_simdgroup, sg = simdgroup_index_in_threadgroup;
threadgroup float part[32];
const device float* r = x + row * N;
float m = -INFINITY;
for (uint j = lid; j < N; j += TG) m = max(m, r[j]);
m = simd_max(m);
if (lane == 0) part[sg] = m;
threadgroup_barrier(mem_flags::mem_threadgroup);
m = simd_max(lane < TG / 32 ? part[lane] : -INFINITY);
threadgroup_barrier(mem_flags::mem_threadgroup);
float s = 0.0f;
for (uint j = lid; j < N; j += TG) s += metal::fast::exp(r[j] - m);
s = simd_sum(s);
if (lane == 0) part[sg] = s;
threadgroup_barrier(mem_flags::mem_threadgroup);
s = simd_sum(lane < TG / 32 ? part[lane] : 0.0f);
for (uint j = lid; j < N; j += TG) y[row * N + j] = metal::fast::exp(r[j] - m) / s;
"""


def best(fn, reps: int = 3) -> float:
    """Best wall time of `reps` calls."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    os.environ["ZMLX_DSL_CACHE"] = tempfile.mkdtemp()  # cold cache: measure real compiles
    x = mx.random.normal((1 << 20,))
    silu = metal_kernel("bench_silu", ["x"], ["y"], SILU)
    run_silu = lambda: silu(inputs=[x], output_shapes=[x.shape], output_dtypes=[mx.float32],  # noqa: E731
                            grid=(x.size, 1, 1), threadgroup=(256, 1, 1))
    t0 = time.perf_counter()
    run_silu()  # runtime build + worker start + compile
    first = time.perf_counter() - t0
    xs = mx.random.normal((256, 4096))
    sm = metal_kernel("bench_softmax", ["x"], ["y"], SOFTMAX)
    run_sm = lambda: sm(inputs=[xs], output_shapes=[xs.shape], output_dtypes=[mx.float32],  # noqa: E731
                        grid=(256 * 256, 1, 1), threadgroup=(256, 1, 1), template=[("N", 4096), ("TG", 256)])
    t0 = time.perf_counter()
    (y,) = run_sm()
    compile_sm = time.perf_counter() - t0
    e = np.exp(np.array(xs) - np.array(xs).max(1, keepdims=True))
    assert np.allclose(np.array(y), e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-7)
    t_silu, t_sm = best(run_silu), best(run_sm)
    compile_only = compile_sm - t_sm
    rows = {"first call (runtime + worker start + silu compile)": first,
            "softmax compile (first call minus a cached call)": compile_only,
            "1M-element silu, cached": t_silu, "256x4096 softmax (256 threads/group), cached": t_sm}
    for k, v in rows.items():
        print(f"{k:55s} {v * 1000:8.1f} ms")
    if "--no-append" not in sys.argv:
        append(rows)


def append(rows: dict[str, float]) -> None:
    """Add this run to benchmarks/RESULTS.md under 'metal-sim (CPU)'."""
    path = Path(__file__).resolve().parent / "RESULTS.md"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=path.parent).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    headings = [ln for ln in old.splitlines() if ln.startswith("## ")]
    text = "" if headings[-1:] == ["## metal-sim (CPU)"] else "\n## metal-sim (CPU)\n"
    text += (f"\n{datetime.date.today()} · {cpu}, {os.cpu_count()} cores · commit {commit}\n\n"
             + "\n".join(f"- {k}: {v * 1000:.1f} ms" for k, v in rows.items()) + "\n")
    if not path.exists():
        text = old + text
    with open(path, "a") as f:  # other sections belong to others: only append
        f.write(text)


if __name__ == "__main__":
    main()
