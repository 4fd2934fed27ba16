"""One kernel on a named backend: the layers' `backend=` (None: the default of each call)."""
from __future__ import annotations

from typing import Optional

from .. import backend as backends
from ..decorators import elementwise, map_reduce, reduce
from ..kernels import Kernel

_DECORATORS = {"elementwise": elementwise, "reduce": reduce, "map_reduce": map_reduce}
_ON: dict[tuple[int, str], Kernel] = {}


def on(kernel: Kernel, backend: Optional[str]) -> Kernel:
    """`kernel` itself for backend=None, else the same body decorated for that backend (built once)."""
    if backend is None:
        return kernel
    key = (id(kernel), backends.check(backend))
    k = _ON.get(key)
    if k is None:
        k = _ON[key] = _DECORATORS[kernel.kind](kernel.__wrapped__, name=kernel.name, backend=backend)
    return k
