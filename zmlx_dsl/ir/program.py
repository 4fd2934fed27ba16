"""A Program: the unit every backend compiles (a kernel body's IR with its named leaves)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from .rows import row_lengths
from .node import LEAF_OPS, Node, toposort


def stable_name(stem: str, *texts: str, length: int = 12) -> str:
    """A valid identifier: `stem` (non-identifier characters replaced) plus a SHA-256 prefix of
    the texts, stable across processes (never Python's salted hash)."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "kernel"
    return f"{safe}_{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:length]}"


@dataclass(frozen=True)
class Program:
    """IR outputs over named leaves. `inputs` are array leaves and `params` runtime scalars, both
    in call order; `kind` is "elementwise" or "row" (reductions over the last axis allowed).
    `lengths`, in row programs from Python bodies: each input's row length (its last axis; 1 for
    a value per row). Without them (a string kernel) every input is a row of the launch's length."""

    name: str
    kind: str
    inputs: tuple[Node, ...]
    params: tuple[Node, ...]
    outputs: tuple[Node, ...]
    lengths: tuple[int, ...] = ()

    def row_lengths(self, default: int = 1) -> dict[Node, int]:
        """Each node's row length (see ir/rows.py); `default` for inputs without a length."""
        return row_lengths(self.outputs, dict(zip(self.inputs, self.lengths)), default)

    def output_lengths(self) -> list[int]:
        """The row length of each output (1 for one value per row)."""
        lengths = self.row_lengths()
        return [lengths[o] for o in self.outputs]

    @cached_property
    def kernel_name(self) -> str:
        """A valid, deterministic identifier: the user's name plus a hash of the program text."""
        return stable_name(self.name, self.text())

    def text(self) -> str:
        """Readable SSA listing: one line per node, leaves first."""
        ids: dict[Node, str] = {}
        count = 0
        rows = [f"[{n}]" for n in self.lengths] + [""] * (len(self.inputs) - len(self.lengths))
        lines = [f"{self.kind} {self.name}(" + ", ".join(
            f"{n.arg}: {n.dtype}{r}" for n, r in zip(self.inputs + self.params, rows + [""] * len(self.params))) + ")"]
        for n in toposort(self.outputs):
            if n in ids:
                continue
            if n.op in ("input", "param"):
                ids[n] = str(n.arg)
                continue
            ids[n] = f"%{count}"
            count += 1
            if n.op == "const":
                rhs = repr(n.arg)
            elif n.op == "index":
                rhs = f"arange({n.arg})"
            elif n.op in LEAF_OPS:
                rhs = n.op
            else:
                rhs = f"{n.op}({', '.join(ids[a] for a in n.args)})"
                if n.arg is not None:  # a fold's update (part of the digest, so of the kernel name)
                    rhs += f" {n.arg!r}"
            lines.append(f"  {ids[n]}: {n.dtype} = {rhs}")
        lines.append("  return " + ", ".join(ids[o] for o in self.outputs))
        return "\n".join(lines)

    def depends(self, output: Node) -> tuple[int, ...]:
        """Indices of the array inputs an output reads (its result shape broadcasts these)."""
        used = {id(n) for n in toposort([output]) if n.op == "input"}
        return tuple(i for i, n in enumerate(self.inputs) if id(n) in used)
