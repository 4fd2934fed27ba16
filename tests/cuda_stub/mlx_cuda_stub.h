// Host-side stand-ins for what MLX's CUDA kernels see (NVRTC with MLX's device headers), so that
// tests/backend/test_cuda_source.py can type-check generated CUDA with a plain C++ compiler: the CUDA
// qualifiers, thread indices, warp shuffles, half types and MLX's Shape/Strides. Semantics are
// not simulated -- only that the source is well-formed C++ against these declarations.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#define __device__
#define __global__
#define __shared__ static
#define __grid_constant__
#define __int_as_float(x) 0.0f

struct dim3 { unsigned x, y, z; };
static dim3 blockIdx, threadIdx, blockDim, gridDim;
inline void __syncthreads() {}
inline void __syncwarp(unsigned = 0xffffffffu) {}
template <class T> T __shfl_xor_sync(unsigned, T v, int) { return v; }
template <class T> T __shfl_up_sync(unsigned, T v, unsigned) { return v; }
using std::exp;
using std::isnan;
using std::max;
using std::min;
inline float rsqrt(float v) { return 1.0f / std::sqrt(v); }
inline float erfinvf(float v) { return v; }  // CUDA's math library (not in C++'s)
inline float __fdividef(float a, float b) { return a / b; }  // CUDA's fast division intrinsic

struct __half {
  float f;
  __half() {}
  __half(float v) : f(v) {}
  operator float() const { return f; }
};
struct __nv_bfloat16 {
  float f;
  __nv_bfloat16() {}
  __nv_bfloat16(float v) : f(v) {}
  operator float() const { return f; }
};

namespace mlx { namespace core { namespace cu {
struct Shape {
  int d[10];
  const int* data() const { return d; }
  int operator[](int i) const { return d[i]; }
};
using Strides = Shape;
}}}
