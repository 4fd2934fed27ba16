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

[[kernel]] void custom_kernel_softmax_vjp_fc8ae58cd23d_471d9675_float_float_float(
  const device float* x [[buffer(0)]],
  const device float* cotan0 [[buffer(1)]],
  device float* out0 [[buffer(2)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // softmax_vjp: one row of 1000 per threadgroup of 128, vectors of 4, row held in registers (8 per thread)
  constexpr int D = 1000;
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[32];
  const uint row = threadgroup_position_in_grid.x;
  zmlx_vec<float, 4> x_r[2];
  zmlx_vec<float, 4> cotan0_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 250) {
      for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(x_r[k].v + q) = *(const device vec<float, 4>*)(x + row * D + v * 4 + q);
      for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(cotan0_r[k].v + q) = *(const device vec<float, 4>*)(cotan0 + row * D + v * 4 + q);
    }
  }
  float max1_0 = -INFINITY;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 250) {
      for (int j = 0; j < 4; ++j) {
        max1_0 = zmlx_fmax(max1_0, x_r[k].v[j]);
      }
    }
  }
  max1_0 = zmlx_simd_max(max1_0);
  if (lane == 0) zmlx_scratch[warp] = max1_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  max1_0 = zmlx_simd_max(lane < 4 ? zmlx_scratch[lane] : -INFINITY);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float sum2_0 = 0.0f;
  float exp_r_0[2][4];
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 250) {
      for (int j = 0; j < 4; ++j) {
        exp_r_0[k][j] = exp(x_r[k].v[j] - max1_0);
        sum2_0 = sum2_0 + exp_r_0[k][j];
      }
    }
  }
  sum2_0 = zmlx_simd_sum(sum2_0);
  if (lane == 0) zmlx_scratch[warp] = sum2_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum2_0 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[lane] : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float sum3_0 = 0.0f;
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 250) {
      for (int j = 0; j < 4; ++j) {
        sum3_0 = sum3_0 + -cotan0_r[k].v[j] * (exp_r_0[k][j] / sum2_0) / sum2_0;
      }
    }
  }
  sum3_0 = zmlx_simd_sum(sum3_0);
  if (lane == 0) zmlx_scratch[warp] = sum3_0;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  sum3_0 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[lane] : 0.0f);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 250) {
      zmlx_vec<float, 4> res0;
      for (int j = 0; j < 4; ++j) {
        res0.v[j] = (cotan0_r[k].v[j] / sum2_0 + sum3_0) * exp_r_0[k][j];
      }
      for (int q = 0; q < 4; q += 4) *(device vec<float, 4>*)(out0 + row * D + v * 4 + q) = *(thread vec<float, 4>*)(res0.v + q);
    }
  }

}
