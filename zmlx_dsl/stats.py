"""Per-kernel counters for zmlx_dsl.profile.kernel_stats: compiles (with their time) and calls."""
from __future__ import annotations

Key = tuple[str, str]            # (program name, backend)
COMPILES: dict[Key, list] = {}   # -> [count, seconds]
RUNS: dict[Key, int] = {}        # -> calls


def record_compile(name: Key, seconds: float) -> None:
    """Count one compilation of kernel `name` that took `seconds` (generation + backend compile)."""
    entry = COMPILES.setdefault(name, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def record_run(name: Key) -> None:
    """Count one call of kernel `name` (the hot path: one dict update)."""
    RUNS[name] = RUNS.get(name, 0) + 1


def reset() -> None:
    """Forget every count (e.g. between benchmark runs)."""
    COMPILES.clear()
    RUNS.clear()
