template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }
// float max/min as MLX's: a NaN in any lane gives NaN (simd_max/simd_min may drop it)
inline float zmlx_simd_max(float v) { return simd_any(isnan(v)) ? NAN : simd_max(v); }
inline float zmlx_simd_min(float v) { return simd_any(isnan(v)) ? NAN : simd_min(v); }

inline float zmlx_fmax(float a, float b) {
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}

[[kernel]] void custom_kernel_softmax_887f73a42ebc_d33a9289_float_float(
  const device float* x [[buffer(0)]],
  device float* out0 [[buffer(1)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // softmax: one row of 33 per threadgroup of 32, vectors of 1, row held in registers (2 per thread)
  constexpr int D = 33;
  const uint lid = thread_position_in_threadgroup.x;
  const uint row = threadgroup_position_in_grid.x;
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
        max1_0 = zmlx_fmax(max1_0, x_r[k].v[j]);
      }
    }
  }
  max1_0 = zmlx_simd_max(max1_0);
  float sum2_0 = 0.0f;
  float exp_r_0[2][1];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      for (int j = 0; j < 1; ++j) {
        exp_r_0[k][j] = exp(x_r[k].v[j] - max1_0);
        sum2_0 = sum2_0 + exp_r_0[k][j];
      }
    }
  }
  sum2_0 = zmlx_simd_sum(sum2_0);
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 32;
    if (v < 33) {
      zmlx_vec<float, 1> res0;
      for (int j = 0; j < 1; ++j) {
        res0.v[j] = exp_r_0[k][j] / sum2_0;
      }
      for (int j = 0; j < 1; ++j) (out0 + row * D + v * 1)[j] = res0.v[j];
    }
  }

}
