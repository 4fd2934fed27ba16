template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }

[[kernel]] void custom_kernel_softmax_3b358ff77199_26718035_float_float(
  const device float* x [[buffer(0)]],
  device float* out0 [[buffer(1)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]],
  uint3 threads_per_threadgroup [[threads_per_threadgroup]]) {
  // softmax: one row of 33 per threadgroup of 32, vectors of 1, row held in registers (2 per thread)
  constexpr int D = 33;
  const uint row = uint(threadgroup_position_in_grid.x);
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  zmlx_vec<float, 1> x_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      for (int j = 0; j < 1; ++j) x_r[k].v[j] = x[row * D + v * 1 + j];
    }
  }
  float max1_0 = -INFINITY;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      for (int j = 0; j < 1; ++j) {
        max1_0 = max(max1_0, x_r[k].v[j]);
      }
    }
  }
  max1_0 = zmlx_simd_max(max1_0);
  if (lane == 0) zmlx_scratch[warp] = float(max1_0);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  max1_0 = zmlx_simd_max(lane < (threads_per_threadgroup.x + 31) / 32 ? float(zmlx_scratch[lane]) : -INFINITY);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float sum2_0 = 0.0f;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      for (int j = 0; j < 1; ++j) {
        sum2_0 = sum2_0 + exp(x_r[k].v[j] - max1_0);
      }
    }
  }
  sum2_0 = zmlx_simd_sum(sum2_0);
  if (lane == 0) zmlx_scratch[warp] = float(sum2_0);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum2_0 = zmlx_simd_sum(lane < (threads_per_threadgroup.x + 31) / 32 ? float(zmlx_scratch[lane]) : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      zmlx_vec<float, 1> res0;
      for (int j = 0; j < 1; ++j) {
        res0.v[j] = exp(x_r[k].v[j] - max1_0) / sum2_0;
      }
      for (int j = 0; j < 1; ++j) (out0 + row * D + v * 1)[j] = res0.v[j];
    }
  }

}
