template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }
// float max/min as MLX's: a NaN in any lane gives NaN (simd_max/simd_min may drop it)
inline float zmlx_simd_max(float v) { return simd_any(isnan(v)) ? NAN : simd_max(v); }
inline float zmlx_simd_min(float v) { return simd_any(isnan(v)) ? NAN : simd_min(v); }

[[kernel]] void custom_kernel_rmsnorm_cacab1aef0d4_2cae4226_bfloat16_t_bfloat16_t_floatc_bfloat16_t(
  const device bfloat16_t* x [[buffer(0)]],
  const device bfloat16_t* w [[buffer(1)]],
  const constant float* eps [[buffer(2)]],
  device bfloat16_t* out0 [[buffer(3)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // rmsnorm: one row of 1024 per threadgroup of 64, vectors of 8, row held in registers (16 per thread)
  constexpr int D = 1024;
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  const uint row = threadgroup_position_in_grid.x;
  zmlx_vec<bfloat16_t, 8> x_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      for (int q = 0; q < 8; q += 4) *(thread vec<bfloat16_t, 4>*)(x_r[k].v + q) = *(const device vec<bfloat16_t, 4>*)(x + row * D + v * 8 + q);
    }
  }
  float sum1_0 = 0.0f;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      for (int j = 0; j < 8; ++j) {
        const float cast_0 = float(x_r[k].v[j]);
        sum1_0 = sum1_0 + cast_0 * cast_0;
      }
    }
  }
  sum1_0 = zmlx_simd_sum(sum1_0);
  if (lane == 0) zmlx_scratch[warp] = sum1_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum1_0 = zmlx_simd_sum(lane < 2 ? zmlx_scratch[lane] : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float row_rsqrt_1 = rsqrt(sum1_0 * 0.0009765625f + float(bfloat16_t(eps[0])));
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 64;
    if (v < 128) {
      zmlx_vec<bfloat16_t, 8> w_c;
      for (int q = 0; q < 8; q += 4) *(thread vec<bfloat16_t, 4>*)(w_c.v + q) = *(const device vec<bfloat16_t, 4>*)(w + v * 8 + q);
      zmlx_vec<bfloat16_t, 8> res0;
      for (int j = 0; j < 8; ++j) {
        res0.v[j] = bfloat16_t(float(x_r[k].v[j]) * row_rsqrt_1 * float(w_c.v[j]));
      }
      for (int q = 0; q < 8; q += 4) *(device vec<bfloat16_t, 4>*)(out0 + row * D + v * 8 + q) = *(thread vec<bfloat16_t, 4>*)(res0.v + q);
    }
  }

}
