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

[[kernel]] void custom_kernel_softmax_cfcc97d6d718_716639a1_float16_t_float16_t(
  const device float16_t* x [[buffer(0)]],
  device float16_t* out0 [[buffer(1)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // softmax: one row of 4096 per threadgroup of 256, vectors of 8, row held in registers (16 per thread)
  constexpr int D = 4096;
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  const uint row = threadgroup_position_in_grid.x;
  zmlx_vec<half, 8> x_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 256;
    if (v < 512) {
      for (int q = 0; q < 8; q += 4) *(thread vec<half, 4>*)(x_r[k].v + q) = *(const device vec<half, 4>*)(x + row * D + v * 8 + q);
    }
  }
  float max1_0 = -INFINITY;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 256;
    if (v < 512) {
      for (int j = 0; j < 8; ++j) {
        max1_0 = zmlx_fmax(max1_0, float(x_r[k].v[j]));
      }
    }
  }
  max1_0 = zmlx_simd_max(max1_0);
  if (lane == 0) zmlx_scratch[warp] = max1_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  max1_0 = zmlx_simd_max(lane < 8 ? zmlx_scratch[lane] : -INFINITY);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float sum2_0 = 0.0f;
  float exp_r_0[2][8];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 256;
    if (v < 512) {
      for (int j = 0; j < 8; ++j) {
        exp_r_0[k][j] = zmlx_fast_exp(float(x_r[k].v[j]) - max1_0);
        sum2_0 = sum2_0 + exp_r_0[k][j];
      }
    }
  }
  sum2_0 = zmlx_simd_sum(sum2_0);
  if (lane == 0) zmlx_scratch[warp] = sum2_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum2_0 = zmlx_simd_sum(lane < 8 ? zmlx_scratch[lane] : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float row_reciprocal_1 = 1.0f / sum2_0;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 256;
    if (v < 512) {
      zmlx_vec<half, 8> res0;
      for (int j = 0; j < 8; ++j) {
        res0.v[j] = half(exp_r_0[k][j] * row_reciprocal_1);
      }
      for (int q = 0; q < 8; q += 4) *(device vec<half, 4>*)(out0 + row * D + v * 8 + q) = *(thread vec<half, 4>*)(res0.v + q);
    }
  }

}
