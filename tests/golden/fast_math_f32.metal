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

inline float zmlx_fast_exp(float x) {
  // e^x as 2^(x log2(e)): the product's rounding costs ~|x| * 6e-8 relative (88 * 6e-8 at the
  // overflow bound; a float16 ulp is 1e-3), as MLX's fast::exp and CUDA's __expf
  return fast::exp2(x * 1.44269504f);
}

inline float zmlx_fast_sigmoid(float x) {
  // as zmlx_sigmoid (exp of a non-positive argument only) through the fast exp2
  const float e = fast::exp2(fabs(x) * -1.44269504f);
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

inline float zmlx_fast_tanh(float x) {
  // Eigen's and XLA's rational fit x * p(x^2) / q(x^2) on [-7.905, 7.905] (|err| < 4e-7), exactly
  // +-1 beyond (so 1 + tanh(x) is 0 there, as in float); no exp, no branch, a NaN stays NaN
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = fma(p, x2, 2.00018790482477e-13f);
  p = fma(p, x2, -8.60467152213735e-11f);
  p = fma(p, x2, 5.12229709037114e-08f);
  p = fma(p, x2, 1.48572235717979e-05f);
  p = fma(p, x2, 6.37261928875436e-04f);
  p = fma(p, x2, 4.89352455891786e-03f);
  float q = 1.19825839466702e-06f;
  q = fma(q, x2, 1.18534705686654e-04f);
  q = fma(q, x2, 2.26843463243900e-03f);
  q = fma(q, x2, 4.89352518554385e-03f);
  return fabs(x) > 7.90531110f ? copysign(1.0f, x) : zmlx_fast_div(x * p, q);
}

inline void fast_f32_ca3cf03dd030_body(const float x, thread float& out0) {
  const float add_0 = zmlx_fast_exp(x) + zmlx_fast_erf(x) + zmlx_fast_tanh(x) * zmlx_fast_sigmoid(x);
  out0 = add_0;
}
[[kernel]] void custom_kernel_fast_f32_ca3cf03dd030_aee8a4cd_float_float(
  const device float* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  device float* out0 [[buffer(4)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // fast_f32: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(x_shape, x_ndim);
  const bool contiguous = zmlx_row_contiguous(x_shape, x_strides, x_ndim);
  const uint first = threadgroup_position_in_grid.x * 2048 + thread_position_in_threadgroup.x * 4;
  if (contiguous && first + 1028 <= n) {
    vec<float, 4> x_v[2];
    for (int c = 0; c < 2; ++c) {
      x_v[c] = *(const device vec<float, 4>*)(x + first + c * 1024);
    }
    for (int c = 0; c < 2; ++c) {
      vec<float, 4> res0_v;
      for (int k = 0; k < 4; ++k) {
        float res0;
        fast_f32_ca3cf03dd030_body(x_v[c][k], res0);
        res0_v[k] = res0;
      }
      *(device vec<float, 4>*)(out0 + first + c * 1024) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        float res0;
        fast_f32_ca3cf03dd030_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
