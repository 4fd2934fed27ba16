template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }
// float max/min as MLX's: a NaN in any lane gives NaN (simd_max/simd_min may drop it)
inline float zmlx_simd_max(float v) { return simd_any(isnan(v)) ? NAN : simd_max(v); }
inline float zmlx_simd_min(float v) { return simd_any(isnan(v)) ? NAN : simd_min(v); }

inline float zmlx_fast_exp(float x) {
  // e^x as 2^(x log2(e)): the product's rounding costs ~|x| * 6e-8 relative (88 * 6e-8 at the
  // overflow bound; a float16 ulp is 1e-3), as MLX's fast::exp and CUDA's __expf
  return fast::exp2(x * 1.44269504f);
}

inline float zmlx_fmax(float a, float b) {
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}

[[kernel]] void custom_kernel_softmax_658854905006_bf1ae7b2_bfloat16_t_bfloat16_t(
  const device bfloat16_t* x [[buffer(0)]],
  device bfloat16_t* out0 [[buffer(1)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // softmax: one row of 32768 per threadgroup of 1024, vectors of 8, row re-read per pass
  constexpr int D = 32768;
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  const uint row = threadgroup_position_in_grid.x;
  float max1_0 = -INFINITY;
  float sum1_1 = 0.0f;
  for (uint v = lid; v < 4096; v += 1024) {
    {
      zmlx_vec<bfloat16_t, 8> x_c;
      for (int q = 0; q < 8; q += 4) *(thread vec<bfloat16_t, 4>*)(x_c.v + q) = *(const device vec<bfloat16_t, 4>*)(x + row * D + v * 8 + q);
      const float max1_0_before = max1_0;
      float sum1_1_e[8];
      for (int j = 0; j < 8; ++j) {
        max1_0 = zmlx_fmax(max1_0, float(x_c.v[j]));
        sum1_1_e[j] = float(x_c.v[j]);
      }
      if (max1_0 != -INFINITY) {
        sum1_1 = sum1_1 * zmlx_fast_exp(max1_0_before - max1_0);
        for (int j = 0; j < 8; ++j) sum1_1 += zmlx_fast_exp(sum1_1_e[j] - max1_0);
      }
    }
  }
  const float max1_0_here = max1_0;
  max1_0 = zmlx_simd_max(max1_0);
  if (lane == 0) zmlx_scratch[warp] = max1_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  max1_0 = zmlx_simd_max(lane < 32 ? zmlx_scratch[lane] : -INFINITY);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum1_1 = max1_0 == -INFINITY ? 0.0f : sum1_1 * zmlx_fast_exp(max1_0_here - max1_0);
  sum1_1 = zmlx_simd_sum(sum1_1);
  if (lane == 0) zmlx_scratch[warp] = sum1_1;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum1_1 = zmlx_simd_sum(lane < 32 ? zmlx_scratch[lane] : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (isinf(max1_0)) {  // the sum's own pass: no rescaling to an infinite maximum
    sum1_1 = 0.0f;
    for (uint v = lid; v < 4096; v += 1024) {
      {
        zmlx_vec<bfloat16_t, 8> x_c;
        for (int q = 0; q < 8; q += 4) *(thread vec<bfloat16_t, 4>*)(x_c.v + q) = *(const device vec<bfloat16_t, 4>*)(x + row * D + v * 8 + q);
        for (int j = 0; j < 8; ++j) {
          sum1_1 = sum1_1 + zmlx_fast_exp(float(x_c.v[j]) - max1_0);
        }
      }
    }
    sum1_1 = zmlx_simd_sum(sum1_1);
    if (lane == 0) zmlx_scratch[warp] = sum1_1;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    sum1_1 = zmlx_simd_sum(lane < 32 ? zmlx_scratch[lane] : 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  const float row_reciprocal_0 = 1.0f / sum1_1;
  for (uint v = lid; v < 4096; v += 1024) {
    {
      zmlx_vec<bfloat16_t, 8> x_c;
      for (int q = 0; q < 8; q += 4) *(thread vec<bfloat16_t, 4>*)(x_c.v + q) = *(const device vec<bfloat16_t, 4>*)(x + row * D + v * 8 + q);
      zmlx_vec<bfloat16_t, 8> res0;
      for (int j = 0; j < 8; ++j) {
        res0.v[j] = bfloat16_t(zmlx_fast_exp(float(x_c.v[j]) - max1_0) * row_reciprocal_0);
      }
      for (int q = 0; q < 8; q += 4) *(device vec<bfloat16_t, 4>*)(out0 + row * D + v * 8 + q) = *(thread vec<bfloat16_t, 4>*)(res0.v + q);
    }
  }

}
