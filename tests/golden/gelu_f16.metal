template <typename T, int N> struct alignas(sizeof(T) * N) zmlx_vec { T v[N]; };

template <typename S> inline size_t zmlx_numel(const S& shape, int ndim) {
  size_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= size_t(shape[d]);
  return n;
}

template <typename S, typename St> inline bool zmlx_row_contiguous(const S& shape, const St& strides, int ndim) {
  long expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && long(strides[d]) != expected) return false;
    expected *= long(shape[d]);
  }
  return true;
}

template <typename I, typename S, typename St> inline long zmlx_loc(I index, const S& shape, const St& strides, int ndim) {
  // memory offset of the index-th element in row-major order, through arbitrary strides: signed
  // (a stride may be negative) and 64-bit (a view may span more storage than it has elements)
  long loc = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    loc += long(index % I(shape[d])) * long(strides[d]);
    index /= I(shape[d]);
  }
  return loc;
}

inline float zmlx_fast_div(float a, float b) {
  // a / b within 2 ulp for |b| < 2^126: the rational fits' last step (CUDA's IEEE division is a
  // Newton iteration with a slow path: 4-5% of a 16-bit gelu on an H200, benchmarks/variants.py)
  return a / b;
}

inline float zmlx_fast_erf(float x) {
  // a minimax rational x * p(x^2) / q(x^2) of degree 4/3 in x^2 on [-3.9, 3.9] (relative error
  // < 4.6e-6; zmlx_erf's is 6/4); exactly +-1 beyond 3.9 and where the fit overshoots 1, so that
  // 1 + erf(x) is never negative (gelu's tail); a NaN stays NaN
  const float x2 = x * x;
  float p = -4.23248184e-06f;
  p = fma(p, x2, 1.05108437e-03f);
  p = fma(p, x2, 4.69289087e-02f);
  p = fma(p, x2, 1.62926137e-01f);
  p = fma(p, x2, 1.12838399f);
  float q = 1.09188706e-02f;
  q = fma(q, x2, 1.00537091e-01f);
  q = fma(q, x2, 4.77815539e-01f);
  q = fma(q, x2, 1.0f);
  const float r = zmlx_fast_div(x * p, q);
  return fabs(x) > 3.9f || fabs(r) > 1.0f ? copysign(1.0f, x) : r;
}

inline void gelu_d3f69c98a9fd_body(const half x, thread half& out0) {
  const float cast_0 = float(x);
  out0 = half(0.5f * cast_0 * (1.0f + zmlx_fast_erf(cast_0 / 1.4140625f)));
}
[[kernel]] void custom_kernel_gelu_d3f69c98a9fd_1b164bf5_float16_t_float16_t(
  const device float16_t* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  device float16_t* out0 [[buffer(4)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // gelu: 2 vector(s) of 8 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(x_shape, x_ndim);
  const bool contiguous = zmlx_row_contiguous(x_shape, x_strides, x_ndim);
  const uint first = threadgroup_position_in_grid.x * 4096 + thread_position_in_threadgroup.x * 8;
  if (contiguous && first + 2056 <= n) {
    vec<half, 4> x_v[4];
    for (int c = 0; c < 4; ++c) {
      x_v[c] = *(const device vec<half, 4>*)(x + first + (c / 2) * 2048 + (c % 2) * 4);
    }
    for (int c = 0; c < 4; ++c) {
      vec<half, 4> res0_v;
      for (int k = 0; k < 4; ++k) {
        half res0;
        gelu_d3f69c98a9fd_body(x_v[c][k], res0);
        res0_v[k] = res0;
      }
      *(device vec<half, 4>*)(out0 + first + (c / 2) * 2048 + (c % 2) * 4) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 2048;
      for (uint i = base; i < n && i < base + 8; ++i) {
        half res0;
        gelu_d3f69c98a9fd_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
