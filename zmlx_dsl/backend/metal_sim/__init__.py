"""metal-sim: run Metal Shading Language kernels (as MLX wraps them) on the CPU, with Metal semantics."""

from .errors import MetalSimError
from .kernel import metal_kernel

__all__ = ["MetalSimError", "metal_kernel"]
