"""Transformer MLPs whose activation (and gating product) is one kernel between the projections:
gated (down(act(gate(x)) * up(x)), SwiGLU/GeGLU), fused gate|up (phi3's gate_up_proj), and dense
(down(act(up(x))), phi/starcoder2). The projections are ordinary modules under the names the
replaced MLP used, so its parameters (and LoRA layers) keep their dotted paths."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import mlx.core as mx
import mlx.nn as mnn

from .activations import GATED, gelu_approx_kernel, gelu_kernel, silu_kernel
from .backends import on

ACTIVATIONS = {"silu": silu_kernel, "gelu": gelu_kernel, "gelu_approx": gelu_approx_kernel}


def hide(module: mnn.Module, name: str, value: Any) -> None:
    """Set a plain attribute that stays out of the module tree (no parameter, no child module)."""
    object.__setattr__(module, name, value)


class _ProjectionMLP(mnn.Module):
    """The shared part: projections held under their own names, an activation name, a backend."""

    def __init__(self, projections: dict[str, mnn.Module], activation: str, backend: Optional[str]) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}: activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        for name, m in projections.items():
            setattr(self, name, m)
        hide(self, "_names", tuple(projections))
        self.activation = activation
        self.backend = backend

    def _extra_repr(self) -> str:
        return f"activation={self.activation}"


class GatedMLP(_ProjectionMLP):
    """down(act(gate(x)) * up(x)) as mlx-lm's MLPs (act silu: SwiGLU; gelu/gelu_approx: GeGLU)."""

    def __init__(self, dims: int, hidden_dims: int, activation: str = "silu", bias: bool = False, *,
                 backend: Optional[str] = None) -> None:
        super().__init__({"gate_proj": mnn.Linear(dims, hidden_dims, bias=bias),
                          "up_proj": mnn.Linear(dims, hidden_dims, bias=bias),
                          "down_proj": mnn.Linear(hidden_dims, dims, bias=bias)}, activation, backend)

    @classmethod
    def of(cls, gate: mnn.Module, up: mnn.Module, down: mnn.Module, activation: str, *,
           names: Sequence[str] = ("gate_proj", "up_proj", "down_proj"), backend: Optional[str] = None) -> "GatedMLP":
        """One around existing projection modules, under the attribute names `names` (gate, up, down)."""
        self = cls.__new__(cls)
        _ProjectionMLP.__init__(self, dict(zip(names, (gate, up, down))), activation, backend)
        return self

    def __call__(self, x: mx.array) -> mx.array:
        gate, up, down = (self[n] for n in self._names)
        return down(on(GATED[self.activation][0], self.backend)(gate(x), up(x)))


class FusedGatedMLP(_ProjectionMLP):
    """down(act(h[:H]) * h[H:]) for h = gate_up(x) (phi3): the split and gating one row kernel."""

    def __init__(self, dims: int, hidden_dims: int, activation: str = "silu", bias: bool = False, *,
                 backend: Optional[str] = None) -> None:
        super().__init__({"gate_up_proj": mnn.Linear(dims, 2 * hidden_dims, bias=bias),
                          "down_proj": mnn.Linear(hidden_dims, dims, bias=bias)}, activation, backend)

    @classmethod
    def of(cls, gate_up: mnn.Module, down: mnn.Module, activation: str, *,
           names: Sequence[str] = ("gate_up_proj", "down_proj"), backend: Optional[str] = None) -> "FusedGatedMLP":
        """One around existing projection modules, under the attribute names `names` (gate_up, down)."""
        self = cls.__new__(cls)
        _ProjectionMLP.__init__(self, dict(zip(names, (gate_up, down))), activation, backend)
        return self

    def __call__(self, x: mx.array) -> mx.array:
        gate_up, down = (self[n] for n in self._names)
        return down(on(GATED[self.activation][1], self.backend)(gate_up(x)))


class DenseMLP(_ProjectionMLP):
    """down(act(up(x))), the ungated MLP (phi's fc1/fc2, starcoder2's c_fc/c_proj)."""

    def __init__(self, dims: int, hidden_dims: int, activation: str = "gelu", bias: bool = True, *,
                 backend: Optional[str] = None) -> None:
        super().__init__({"up_proj": mnn.Linear(dims, hidden_dims, bias=bias),
                          "down_proj": mnn.Linear(hidden_dims, dims, bias=bias)}, activation, backend)

    @classmethod
    def of(cls, up: mnn.Module, down: mnn.Module, activation: str, *,
           names: Sequence[str] = ("up_proj", "down_proj"), backend: Optional[str] = None) -> "DenseMLP":
        """One around existing projection modules, under the attribute names `names` (up, down)."""
        self = cls.__new__(cls)
        _ProjectionMLP.__init__(self, dict(zip(names, (up, down))), activation, backend)
        return self

    def __call__(self, x: mx.array) -> mx.array:
        up, down = (self[n] for n in self._names)
        return down(on(ACTIVATIONS[self.activation], self.backend)(up(x)))
