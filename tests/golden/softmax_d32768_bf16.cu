
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

__device__ inline float zmlx_fast_exp(float x) {
  // e^x as 2^(x log2(e)): the product's rounding costs ~|x| * 6e-8 relative (88 * 6e-8 at the
  // overflow bound; a float16 ulp is 1e-3), as MLX's fast::exp and CUDA's __expf
  return exp2f(x * 1.44269504f);
}

__device__ inline float zmlx_fmax(float a, float b) {
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}

namespace mlx::core::cu {

namespace cg = cooperative_groups;

__global__ void softmax_658854905006_bab5ea0e(
    const __nv_bfloat16* x,
    __nv_bfloat16* out0) {
  // softmax: one row of 32768 per threadgroup of 1024, vectors of 8, row re-read per pass
  constexpr int D = 32768;
  const uint32_t lid = threadIdx.x;
  const uint32_t lane = lid % 32;
  const uint32_t warp = lid / 32;
  __shared__ float zmlx_scratch[32];
  const uint32_t row = blockIdx.x;
  float max1_0 = -INFINITY;
  float sum1_1 = 0.0f;
  for (uint32_t v = lid; v < 4096; v += 1024) {
    {
      zmlx_vec<__nv_bfloat16, 8> x_c;
      x_c = *(const zmlx_vec<__nv_bfloat16, 8>*)(x + row * D + v * 8);
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
  __syncthreads();
  max1_0 = zmlx_simd_max(lane < 32 ? zmlx_scratch[lane] : -INFINITY);
  __syncthreads();
  sum1_1 = max1_0 == -INFINITY ? 0.0f : sum1_1 * zmlx_fast_exp(max1_0_here - max1_0);
  sum1_1 = zmlx_simd_sum(sum1_1);
  if (lane == 0) zmlx_scratch[warp] = sum1_1;
  __syncthreads();
  sum1_1 = zmlx_simd_sum(lane < 32 ? zmlx_scratch[lane] : 0.0f);
  __syncthreads();
  if (isinf(max1_0)) {  // the sum's own pass: no rescaling to an infinite maximum
    sum1_1 = 0.0f;
    for (uint32_t v = lid; v < 4096; v += 1024) {
      {
        zmlx_vec<__nv_bfloat16, 8> x_c;
        x_c = *(const zmlx_vec<__nv_bfloat16, 8>*)(x + row * D + v * 8);
        for (int j = 0; j < 8; ++j) {
          sum1_1 = sum1_1 + zmlx_fast_exp(float(x_c.v[j]) - max1_0);
        }
      }
    }
    sum1_1 = zmlx_simd_sum(sum1_1);
    if (lane == 0) zmlx_scratch[warp] = sum1_1;
    __syncthreads();
    sum1_1 = zmlx_simd_sum(lane < 32 ? zmlx_scratch[lane] : 0.0f);
    __syncthreads();
  }
  const float row_reciprocal_0 = 1.0f / sum1_1;
  for (uint32_t v = lid; v < 4096; v += 1024) {
    {
      zmlx_vec<__nv_bfloat16, 8> x_c;
      x_c = *(const zmlx_vec<__nv_bfloat16, 8>*)(x + row * D + v * 8);
      zmlx_vec<__nv_bfloat16, 8> res0;
      for (int j = 0; j < 8; ++j) {
        const __nv_bfloat16 cast_1 = __nv_bfloat16(zmlx_fast_exp(float(x_c.v[j]) - max1_0) * row_reciprocal_0);
        res0.v[j] = cast_1;
      }
      *(zmlx_vec<__nv_bfloat16, 8>*)(out0 + row * D + v * 8) = res0;
    }
  }

}

} // namespace mlx::core::cu
