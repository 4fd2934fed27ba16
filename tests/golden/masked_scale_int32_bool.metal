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

inline void masked_scale_dd7d96505b90_body(const int a, const bool m, thread int& out0) {
  out0 = m ? a * 3 : -a;
}
[[kernel]] void custom_kernel_masked_scale_dd7d96505b90_7390ce8a_int32_t_bool_int32_t(
  const device int32_t* a [[buffer(0)]],
  const constant int* a_shape [[buffer(1)]],
  const constant int64_t* a_strides [[buffer(2)]],
  const constant int& a_ndim [[buffer(3)]],
  const device bool* m [[buffer(4)]],
  const constant int* m_shape [[buffer(5)]],
  const constant int64_t* m_strides [[buffer(6)]],
  const constant int& m_ndim [[buffer(7)]],
  device int32_t* out0 [[buffer(8)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // masked_scale: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(a_shape, a_ndim);
  const bool contiguous = zmlx_row_contiguous(a_shape, a_strides, a_ndim) && zmlx_row_contiguous(m_shape, m_strides, m_ndim);
  const uint first = threadgroup_position_in_grid.x * 2048 + thread_position_in_threadgroup.x * 4;
  if (contiguous && first + 1028 <= n) {
    for (int c = 0; c < 2; ++c) {
      for (int k = 0; k < 4; ++k) {
        const uint i = first + c * 1024 + k;
        int res0;
        masked_scale_dd7d96505b90_body(a[i], m[i], res0);
        out0[i] = res0;
      }
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        int res0;
        masked_scale_dd7d96505b90_body(a[contiguous ? i : zmlx_loc(i, a_shape, a_strides, a_ndim)], m[contiguous ? i : zmlx_loc(i, m_shape, m_strides, m_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
