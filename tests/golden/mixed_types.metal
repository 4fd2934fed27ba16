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

inline void mixed_types_c58a70ead368_body(const int a, const bool m, const half h, const bfloat16_t b, thread float& out0) {
  out0 = m ? float(a) * float(h) : float(b);
}
[[kernel]] void custom_kernel_mixed_types_c58a70ead368_597dbc69_int32_t_bool_float16_t_bfloat16_t_float(
  const device int32_t* a [[buffer(0)]],
  const constant int* a_shape [[buffer(1)]],
  const constant int64_t* a_strides [[buffer(2)]],
  const constant int& a_ndim [[buffer(3)]],
  const device bool* m [[buffer(4)]],
  const constant int* m_shape [[buffer(5)]],
  const constant int64_t* m_strides [[buffer(6)]],
  const constant int& m_ndim [[buffer(7)]],
  const device float16_t* h [[buffer(8)]],
  const constant int* h_shape [[buffer(9)]],
  const constant int64_t* h_strides [[buffer(10)]],
  const constant int& h_ndim [[buffer(11)]],
  const device bfloat16_t* b [[buffer(12)]],
  const constant int* b_shape [[buffer(13)]],
  const constant int64_t* b_strides [[buffer(14)]],
  const constant int& b_ndim [[buffer(15)]],
  device float* out0 [[buffer(16)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // mixed_types: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(a_shape, a_ndim);
  const bool contiguous = zmlx_row_contiguous(a_shape, a_strides, a_ndim) && zmlx_row_contiguous(m_shape, m_strides, m_ndim) && zmlx_row_contiguous(h_shape, h_strides, h_ndim) && zmlx_row_contiguous(b_shape, b_strides, b_ndim);
  const uint first = threadgroup_position_in_grid.x * 2048 + thread_position_in_threadgroup.x * 4;
  if (contiguous && first + 1028 <= n) {
    for (int c = 0; c < 2; ++c) {
      for (int k = 0; k < 4; ++k) {
        const uint i = first + c * 1024 + k;
        float res0;
        mixed_types_c58a70ead368_body(a[i], m[i], h[i], b[i], res0);
        out0[i] = res0;
      }
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        float res0;
        mixed_types_c58a70ead368_body(a[contiguous ? i : zmlx_loc(i, a_shape, a_strides, a_ndim)], m[contiguous ? i : zmlx_loc(i, m_shape, m_strides, m_ndim)], h[contiguous ? i : zmlx_loc(i, h_shape, h_strides, h_ndim)], b[contiguous ? i : zmlx_loc(i, b_shape, b_strides, b_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
