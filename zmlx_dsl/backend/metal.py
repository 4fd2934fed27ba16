"""The Metal backend: MSL for mx.fast.metal_kernel (and for metal-sim, which runs it on the CPU)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import mlx.core as mx

from ..ir.program import Program
from .base import BackendFunctions
from .cstyle import CStyle
from .launch import Launcher
from .metal_source import build_metal_source


class MetalRenderer(CStyle):
    """MSL spellings: address spaces, Metal attributes, simd_* collectives."""

    backend = "metal"
    fast_exp2 = "fast::exp2"
    fn_qual = "inline"
    constant_ptr = "constant"
    device_ptr = "device"
    thread_ref = "thread"
    shared = "threadgroup"
    barrier = "threadgroup_barrier(mem_flags::mem_threadgroup);"
    types = {"bool": "bool", "int32": "int", "int64": "long", "uint32": "uint",
             "float16": "half", "bfloat16": "bfloat16_t", "float32": "float"}
    warp_barrier = "simdgroup_barrier(mem_flags::mem_threadgroup);"
    shuffle_up = "simd_shuffle_up({0}, {1})"
    ushort = "ushort"
    shared_memory = 32768
    global_id = "thread_position_in_grid.x"
    group_id = "threadgroup_position_in_grid.x"
    local_id = "thread_position_in_threadgroup.x"
    group_count = "threadgroups_per_grid.x"
    simd_helpers = """\
template <typename T> {q} T zmlx_simd_sum(T v) {{ return simd_sum(v); }}
template <typename T> {q} T zmlx_simd_max(T v) {{ return simd_max(v); }}
template <typename T> {q} T zmlx_simd_min(T v) {{ return simd_min(v); }}
// float max/min as MLX's: a NaN in any lane gives NaN (simd_max/simd_min may drop it)
{q} float zmlx_simd_max(float v) {{ return simd_any(isnan(v)) ? NAN : simd_max(v); }}
{q} float zmlx_simd_min(float v) {{ return simd_any(isnan(v)) ? NAN : simd_min(v); }}
"""
    simd64_helpers = """\
// 64-bit integers: Metal's simd collectives take 32-bit types, so lanes exchange two halves
{q} long zmlx_shuffle_xor(long v, ushort mask) {{ return as_type<long>(simd_shuffle_xor(as_type<uint2>(v), mask)); }}
{q} long zmlx_simd_sum(long v) {{
  for (ushort mask = 16; mask > 0; mask >>= 1) v += zmlx_shuffle_xor(v, mask);
  return v;
}}
{q} long zmlx_simd_max(long v) {{
  for (ushort mask = 16; mask > 0; mask >>= 1) v = max(v, zmlx_shuffle_xor(v, mask));
  return v;
}}
{q} long zmlx_simd_min(long v) {{
  for (ushort mask = 16; mask > 0; mask >>= 1) v = min(v, zmlx_shuffle_xor(v, mask));
  return v;
}}
"""


RENDERER = MetalRenderer()


def kernel_factory(target: str) -> Callable:
    """mx.fast.metal_kernel, or for metal-sim its CPU twin (metal_sim is imported only when used)."""
    if target == "metal-sim":
        from .metal_sim import metal_kernel
        return metal_kernel
    return mx.fast.metal_kernel


def compile(program: Program, target: str = "metal", fast_math: Optional[bool] = None):
    """A runner launching the program's MSL (on a Mac's GPU, or on the CPU for metal-sim)."""
    return Launcher(program, RENDERER.for_program(program, fast_math), kernel_factory(target), target)


def source(program: Program, target: str, arrays: Sequence[mx.array], fast_math: Optional[bool] = None,
           summed: tuple[int, ...] = ()) -> str:
    """The full Metal kernel text MLX compiles for these inputs (wrapper included)."""
    def full(p, name, header, body, inputs, out_names):
        return build_metal_source(name, [x.arg for x in p.inputs + p.params], out_names, body,
                                  header, inputs, output_dtypes=[o.dtype.mx for o in p.outputs],
                                  ensure_row_contiguous=p.kind == "row")
    return Launcher(program, RENDERER.for_program(program, fast_math), kernel_factory(target), target).source(arrays, full, summed)


BACKEND = BackendFunctions(compile, source)
