"""The CUDA backend: the same renderer with CUDA spellings, for mx.fast.cuda_kernel (MLX on NVIDIA)."""
from __future__ import annotations

from typing import Optional, Sequence

import mlx.core as mx

from ..ir.program import Program
from .base import BackendFunctions
from .c_ops import SPELLINGS, Spelling
from .cstyle import CStyle
from .launch import Launcher

# MLX's CUDA kernel wrapper (mlx/backend/cuda/custom_kernel.cpp) spells dtypes so:
_MLX_TYPES = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16", "bool": "bool",
              "int32": "int32_t", "int64": "int64_t", "uint32": "uint32_t"}


class CUDARenderer(CStyle):
    """CUDA spellings: no address spaces, __shared__, __syncthreads, warp shuffles."""

    backend = "cuda"
    # CUDA's math library has these in full precision (Metal needs the helpers); erfinv has no
    # float overload in C++'s std, so the float function is named
    spellings = {**SPELLINGS, **{op: Spelling(f"{op}({{0}})") for op in ("expm1", "log1p", "erf")},
                 "erfinv": Spelling("erfinvf({0})")}
    fast_exp2 = "exp2f"
    fast_divide = "__fdividef(a, b)"
    fn_qual = "__device__ inline"
    constant_ptr = ""
    device_ptr = ""
    thread_ref = ""
    shared = "__shared__"
    barrier = "__syncthreads();"
    types = _MLX_TYPES
    warp_barrier = "__syncwarp();"
    shuffle_up = "__shfl_up_sync(0xffffffffu, {0}, {1})"
    ushort = "unsigned short"
    shared_memory = 49152
    global_id = "blockIdx.x * blockDim.x + threadIdx.x"
    group_id = "blockIdx.x"
    local_id = "threadIdx.x"
    group_count = "gridDim.x"
    uint = "uint32_t"
    vector_struct = True
    def register_budget(self, itemsize: int) -> int:
        """32-bit rows of up to 32768 stay in registers (1024 threads x 32: 1.1-1.35x faster on an
        H100, measured A/B in RESULTS.md); 16-bit ones re-read (one group per SM made them slower)."""
        return 32768 if itemsize >= 4 else 16384

    simd_helpers = """\
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
template <typename T> {q} T zmlx_simd_sum(T v) {{
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}}
template <typename T> {q} T zmlx_simd_max(T v) {{
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}}
template <typename T> {q} T zmlx_simd_min(T v) {{
  for (int offset = 16; offset > 0; offset >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}}
// float max/min as MLX's: a NaN in any lane gives NaN (max/min return the other operand)
{q} float zmlx_simd_max(float v) {{
  for (int offset = 16; offset > 0; offset >>= 1) {{
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = isnan(v) || v > o ? v : o;
  }}
  return v;
}}
{q} float zmlx_simd_min(float v) {{
  for (int offset = 16; offset > 0; offset >>= 1) {{
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = isnan(v) || v < o ? v : o;
  }}
  return v;
}}
"""

    def common_header(self) -> str:
        return self.simd_helpers.split("template", 1)[0] + super().common_header()


RENDERER = CUDARenderer()


def compile(program: Program, target: str = "cuda", fast_math: Optional[bool] = None):
    """A runner launching the program through mx.fast.cuda_kernel."""
    return Launcher(program, RENDERER.for_program(program, fast_math), mx.fast.cuda_kernel, target)


def build_cuda_source(name: str, input_names: Sequence[str], output_names: Sequence[str], body: str,
                      header: str, inputs: Sequence[mx.array], output_dtypes: Sequence[mx.Dtype]) -> str:
    """The kernel text MLX 0.32.4's cuda_kernel compiles (its wrapper reproduced, for display and tests)."""
    text = '\n#include "mlx/backend/cuda/device/utils.cuh"\n\n#include <cooperative_groups.h>\n\n' + header
    text += "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    params = []
    for n, x in zip(input_names, inputs):
        params.append(f"    const {_MLX_TYPES[str(x.dtype).split('.')[-1].replace('bool_', 'bool')]}* {n}")
        if x.ndim > 0:
            for suffix, decl in (("_shape", "Shape"), ("_strides", "Strides"), ("_ndim", "int")):
                if n + suffix in body:
                    params.append(f"    const __grid_constant__ {decl} {n}{suffix}")
    for n, d in zip(output_names, output_dtypes):
        params.append(f"    {_MLX_TYPES[str(d).split('.')[-1].replace('bool_', 'bool')]}* {n}")
    text += f"__global__ void {name}(\n" + ",\n".join(params) + ") {\n" + body + "\n}\n\n} // namespace mlx::core::cu\n"
    return text


def source(program: Program, target: str, arrays: Sequence[mx.array], fast_math: Optional[bool] = None,
           summed: tuple[int, ...] = ()) -> str:
    """The full CUDA kernel text for these inputs (MLX's wrapper included)."""
    def full(p, name, header, body, inputs, out_names):
        return build_cuda_source(name, [x.arg for x in p.inputs + p.params], out_names, body,
                                 header, inputs, [o.dtype.mx for o in p.outputs])
    return Launcher(program, RENDERER.for_program(program, fast_math), mx.fast.cuda_kernel, target).source(arrays, full, summed)


BACKEND = BackendFunctions(compile, source)
