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

inline float zmlx_log1p(float x) {
  // Kahan's trick: exact where 1 + x rounds, accurate for tiny x.
  const float u = 1.0f + x;
  if (u == INFINITY) return u;  // x = inf: log(u) * (inf / inf) would be NaN
  return u == 1.0f ? x : log(u) * (x / (u - 1.0f));
}

inline float zmlx_logaddexp(float a, float b) {
  // max + log1p(exp(-|a - b|)): never overflows; infinities of equal sign stay exact.
  if (isnan(a) || isnan(b)) return a + b;  // fmax/fmin below drop a NaN operand
  const float hi = fmax(a, b);
  const float lo = fmin(a, b);
  if (isinf(hi) && hi == lo) return hi;
  return hi + zmlx_log1p(exp(lo - hi));
}

inline void softplus_d20c5d97f71e_body(const bfloat16_t x, thread bfloat16_t& out0) {
  out0 = bfloat16_t(zmlx_logaddexp(float(x), 0.0f));
}
[[kernel]] void custom_kernel_softplus_d20c5d97f71e_a0bd5648_bfloat16_t_bfloat16_t(
  const device bfloat16_t* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  device bfloat16_t* out0 [[buffer(4)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // softplus: 2 vector(s) of 8 elements per thread, block-cyclic; contiguous inputs take the vector path
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
        softplus_d20c5d97f71e_body(x_v[c][k], res0);
        res0_v[k] = res0;
      }
      *(device vec<bfloat16_t, 4>*)(out0 + first + (c / 2) * 2048 + (c % 2) * 4) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 2048;
      for (uint i = base; i < n && i < base + 8; ++i) {
        bfloat16_t res0;
        softplus_d20c5d97f71e_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
