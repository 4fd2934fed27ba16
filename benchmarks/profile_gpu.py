"""The issue-16 workloads once each, ours and MLX's, for Nsight Compute (hardware counters per kernel).

Usage (device machine):
    source .mlx-cuda/activate && ncu --clock-control none --profile-from-start off --print-units base \
        --csv --page raw --metrics "$(python3 benchmarks/profile_gpu.py --metrics)" \
        python3 benchmarks/profile_gpu.py [--only TEXT] > ncu.csv
    python3 benchmarks/profile_gpu.py --summarize ncu.csv
Each workload runs once to compile and warm up, then once inside cudaProfilerStart/Stop, so ncu
replays only the measured kernels (not the inputs' generation). Kernel names tell ours (the body's
name plus a digest) from MLX's.
"""
from __future__ import annotations

import csv
import ctypes
import sys
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu  # noqa: E402  (the kernels and bodies under test)

METRICS = [
    "gpu__time_duration.sum",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "sm__maximum_warps_per_active_cycle_pct",
    "launch__registers_per_thread",
    "launch__block_size",
    "launch__grid_size",
    "launch__shared_mem_per_block_static",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
]
SHORT = ["µs", "DRAM %", "SM %", "achieved occ %", "theoretical occ %", "regs", "block", "grid",
         "smem B", "read MB", "write MB"]


def workloads():
    """(label, thunk) for each miss of run 16 and its baseline."""
    total = 1 << 26
    out = []
    for D, dtype in ((1024, mx.bfloat16), (4096, mx.bfloat16), (4096, mx.float32), (32768, mx.bfloat16),
                     (32768, mx.float32)):
        x = mx.random.normal((total // D, D)).astype(dtype)
        w = mx.random.normal((D,)).astype(dtype)
        tag = f"D={D} {str(dtype).split('.')[-1]}"
        out += [(f"ours rmsnorm {tag}", lambda x=x, w=w: gpu.rmsnorm(x, w, 1e-5)),
                (f"mlx rms_norm {tag}", lambda x=x, w=w: mx.fast.rms_norm(x, w, 1e-5))]
        if D == 32768:
            out += [(f"ours softmax {tag}", lambda x=x: gpu.softmax(x)),
                    (f"mlx softmax {tag}", lambda x=x: mx.softmax(x, axis=-1)),
                    (f"ours logsumexp {tag}", lambda x=x: gpu.logsumexp(x)),
                    (f"mlx logsumexp {tag}", lambda x=x: mx.logsumexp(x, axis=-1))]
    for dtype in (mx.bfloat16,):
        x = mx.random.normal((total,)).astype(dtype)
        out += [("ours gelu bf16", lambda x=x: gpu.gelu(x)),
                ("mlx compile(gelu) bf16", lambda x=x, f=mx.compile(gpu.gelu_body): f(x))]
    D = 4096
    vjp_of = lambda f: mx.compile(lambda c, *a: mx.vjp(f, list(a), [c])[1])  # noqa: E731
    for dtype in (mx.float32, mx.bfloat16):
        x = mx.random.normal((total // D, D)).astype(dtype)
        c = mx.random.normal(x.shape).astype(dtype)
        w = mx.random.normal((D,)).astype(dtype)
        tag = str(dtype).split(".")[-1]
        out += [(f"ours bwd softmax {tag}", lambda x=x, c=c, f=vjp_of(gpu.softmax): f(c, x)),
                (f"mlx bwd softmax {tag}", lambda x=x, c=c, f=vjp_of(lambda z: mx.softmax(z, axis=-1)): f(c, x)),
                (f"ours bwd rmsnorm {tag}", lambda x=x, c=c, w=w, f=vjp_of(lambda z, g: gpu.rmsnorm(z, g, 1e-5)): f(c, x, w)),
                (f"mlx bwd rms_norm {tag}",
                 lambda x=x, c=c, w=w, f=vjp_of(lambda z, g: mx.fast.rms_norm(z, g, 1e-5)): f(c, x, w))]
    return out


def _profiler():
    """CUDA's profiler range switch (cudaProfilerStart/Stop) through the runtime library, or None."""
    for name in ("libcudart.so", "libcudart.so.13", "/usr/local/cuda/lib64/libcudart.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    print("no libcudart found: ncu profiles nothing with --profile-from-start off", file=sys.stderr)
    return None


def run(only: str = "") -> None:
    cudart = _profiler()
    for label, thunk in workloads():
        if only not in label:
            continue
        mx.eval(thunk())  # compiles, and makes the inputs
        mx.synchronize()
        if cudart is not None:
            cudart.cudaProfilerStart()
        mx.eval(thunk())
        mx.synchronize()
        if cudart is not None:
            cudart.cudaProfilerStop()
        print(f"ran {label}", file=sys.stderr, flush=True)


def summarize(path: str) -> None:
    """A markdown table of the profiled kernels, in launch order."""
    rows = list(csv.DictReader(l for l in open(path) if l.startswith('"')))
    if not rows:
        sys.exit(f"no ncu rows in {path}")
    print("| kernel | " + " | ".join(SHORT) + " |")
    print("|---|" + "---|" * len(SHORT))
    for r in rows[1:] if rows[0].get("ID", "").strip() == "" else rows:  # ncu's units row
        name = r["Kernel Name"][:60]
        vals = []
        for m in METRICS:
            v = r.get(m, "")
            try:
                f = float(v.replace(",", ""))
                if m == "gpu__time_duration.sum":
                    f /= 1e3  # ns -> µs
                if m.startswith("dram__bytes"):
                    f /= 1e6
                v = f"{f:.1f}" if f < 1e4 else f"{f:.0f}"
            except ValueError:
                pass
            vals.append(v)
        print(f"| {name} | " + " | ".join(vals) + " |")


if __name__ == "__main__":
    if "--metrics" in sys.argv:
        print(",".join(METRICS))
    elif "--summarize" in sys.argv:
        summarize(sys.argv[sys.argv.index("--summarize") + 1])
    else:  # --only TEXT: the workloads whose label holds TEXT
        run(sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else "")
