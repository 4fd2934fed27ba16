"""The IR interpreter over NumPy: the oracle every backend is tested against.

mode="float64": floats in float64, integers in int64 (the exact-math reference);
mode="faithful": every node rounded to its own dtype (bfloat16 emulated), as a kernel computes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from . import dtypes as dt
from .evaluate import evaluate
from .node import Node
from .registry import OPS


def round_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 precision (nearest even), kept in float32."""
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(a), a, out)


def storage(a, d: dt.DType, mode: str) -> np.ndarray:
    """a represented as dtype d under the interpreter mode."""
    with np.errstate(all="ignore"):
        if mode == "float64":
            if d.is_float:
                return np.asarray(a, dtype=np.float64)
            return np.asarray(a).astype(np.bool_ if d == dt.bool_ else np.int64)
        if d == dt.bfloat16:
            return round_bf16(np.asarray(a, dtype=np.float32))
        return np.asarray(a).astype(d.np)


def interpret(roots: Sequence[Node], inputs: Mapping[str, object], *, mode: str = "float64",
              rowsize: int | None = None) -> list[np.ndarray]:
    """Evaluate roots with inputs (name -> array or scalar) in NumPy."""
    def leaf(n: Node):
        if n.op == "const":
            return storage(n.arg, n.dtype, mode)
        if n.op == "rowsize":
            return storage(rowsize, n.dtype, mode)
        if n.op == "index":
            return storage(np.arange(n.arg), n.dtype, mode)
        return storage(inputs[n.arg], n.dtype, mode)

    def cast(v, n: Node):
        if n.dtype.is_int and not n.args[0].dtype.is_int and v.size:
            v = np.trunc(v)  # C and MLX truncate float -> int
        return storage(v, n.dtype, mode)

    def run(lam, values):  # a Lambda's body (a fold's update step), in this mode
        return interpret([lam.body], {p.arg: v for p, v in zip(lam.params, values)}, mode=mode,
                         rowsize=rowsize)[0]

    def call(n: Node, args: list):
        op = OPS[n.op]
        with np.errstate(all="ignore"):
            return storage(op.np(n, run, *args) if op.graph else op.np(*args), n.dtype, mode)

    return evaluate(roots, leaf, cast, call)
