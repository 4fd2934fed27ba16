"""What the row-kernel GPU benchmarks share (benchmarks/indexing.py, benchmarks/scans.py): each
workload checked once against its baseline (a FAIL row, exit status 1 at the end, if off), then both
timed with benchmarks/gpu.py's `timed`; the table of µs, speedup, GB/s and % of a copy kernel."""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import traceback

import mlx.core as mx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu  # noqa: E402  (benchmarks/gpu.py: timed, copy)
from zmlx_dsl.backend import NAMES  # noqa: E402


def parse_args(description: str, once: bool = False) -> argparse.Namespace:
    """--quick (tiny sizes, few repeats; sets gpu.py's counts), --backend, and --once where asked."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke test on a CPU)")
    if once:
        p.add_argument("--once", action="store_true", help="each kernel of interest once, for Nsight Compute "
                       "(ncu --kernel-name regex:custom_kernel ...)")
    p.add_argument("--backend", choices=NAMES, default="cuda" if mx.cuda.is_available() else "mlx",
                   help="backend of our kernels (default: cuda where available, else mlx)")
    args = p.parse_args()
    if args.quick:
        gpu.ITERS, gpu.CALLS = 3, 2
    return args

FAILS: list[str] = []


def check(label: str, got, want, dtype, exact: bool = False, outliers: float = 0.0) -> None:
    """Our output against the baseline's: same shape and dtype, max |error| / max |baseline|
    (`exact`: equal, for integer results such as a sort's order) over all but a fraction `outliers`
    of the elements (a threshold's boundary: a token whose cumulative probability is within rounding
    of top-p is kept by one and dropped by the other); the count of elements off is printed."""
    tol = 0.0 if exact else 1e-3 if dtype == mx.float32 else 3e-2
    if got.shape != want.shape or got.dtype != want.dtype:
        FAILS.append(label)
        print(f"check {label}: FAIL shape/dtype {got.shape} {got.dtype}, baseline {want.shape} {want.dtype}")
        return
    g, w = got.astype(mx.float32), want.astype(mx.float32)
    scale = mx.maximum(mx.abs(mx.where(mx.isinf(w), 0, w)).max(), 1e-30)
    err = mx.where(g == w, 0, mx.abs(g - w)) / scale  # equal infinities match; NaN is off
    off = mx.logical_not(err <= tol)
    n_off = off.sum().item()
    worst = mx.where(off, 0, err).max().item() if n_off else err.max().item()
    ok = n_off <= outliers * g.size
    if not ok:
        FAILS.append(label)
    print(f"check {label}: max err / max|baseline| {worst:.1e} (tol {tol:.0e}), {n_off} of {g.size} off "
          f"(allowed {int(outliers * g.size)}) {'ok' if ok else 'FAIL'}")


def copy_bandwidth(n: int) -> tuple[float, str]:
    """GB/s of gpu.py's float4 copy kernel (best of 1, 2, 4 float4 per thread) over n float32."""
    x = mx.random.normal((n,))
    if mx.cuda.is_available():
        return max(2 * x.nbytes / gpu.timed(lambda z: gpu.copy(z, v), x) / 1e9 for v in (1, 2, 4)), "float4 copy kernel"
    return 2 * x.nbytes / gpu.timed(lambda z: z + 0, x) / 1e9, "x + 0 (no CUDA)"


ROWS: list[tuple] = []


def bench(workload: str, dtype, ours, base, args: tuple, moved: int, base_name: str, exact: bool = False,
          truth=None, outliers: float = 0.0) -> None:
    """Check ours against base (or `truth`, where the baseline is less exact than the kernel) once,
    then time both; a kernel that raises is a FAIL row, not a crash."""
    name = str(dtype).split(".")[-1]
    label = f"{workload} {name}"
    want = base(*args)  # the baseline's errors are this script's own: they propagate
    mx.eval(want)
    t_base = gpu.timed(base, *args)
    try:
        got = ours(*args)
        mx.eval(got)
        check(label, got, truth(*args) if truth else want, dtype, exact, outliers)
        t_ours = gpu.timed(ours, *args)
    except Exception as e:  # noqa: BLE001  (the kernels' features may be missing: report, go on)
        FAILS.append(label)
        print(f"check {label}: FAIL, ours raised " + "".join(traceback.format_exception_only(e)).strip())
        t_ours = None
    ROWS.append((workload, name, t_ours, t_base, moved, base_name))


def header(backend: str) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        rev = "unknown"
    device = mx.device_info().get("device_name", str(mx.default_device()))
    return f"{datetime.date.today()} · {device} ({mx.default_device()}) · commit {rev} · backend {backend}"


def table(copy_bw: float) -> None:
    """The results table (markdown), then exit status 1 if any check failed."""
    print()
    print(f"| workload | dtype | ours µs | baseline µs | speedup (baseline/ours) | ours GB/s "
          f"| % of copy ({copy_bw:.0f} GB/s) | baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for workload, name, t_ours, t_base, moved, base_name in ROWS:
        if t_ours is None:
            print(f"| {workload} | {name} | FAIL | {t_base * 1e6:.1f} | — | — | — | {base_name} |")
            continue
        bw = moved / t_ours / 1e9
        print(f"| {workload} | {name} | {t_ours * 1e6:.1f} | {t_base * 1e6:.1f} | {t_base / t_ours:.2f}x "
              f"| {bw:.0f} | {100 * bw / copy_bw:.0f}% | {base_name} |")
    if FAILS:
        print("FAILED checks:", ", ".join(FAILS))
        sys.exit(1)
