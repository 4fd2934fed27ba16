"""Side-by-side timing of implementations over shapes and dtypes, as a table (and optional PNG)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import mlx.core as mx

from .profile import time_kernel


def _dtype_name(d: Any) -> str:
    return str(d).rsplit(".", 1)[-1]


def compare(impls: Mapping[str, Callable], shapes: Sequence[tuple], dtypes: Sequence[Any] = (mx.float32,), *,
            warmup: int = 10, iters: int = 50, plot: Optional[str] = None, seed: int = 0) -> list[dict]:
    """Median time of each implementation on a random normal input per shape and dtype.

    The first implementation is the one compared: speedup vs X = time(X) / time(first), so >1 means
    the first column is faster. Prints the table, returns one dict per row (shape, dtype,
    times_us {name: median}, speedup {name: ratio}); `plot` names a PNG to draw (needs matplotlib)."""
    names = list(impls)
    if len(names) < 1:
        raise ValueError("compare() needs at least one implementation")
    first, others = names[0], names[1:]
    mx.random.seed(seed)
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            x = mx.random.normal(tuple(shape)).astype(dtype)
            times = {n: time_kernel(impls[n], x, warmup=warmup, iters=iters)["median_us"] for n in names}
            rows.append({"shape": tuple(shape), "dtype": _dtype_name(dtype), "times_us": times,
                         "speedup": {n: times[n] / times[first] for n in others}})
    print(format_table(rows, names))
    if plot:
        _plot(rows, names, plot)
    return rows


def format_table(rows: Sequence[dict], names: Sequence[str]) -> str:
    """The cookbook's table, with a header line saying what the speedup columns mean."""
    first, others = names[0], list(names[1:])
    spd = ["Speedup"] if len(others) == 1 else [f"vs {n}" for n in others]
    meaning = (f"speedup = time of '{others[0]}' / time of '{first}'; >1 means '{first}' is faster"
               if len(others) == 1 else
               f"vs X = time of X / time of '{first}'; >1 means '{first}' is faster than X") if others else ""
    widths = [max(14, len(n) + 2) for n in names]
    head = f"{'Shape':>20}{'Dtype':>12}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths)) + \
        "".join(f"{s:>{max(12, len(s) + 2)}}" for s in spd)
    lines = ([meaning] if meaning else []) + [head, "-" * len(head)]
    for r in rows:
        line = f"{str(r['shape']):>20}{r['dtype']:>12}" + \
            "".join(f"{r['times_us'][n]:>{w - 2}.1f}us" for n, w in zip(names, widths)) + \
            "".join(f"{r['speedup'][n]:>{max(12, len(s) + 2) - 1}.2f}x" for n, s in zip(others, spd))
        lines.append(line)
    return "\n".join(lines)


def _plot(rows: Sequence[dict], names: Sequence[str], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("bench.compare(plot=...) draws with matplotlib, which is not installed: "
                          "pip install matplotlib (or call compare without plot=)") from None
    labels = [f"{r['shape']}\n{r['dtype']}" for r in rows]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(rows)), 4))
    for k, n in enumerate(names):
        ax.bar([i + k * width for i in range(len(rows))], [r["times_us"][n] for r in rows], width, label=n)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(rows))], labels)
    ax.set_ylabel("median time (us, lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
