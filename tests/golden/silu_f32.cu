
#include "mlx/backend/cuda/device/utils.cuh"

#include <cooperative_groups.h>

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename S> __device__ inline size_t zmlx_numel(const S& shape, int ndim) {
  size_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= size_t(shape[d]);
  return n;
}

template <typename S, typename St> __device__ inline bool zmlx_row_contiguous(const S& shape, const St& strides, int ndim) {
  long expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && long(strides[d]) != expected) return false;
    expected *= long(shape[d]);
  }
  return true;
}

template <typename I, typename S, typename St> __device__ inline int64_t zmlx_loc(I index, const S& shape, const St& strides, int ndim) {
  // memory offset of the index-th element in row-major order, through arbitrary strides: signed
  // (a stride may be negative) and 64-bit (a view may span more storage than it has elements)
  int64_t loc = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    loc += int64_t(index % I(shape[d])) * int64_t(strides[d]);
    index /= I(shape[d]);
  }
  return loc;
}

__device__ inline float zmlx_sigmoid(float x) {
  // exp of a non-positive argument only, so neither tail overflows.
  const float e = exp(-fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

__device__ inline void silu_4a6e4a0b2b4e_body(const float x, float& out0) {
  out0 = x * zmlx_sigmoid(x);
}
namespace mlx::core::cu {

namespace cg = cooperative_groups;

__global__ void silu_4a6e4a0b2b4e_b91e07db(
    const float* x,
    const __grid_constant__ Shape x_shape,
    const __grid_constant__ Strides x_strides,
    const __grid_constant__ int x_ndim,
    float* out0) {
  // silu: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint32_t n = zmlx_numel(x_shape, x_ndim);
  const bool contiguous = zmlx_row_contiguous(x_shape, x_strides, x_ndim);
  const uint32_t first = blockIdx.x * 2048 + threadIdx.x * 4;
  if (contiguous && first + 1028 <= n) {
    zmlx_vec<float, 4> x_v[2];
    for (int c = 0; c < 2; ++c) {
      x_v[c] = *(const zmlx_vec<float, 4>*)(x + first + c * 1024);
    }
    for (int c = 0; c < 2; ++c) {
      zmlx_vec<float, 4> res0_v;
      for (int k = 0; k < 4; ++k) {
        float res0;
        silu_4a6e4a0b2b4e_body(x_v[c].v[k], res0);
        res0_v.v[k] = res0;
      }
      *(zmlx_vec<float, 4>*)(out0 + first + c * 1024) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint32_t base = first + c * 1024;
      for (uint32_t i = base; i < n && i < base + 4; ++i) {
        float res0;
        silu_4a6e4a0b2b4e_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}

} // namespace mlx::core::cu
