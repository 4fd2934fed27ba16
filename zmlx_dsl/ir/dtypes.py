"""Scalar dtypes of the IR and MLX's promotion rules (Python scalars are weak)."""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    """One scalar type: its name, kind ('b', 'i', 'u', 'f') and width in bits.

    The seven instances below are the only ones (unpickling returns them too), so equality and
    hashing are by identity: cheap, and the IR compares dtypes everywhere."""

    name: str
    kind: str
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def mx(self) -> mx.Dtype:
        return getattr(mx, "bool_" if self.name == "bool" else self.name)

    @property
    def np(self) -> np.dtype:
        """NumPy storage type (bfloat16 is held as float32, rounded by the interpreter)."""
        return np.dtype("float32" if self.name == "bfloat16" else self.name)

    @property
    def limits(self) -> tuple[int, int]:
        """The smallest and largest value of an integer (or bool) type."""
        if self.kind == "b":
            return 0, 1
        if self.kind == "u":
            return 0, (1 << self.bits) - 1
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1

    def holds(self, value: int) -> bool:
        """Whether an integer converts to this integer type without overflow."""
        lo, hi = self.limits
        return lo <= value <= hi

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return by_name, (self.name,)


bool_ = DType("bool", "b", 1)
int32 = DType("int32", "i", 32)
int64 = DType("int64", "i", 64)
uint32 = DType("uint32", "u", 32)
float16 = DType("float16", "f", 16)
bfloat16 = DType("bfloat16", "f", 16)
float32 = DType("float32", "f", 32)

ALL = (bool_, int32, int64, uint32, float16, bfloat16, float32)
_BY_NAME = {d.name: d for d in ALL}
_BY_MX = {d.mx: d for d in ALL}


def from_mx(dtype: mx.Dtype) -> DType:
    """The IR dtype of an MLX dtype; unsupported ones raise TypeError."""
    try:
        return _BY_MX[dtype]
    except KeyError:
        names = ", ".join(d.name for d in ALL)
        raise TypeError(f"dtype {dtype} is not supported by zmlx_dsl kernels (supported: {names})") from None


def by_name(name: str) -> DType:
    return _BY_NAME[name]


_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}


def promote(a: DType, b: DType) -> DType:
    """MLX's type promotion for two strong (array) dtypes."""
    if a == b:
        return a
    ka, kb = _RANK[a.kind], _RANK[b.kind]
    if ka != kb:
        hi, lo = (a, b) if ka > kb else (b, a)
        return hi
    if a.kind == "f":  # float16 with bfloat16
        return float32 if a.bits == b.bits else (a if a.bits > b.bits else b)
    if a.kind == b.kind:
        return a if a.bits >= b.bits else b
    # signed with unsigned: the smallest signed type holding both
    u, s = (a, b) if a.kind == "u" else (b, a)
    return s if s.bits > u.bits else int64


def weak_kind(value: object) -> DType:
    """The dtype a Python scalar would get on its own (bool, int32 or float32)."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, int):
        return int32
    return float32


def promote_weak(strong: DType, weak: DType) -> DType:
    """Combine an array dtype with a Python scalar's kind: the array's dtype wins within its kind."""
    if _RANK[weak.kind] <= _RANK[strong.kind] and not (strong.kind == "b" and weak.kind != "b"):
        return strong
    if weak.kind == "f":
        return float32
    return int32 if strong.kind == "b" else strong


def float_of(d: DType) -> DType:
    """Result type of a float-valued op (exp, sqrt, /) on d: ints and bool become float32."""
    return d if d.is_float else float32


def round_float(value: float, d: DType) -> float:
    """value as the float type d holds it (nearest even; beyond the range: +-inf), as MLX converts
    a Python float combined with an array of dtype d."""
    with np.errstate(over="ignore"):
        f = np.float32(value) if d != float16 else np.float16(value)
    if d == bfloat16 and np.isfinite(f):
        bits = int(np.asarray(f, np.float32).view(np.uint32))
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000) & 0xFFFFFFFF
        f = np.asarray(bits, np.uint32).view(np.float32)
    return float(f)
