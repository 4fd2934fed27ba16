"""The backend protocol (compile a program for a target, show its source) and the object each backend module exposes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import mlx.core as mx

from ..ir.program import Program

Runner = Callable[[Sequence[mx.array]], list[mx.array]]  # arrays (inputs, then params) -> outputs


class Backend(Protocol):
    """What the runtime asks of a backend; `target` is the name it was picked by ("metal-sim" runs
    the metal backend on the CPU)."""

    def compile(self, program: Program, target: str, fast_math: Optional[bool] = None) -> Runner: ...

    def source(self, program: Program, target: str, arrays: Sequence[mx.array],
               fast_math: Optional[bool] = None, summed: tuple[int, ...] = ()) -> str: ...


@dataclass(frozen=True)
class BackendFunctions:
    """A Backend made of a backend module's `compile` and `source` functions."""

    compile: Callable[..., Runner]     # (program, target, fast_math=None)
    source: Callable[..., str]         # (program, target, arrays, fast_math=None, summed=())


def sum_rows(out: mx.array) -> mx.array:
    """An output summed over its leading (row) axes, kept as 1s (a weight's gradient from its rows);
    16-bit floats are accumulated in float32."""
    if out.ndim < 2:
        return out
    wide = out.astype(mx.float32) if out.dtype in (mx.float16, mx.bfloat16) else out
    return wide.sum(axis=tuple(range(out.ndim - 1)), keepdims=True).astype(out.dtype)
