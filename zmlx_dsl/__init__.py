"""zmlx_dsl: MLX kernels written as Python functions, with generated gradients and backends.

    @zmlx.elementwise
    def silu(x):
        return x * mx.sigmoid(x)
"""
from .errors import (ZMLXBackendError, ZMLXError, ZMLXGradientError, ZMLXNameError,
                              ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError, ZMLXValueError)
from .decorators import elementwise, map_reduce, reduce
from .kernels import Kernel
from . import api, autograd, bench, msl, profile, testing  # noqa: E402  (the ZMLX-compatible modules)
from .patch import patch, unpatch  # mlx-lm models, found in sys.modules: this never imports mlx_lm

__all__ = ["elementwise", "reduce", "map_reduce", "Kernel", "ZMLXError", "ZMLXSyntaxError",
           "ZMLXTypeError", "ZMLXNameError", "ZMLXShapeError", "ZMLXBackendError", "ZMLXGradientError",
           "ZMLXValueError", "patch", "unpatch", "api", "autograd", "msl", "testing", "bench", "profile"]
__version__ = "0.1.0"
