"""Timing, memory and per-kernel statistics (compiles, compile time, calls)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import mlx.core as mx

from . import stats


def _sync(out: Any) -> None:
    mx.eval(out)
    mx.synchronize()


def time_kernel(fn: Callable, *args: Any, warmup: int = 10, iters: int = 50) -> dict[str, float]:
    """Wall time of fn(*args) in microseconds (evaluated and synchronised), after `warmup` calls:
    median_us, mean_us, min_us, max_us, std_us over `iters` calls."""
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    for _ in range(warmup):
        _sync(fn(*args))
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        _sync(fn(*args))
        samples.append((time.perf_counter() - start) * 1e6)
    return {"median_us": statistics.median(samples), "mean_us": statistics.fmean(samples),
            "min_us": min(samples), "max_us": max(samples),
            "std_us": statistics.pstdev(samples) if len(samples) > 1 else 0.0}


def _arrays(x: Any) -> list[mx.array]:
    if isinstance(x, mx.array):
        return [x]
    if isinstance(x, (list, tuple)):
        return [a for item in x for a in _arrays(item)]
    if isinstance(x, dict):
        return [a for item in x.values() for a in _arrays(item)]
    return []


def memory_usage(fn: Callable, *args: Any) -> dict[str, int]:
    """Bytes fn reads from its array arguments and writes to its outputs (a lower bound on traffic)."""
    out = fn(*args)
    mx.eval(out)
    inp = sum(a.nbytes for a in _arrays(args))
    outb = sum(a.nbytes for a in _arrays(out))
    return {"input_bytes": inp, "output_bytes": outb, "total_bytes": inp + outb}


def kernel_stats() -> list[dict[str, Any]]:
    """One dict per (kernel, backend): name, backend, compile_count, compile_time_ms (time spent
    generating and compiling; MLX's portable backend compiles lazily at the first call), run_count."""
    keys = list(dict.fromkeys(list(stats.COMPILES) + [k for k, runs in stats.RUNS.items() if runs[0]]))
    return [{"name": name, "backend": backend, "compile_count": stats.COMPILES.get((name, backend), [0, 0.0])[0],
             "compile_time_ms": stats.COMPILES.get((name, backend), [0, 0.0])[1] * 1e3,
             "run_count": stats.RUNS.get((name, backend), [0])[0]} for name, backend in keys]
