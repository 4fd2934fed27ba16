"""Drop-in mlx.nn layers and functions whose compute is zmlx_dsl kernels (the kernels are the
Python bodies in these modules): same constructor and call signatures, same parameter names,
shapes and dtypes, so weights load unchanged. `backend=` picks a backend per layer (None: the default)."""
from .activations import GELU, SiLU, SwiGLU, geglu, gelu, gelu_approx, log_softmax, silu, softmax, swiglu
from .losses import cross_entropy
from .mlp import DenseMLP, FusedGatedMLP, GatedMLP
from .norms import LayerNorm, OffsetRMSNorm, RMSNorm, layer_norm, rms_norm
from .rope import FreqsRoPE, RoPE, rope

__all__ = ["RMSNorm", "OffsetRMSNorm", "LayerNorm", "RoPE", "FreqsRoPE", "GatedMLP", "FusedGatedMLP", "DenseMLP",
           "SiLU", "GELU", "SwiGLU", "rms_norm", "layer_norm", "rope", "silu", "gelu", "gelu_approx", "swiglu", "geglu",
           "softmax", "log_softmax", "cross_entropy"]
