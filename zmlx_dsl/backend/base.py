"""The backend protocol (compile a program for a target, show its source) and the object each backend module exposes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import mlx.core as mx

from ..ir.program import Program

Runner = Callable[[Sequence[mx.array]], list[mx.array]]  # arrays (inputs, then params) -> outputs


class Backend(Protocol):
    """What the runtime asks of a backend; `target` is the name it was picked by ("metal-sim" runs
    the metal backend on the CPU)."""

    def compile(self, program: Program, target: str) -> Runner: ...

    def source(self, program: Program, target: str, arrays: Sequence[mx.array]) -> str: ...


@dataclass(frozen=True)
class BackendFunctions:
    """A Backend made of a backend module's `compile` and `source` functions."""

    compile: Callable[[Program, str], Runner]
    source: Callable[[Program, str, Sequence[mx.array]], str]
