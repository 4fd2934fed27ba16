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

inline void scaled_add_78d8d49cb1c6_body(const float a, const float b, thread float& out0) {
  out0 = a * 2.0f + b;
}
[[kernel]] void custom_kernel_scaled_add_78d8d49cb1c6_e00e4cc2_float_float_float(
  const device float* a [[buffer(0)]],
  const constant int* a_shape [[buffer(1)]],
  const constant int64_t* a_strides [[buffer(2)]],
  const constant int& a_ndim [[buffer(3)]],
  const device float* b [[buffer(4)]],
  const constant int* b_shape [[buffer(5)]],
  const constant int64_t* b_strides [[buffer(6)]],
  const constant int& b_ndim [[buffer(7)]],
  device float* out0 [[buffer(8)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // scaled_add: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(a_shape, a_ndim);
  const bool contiguous = zmlx_row_contiguous(a_shape, a_strides, a_ndim) && zmlx_row_contiguous(b_shape, b_strides, b_ndim);
  const uint first = threadgroup_position_in_grid.x * 2048 + thread_position_in_threadgroup.x * 4;
  if (contiguous && first + 1028 <= n) {
    vec<float, 4> a_v[2];
    vec<float, 4> b_v[2];
    for (int c = 0; c < 2; ++c) {
      a_v[c] = *(const device vec<float, 4>*)(a + first + c * 1024);
      b_v[c] = *(const device vec<float, 4>*)(b + first + c * 1024);
    }
    for (int c = 0; c < 2; ++c) {
      vec<float, 4> res0_v;
      for (int k = 0; k < 4; ++k) {
        float res0;
        scaled_add_78d8d49cb1c6_body(a_v[c][k], b_v[c][k], res0);
        res0_v[k] = res0;
      }
      *(device vec<float, 4>*)(out0 + first + c * 1024) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        float res0;
        scaled_add_78d8d49cb1c6_body(a[contiguous ? i : zmlx_loc(i, a_shape, a_strides, a_ndim)], b[contiguous ? i : zmlx_loc(i, b_shape, b_strides, b_ndim)], res0);
        out0[i] = res0;
      }
    }
  }

}
