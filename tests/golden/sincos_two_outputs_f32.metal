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

inline void sincos_8258de632553_body(const float x, thread float& out0, thread float& out1) {
  out0 = sin(x);
  out1 = cos(x);
}
[[kernel]] void custom_kernel_sincos_8258de632553_412a704a_float_float_float(
  const device float* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  device float* out0 [[buffer(4)]],
  device float* out1 [[buffer(5)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // sincos: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
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
      vec<float, 4> res1_v;
      for (int k = 0; k < 4; ++k) {
        float res0;
        float res1;
        sincos_8258de632553_body(x_v[c][k], res0, res1);
        res0_v[k] = res0;
        res1_v[k] = res1;
      }
      *(device vec<float, 4>*)(out0 + first + c * 1024) = res0_v;
      *(device vec<float, 4>*)(out1 + first + c * 1024) = res1_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        float res0;
        float res1;
        sincos_8258de632553_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], res0, res1);
        out0[i] = res0;
        out1[i] = res1;
      }
    }
  }

}
