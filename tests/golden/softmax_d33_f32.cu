
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

__device__ inline float zmlx_fmax(float a, float b) {
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}

namespace mlx::core::cu {

namespace cg = cooperative_groups;

__global__ void softmax_887f73a42ebc_0385c261(
    const float* x,
    float* out0) {
  // softmax: one row of 33 per threadgroup of 32, vectors of 1, row held in registers (2 per thread)
  constexpr int D = 33;
  const uint32_t lid = threadIdx.x;
  const uint32_t row = blockIdx.x;
  zmlx_vec<float, 1> x_r[2];
  for (int k = 0; k < 2; ++k) {
    const uint32_t v = lid + k * 32;
    if (v < 33) {
      x_r[k] = *(const zmlx_vec<float, 1>*)(x + row * D + v * 1);
    }
  }
  float max1_0 = -INFINITY;
  for (int k = 0; k < 2; ++k) {
    const uint32_t v = lid + k * 32;
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
    const uint32_t v = lid + k * 32;
    if (v < 33) {
      for (int j = 0; j < 1; ++j) {
        exp_r_0[k][j] = exp(x_r[k].v[j] - max1_0);
        sum2_0 = sum2_0 + exp_r_0[k][j];
      }
    }
  }
  sum2_0 = zmlx_simd_sum(sum2_0);
  for (int k = 0; k < 2; ++k) {
    const uint32_t v = lid + k * 32;
    if (v < 33) {
      zmlx_vec<float, 1> res0;
      for (int j = 0; j < 1; ++j) {
        res0.v[j] = exp_r_0[k][j] / sum2_0;
      }
      *(zmlx_vec<float, 1>*)(out0 + row * D + v * 1) = res0;
    }
  }

}

} // namespace mlx::core::cu
