
#include "mlx/backend/cuda/device/utils.cuh"

#include <cooperative_groups.h>

template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
template <typename T> __device__ inline T zmlx_simd_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
template <typename T> __device__ inline T zmlx_simd_max(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
template <typename T> __device__ inline T zmlx_simd_min(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
// float max/min as MLX's: a NaN in any lane gives NaN (max/min return the other operand)
__device__ inline float zmlx_simd_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = isnan(v) || v > o ? v : o;
  }
  return v;
}
__device__ inline float zmlx_simd_min(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = isnan(v) || v < o ? v : o;
  }
  return v;
}

namespace mlx::core::cu {

namespace cg = cooperative_groups;

__global__ void rmsnorm_vjp_de3db6617b00_d509564f(
    const float* x,
    const __grid_constant__ Shape x_shape,
    const __grid_constant__ int x_ndim,
    const float* w,
    const float* cotan0,
    const float* eps,
    float* out0,
    float* out1) {
  // rmsnorm_vjp: one row of 1024 per threadgroup of 128, vectors of 4, row held in registers (8 per thread)
  constexpr int D = 1024;
  const uint32_t lid = threadIdx.x;
  const uint32_t lane = lid % 32;
  const uint32_t warp = lid / 32;
  __shared__ float zmlx_scratch[64];
  float out1_sum[2][4] = {};
  uint32_t nrows = 1;
  for (int d = 0; d < x_ndim - 1; ++d) nrows *= x_shape[d];
  const uint32_t ngroups = nrows / 1;
  for (uint32_t group = blockIdx.x; group < ngroups; group += gridDim.x) {
    const uint32_t row = group;
    zmlx_vec<float, 4> x_r[2];
    zmlx_vec<float, 4> cotan0_r[2];
    for (int k = 0; k < 2; ++k) {
      const uint32_t v = lid + k * 128;
      if (v < 256) {
        x_r[k] = *(const zmlx_vec<float, 4>*)(x + row * D + v * 4);
        cotan0_r[k] = *(const zmlx_vec<float, 4>*)(cotan0 + row * D + v * 4);
      }
    }
    float sum1_0 = 0.0f;
    float sum1_1 = 0.0f;
    for (int k = 0; k < 2; ++k) {
      const uint32_t v = lid + k * 128;
      if (v < 256) {
        zmlx_vec<float, 4> w_c;
        w_c = *(const zmlx_vec<float, 4>*)(w + v * 4);
        for (int j = 0; j < 4; ++j) {
          sum1_0 = sum1_0 + x_r[k].v[j] * x_r[k].v[j];
          sum1_1 = sum1_1 + cotan0_r[k].v[j] * w_c.v[j] * x_r[k].v[j];
        }
      }
    }
    sum1_0 = zmlx_simd_sum(sum1_0);
    sum1_1 = zmlx_simd_sum(sum1_1);
    if (lane == 0) { zmlx_scratch[warp] = sum1_0; zmlx_scratch[32 + warp] = sum1_1; }
    __syncthreads();
    sum1_0 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[lane] : 0.0f);
    sum1_1 = zmlx_simd_sum(lane < 4 ? zmlx_scratch[32 + lane] : 0.0f);
    __syncthreads();
    const float row_add_0 = sum1_0 / 1024.0f + eps[0];
    const float row_rsqrt_1 = rsqrt(row_add_0);
    const float row_div_2 = -0.5f * sum1_1 * row_rsqrt_1 / row_add_0 / 1024.0f;
    for (int k = 0; k < 2; ++k) {
      const uint32_t v = lid + k * 128;
      if (v < 256) {
        zmlx_vec<float, 4> w_c;
        w_c = *(const zmlx_vec<float, 4>*)(w + v * 4);
        zmlx_vec<float, 4> res0;
        for (int j = 0; j < 4; ++j) {
          const float mul_3 = row_div_2 * x_r[k].v[j];
          res0.v[j] = cotan0_r[k].v[j] * w_c.v[j] * row_rsqrt_1 + mul_3 + mul_3;
          out1_sum[k][j] += cotan0_r[k].v[j] * (x_r[k].v[j] * row_rsqrt_1);
        }
        *(zmlx_vec<float, 4>*)(out0 + row * D + v * 4) = res0;
      }
    }
    __syncthreads();
  }
  // this group's partial sums over its rows
  for (int k = 0; k < 2; ++k) {
    const uint32_t v = lid + k * 128;
    if (v < 256) {
      for (int j = 0; j < 4; ++j) {
        out1[blockIdx.x * D + v * 4 + j] = out1_sum[k][j];
      }
    }
  }

}

} // namespace mlx::core::cu
