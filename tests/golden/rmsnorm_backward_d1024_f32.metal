template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename T> inline T zmlx_simd_sum(T v) { return simd_sum(v); }
template <typename T> inline T zmlx_simd_max(T v) { return simd_max(v); }
template <typename T> inline T zmlx_simd_min(T v) { return simd_min(v); }
// float max/min as MLX's: a NaN in any lane gives NaN (simd_max/simd_min may drop it)
inline float zmlx_simd_max(float v) { return simd_any(isnan(v)) ? NAN : simd_max(v); }
inline float zmlx_simd_min(float v) { return simd_any(isnan(v)) ? NAN : simd_min(v); }

[[kernel]] void custom_kernel_rmsnorm_vjp_de3db6617b00_95a09ca8_float_float_float_floatc_float_float(
  const device float* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int& x_ndim [[buffer(2)]],
  const device float* w [[buffer(3)]],
  const device float* cotan0 [[buffer(4)]],
  const constant float* eps [[buffer(5)]],
  device float* out0 [[buffer(6)]],
  device float* out1 [[buffer(7)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]],
  uint3 threadgroups_per_grid [[threadgroups_per_grid]]) {
  // rmsnorm_vjp: one row of 1024 per threadgroup of 128, vectors of 4, row held in registers (8 per thread)
  constexpr int D = 1024;
  const uint lid = thread_position_in_threadgroup.x;
  const uint lane = lid % 32;
  const uint warp = lid / 32;
  threadgroup float zmlx_scratch[64];
  float out1_sum[2][4] = {};
  uint nrows = 1;
  for (int d = 0; d < x_ndim - 1; ++d) nrows *= x_shape[d];
  const uint ngroups = nrows / 1;
  for (uint group = threadgroup_position_in_grid.x; group < ngroups; group += threadgroups_per_grid.x) {
    const uint row = group;
    zmlx_vec<float, 4> x_r[2];
    zmlx_vec<float, 4> cotan0_r[2];
    for (int k = 0; k < 2; ++k) {
      const uint v = lid + k * 128;
      if (v < 256) {
        for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(x_r[k].v + q) = *(const device vec<float, 4>*)(x + row * D + v * 4 + q);
        for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(cotan0_r[k].v + q) = *(const device vec<float, 4>*)(cotan0 + row * D + v * 4 + q);
      }
    }
    float sum1_0 = 0.0f;
    float sum1_1 = 0.0f;
    for (int k = 0; k < 2; ++k) {
      const uint v = lid + k * 128;
      if (v < 256) {
        zmlx_vec<float, 4> w_c;
        for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(w_c.v + q) = *(const device vec<float, 4>*)(w + v * 4 + q);
        for (int j = 0; j < 4; ++j) {
          sum1_0 = sum1_0 + x_r[k].v[j] * x_r[k].v[j];
          sum1_1 = sum1_1 + cotan0_r[k].v[j] * w_c.v[j] * x_r[k].v[j];
        }
      }
    }
    sum1_0 = zmlx_simd_sum(sum1_0);
    sum1_1 = zmlx_simd_sum(sum1_1);
    if (lane == 0) { zmlx_scratch[warp] = sum1_0; zmlx_scratch[32 + warp] = sum1_1; }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    sum1_0 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[lane] : 0.0f);
    sum1_1 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[32 + lane] : 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const float row_add_0 = sum1_0 / 1024.0f + eps[0];
    const float row_rsqrt_1 = rsqrt(row_add_0);
    const float row_div_2 = -0.5f * sum1_1 * row_rsqrt_1 / row_add_0 / 1024.0f;
    for (int k = 0; k < 2; ++k) {
      const uint v = lid + k * 128;
      if (v < 256) {
        zmlx_vec<float, 4> w_c;
        for (int q = 0; q < 4; q += 4) *(thread vec<float, 4>*)(w_c.v + q) = *(const device vec<float, 4>*)(w + v * 4 + q);
        zmlx_vec<float, 4> res0;
        for (int j = 0; j < 4; ++j) {
          const float mul_3 = row_div_2 * x_r[k].v[j];
          res0.v[j] = cotan0_r[k].v[j] * w_c.v[j] * row_rsqrt_1 + mul_3 + mul_3;
          out1_sum[k][j] += cotan0_r[k].v[j] * (x_r[k].v[j] * row_rsqrt_1);
        }
        for (int q = 0; q < 4; q += 4) *(device vec<float, 4>*)(out0 + row * D + v * 4 + q) = *(thread vec<float, 4>*)(res0.v + q);
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  // this group's partial sums over its rows
  for (int k = 0; k < 2; ++k) {
    const uint v = lid + k * 128;
    if (v < 256) {
      for (int j = 0; j < 4; ++j) {
        out1[threadgroup_position_in_grid.x * D + v * 4 + j] = out1_sum[k][j];
      }
    }
  }

}
