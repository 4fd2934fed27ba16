"""Per-kernel counters for zmlx_dsl.profile.kernel_stats: compiles (with their time) and calls."""
from __future__ import annotations

Key = tuple[str, str]            # (program name, backend)
COMPILES: dict[Key, list] = {}   # -> [count, seconds]
RUNS: dict[Key, list] = {}       # -> [calls] (the one-element counter each compiled kernel bumps)


def record_compile(name: Key, seconds: float) -> None:
    """Count one compilation of kernel `name` that took `seconds` (generation + backend compile)."""
    entry = COMPILES.setdefault(name, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def run_counter(name: Key) -> list:
    """The call counter of kernel `name`: a compiled kernel adds 1 to item 0 per call (the hot
    path pays one list increment, no hashing)."""
    return RUNS.setdefault(name, [0])


def reset() -> None:
    """Forget every count (e.g. between benchmark runs)."""
    COMPILES.clear()
    for counter in RUNS.values():  # zeroed in place: compiled kernels hold their counters
        counter[0] = 0
