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

inline float zmlx_erf(float x) {
  // Abramowitz-Stegun 7.1.26 is too coarse; this is the rational fit used by XLA (|err| < 1e-7).
  if (isnan(x)) return x;  // the clamp below (fmin/fmax drop a NaN operand) would give -1
  const float clamped = fmin(fmax(x, -4.0f), 4.0f);
  const float x2 = clamped * clamped;
  float p = -2.72614225801306e-10f;
  p = fma(p, x2, 2.77068142495902e-08f);
  p = fma(p, x2, -2.10102402082508e-06f);
  p = fma(p, x2, -5.69250639462346e-05f);
  p = fma(p, x2, -7.34990630326855e-04f);
  p = fma(p, x2, -2.95459980854025e-03f);
  p = fma(p, x2, -1.60960333262415e-02f);
  float q = -1.45660718464996e-05f;
  q = fma(q, x2, -2.13374055278905e-04f);
  q = fma(q, x2, -1.68282697438203e-03f);
  q = fma(q, x2, -7.37332916720468e-03f);
  q = fma(q, x2, -1.42647390514189e-02f);
  return clamped * p / q;
}

inline float zmlx_sigmoid(float x) {
  // exp of a non-positive argument only, so neither tail overflows.
  const float e = exp(-fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}

inline void precise_bf16_d987301708cb_body(const bfloat16_t x, thread bfloat16_t& out0) {
  const float cast_0 = float(x);
  const bfloat16_t cast_1 = bfloat16_t(exp(cast_0) + zmlx_erf(cast_0) + tanh(cast_0) * zmlx_sigmoid(cast_0));
  out0 = cast_1;
}
[[kernel]] void custom_kernel_precise_bf16_d987301708cb_60804313_bfloat16_t_bfloat16_t(
  const device bfloat16_t* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  device bfloat16_t* out0 [[buffer(4)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // precise_bf16: 2 vector(s) of 8 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(x_shape, x_ndim);
  const bool contiguous = zmlx_row_contiguous(x_shape, x_strides, x_ndim);
  const uint first = threadgroup_position_in_grid.x * 4096 + thread_position_in_threadgroup.x * 8;
  if (contiguous && first + 2056 <= n) {
    vec<bfloat16_t, 4> x_v[4];
    for (int c = 0; c < 4; ++c) {
      x_v[c] = *(const device vec<bfloat16_t, 4>*)(x + first + (c / 2) * 2048 + (c % 2) * 4);
    }
    for (int c = 0; c < 4; ++c) {
      vec<bfloat16_t, 4> res0_v;
      for (int k = 0; k < 4; ++k) {
        bfloat16_t res0;
        precise_bf16_d987301708cb_body(x_v[c][k], res0);
        res0_v[k] = res0;
      }
      *(device vec<bfloat16_t, 4>*)(out0 + first + (c / 2) * 2048 + (c % 2) * 4) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 2048;
      for (uint i = base; i < n && i < base + 8; ++i) {
        bfloat16_t res0;
        precise_bf16_d987301708cb_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
