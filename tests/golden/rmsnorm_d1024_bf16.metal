template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }

[[kernel]] void custom_kernel_rmsnorm_0093c852654a_fda803ac_bfloat16_t_bfloat16_t_floatc_bfloat16_t(
  const device bfloat16_t* x [[buffer(0)]],
  const device bfloat16_t* w [[buffer(1)]],
  const constant float* eps [[buffer(2)]],
  device bfloat16_t* out0 [[buffer(3)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]],
  uint3 threads_per_threadgroup [[threads_per_threadgroup]]) {
  // rmsnorm: one row of 1024 per threadgroup of 64, vectors of 8, row held in registers (16 per thread)
  constexpr int D = 1024;
  const uint row = uint(threadgroup_position_in_grid.x);
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  zmlx_vec<bfloat16_t, 8> x_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      for (int j = 0; j < 8; ++j) x_r[k].v[j] = x[row * D + v * 8 + j];
    }
  }
  float sum1_0 = 0.0f;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      for (int j = 0; j < 8; ++j) {
        const float cast0 = float(x_r[k].v[j]);
        sum1_0 = sum1_0 + cast0 * cast0;
      }
    }
  }
  sum1_0 = zmlx_simd_sum(sum1_0);
  if (lane == 0) zmlx_scratch[warp] = float(sum1_0);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum1_0 = zmlx_simd_sum(lane < (threads_per_threadgroup.x + 31) / 32 ? float(zmlx_scratch[lane]) : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      zmlx_vec<bfloat16_t, 8> w_c;
      for (int j = 0; j < 8; ++j) w_c.v[j] = w[v * 8 + j];
      zmlx_vec<bfloat16_t, 8> res0;
      for (int j = 0; j < 8; ++j) {
        const float rsqrt0 = rsqrt(sum1_0 * float(bfloat16_t(1.0f / float(D))) + float(bfloat16_t(eps[0])));
        res0.v[j] = bfloat16_t(float(x_r[k].v[j]) * rsqrt0 * float(w_c.v[j]));
      }
      for (int j = 0; j < 8; ++j) (out0 + row * D + v * 8)[j] = res0.v[j];
    }
  }

}
