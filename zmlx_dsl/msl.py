'''Metal helper functions for raw ZMLX kernels: pass `header=msl.DEFAULT_HEADER`.

MLX puts `<metal_stdlib>` in front of every custom kernel, so the header has no #include.
Parsed expressions do not need it (kk_* calls lower to IR on every backend); raw Metal does.
'''
from __future__ import annotations

DEFAULT_HEADER = """\
// zmlx_dsl.msl.DEFAULT_HEADER
template <typename T> inline T kk_sigmoid(T x) {
  // exp of a non-positive argument only: neither tail overflows.
  const float xf = float(x);
  const float e = metal::exp(-metal::abs(xf));
  const float s = 1.0f / (1.0f + e);
  return T(xf >= 0.0f ? s : e * s);
}

template <typename T> inline T kk_silu(T x) {
  return T(float(x) * float(kk_sigmoid(x)));
}

template <typename T> inline T kk_gelu_tanh(T x) {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const float xf = float(x);
  const float inner = 0.7978845608028654f * (xf + 0.044715f * xf * xf * xf);
  return T(0.5f * xf * (1.0f + metal::precise::tanh(inner)));
}

// Sum over a threadgroup: every thread passes its value and gets the total. `buf` needs one
// slot per simdgroup; all threads of the group must call it (it contains barriers).
template <typename T> inline T kk_threadgroup_sum(T v, threadgroup T* buf, uint simd_lane,
                                                  uint simd_group, uint n_simdgroups) {
  v = simd_sum(v);
  if (simd_lane == 0) buf[simd_group] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  T total = simd_lane < n_simdgroups ? buf[simd_lane] : T(0);
  total = simd_sum(total);
  threadgroup_barrier(mem_flags::mem_threadgroup);  // buf may be reused after the return
  return total;
}
"""
