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

inline float zmlx_fmax(float a, float b) {
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}

inline void axpy_relu_b75363d0452b_body(const float x, const float y, const float z, const float alpha, thread float& out0) {
  out0 = zmlx_fmax(x * y + alpha * z, 0.0f);
}
[[kernel]] void custom_kernel_axpy_relu_b75363d0452b_23108aef_float_float_floatc_floatc_float(
  const device float* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant int64_t* x_strides [[buffer(2)]],
  const constant int& x_ndim [[buffer(3)]],
  const device float* y [[buffer(4)]],
  const constant int* y_shape [[buffer(5)]],
  const constant int64_t* y_strides [[buffer(6)]],
  const constant int& y_ndim [[buffer(7)]],
  const constant float* z [[buffer(8)]],
  const constant int* z_shape [[buffer(9)]],
  const constant int64_t* z_strides [[buffer(10)]],
  const constant int& z_ndim [[buffer(11)]],
  const constant float* alpha [[buffer(12)]],
  device float* out0 [[buffer(13)]],
  uint3 thread_position_in_threadgroup [[thread_position_in_threadgroup]],
  uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]) {
  // axpy_relu: 2 vector(s) of 4 elements per thread, block-cyclic; contiguous inputs take the vector path
  const uint n = zmlx_numel(x_shape, x_ndim);
  const uint y_size = zmlx_numel(y_shape, y_ndim);
  const uint z_run = n / zmlx_numel(z_shape, z_ndim);
  const bool contiguous = zmlx_row_contiguous(x_shape, x_strides, x_ndim) && zmlx_row_contiguous(y_shape, y_strides, y_ndim) && zmlx_row_contiguous(z_shape, z_strides, z_ndim);
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
        axpy_relu_b75363d0452b_body(x_v[c][k], y[(first + c * 1024 + k) % y_size], z[(first + c * 1024 + k) / z_run], alpha[0], res0);
        res0_v[k] = res0;
      }
      *(device vec<float, 4>*)(out0 + first + c * 1024) = res0_v;
    }
  } else {
    for (int c = 0; c < 2; ++c) {
      const uint base = first + c * 1024;
      for (uint i = base; i < n && i < base + 4; ++i) {
        float res0;
        axpy_relu_b75363d0452b_body(x[contiguous ? i : zmlx_loc(i, x_shape, x_strides, x_ndim)], y[contiguous ? i % y_size : zmlx_loc(i % y_size, y_shape, y_strides, y_ndim)], z[contiguous ? i / z_run : zmlx_loc(i / z_run, z_shape, z_strides, z_ndim)], alpha[0], res0);
        out0[i] = res0;
      }
    }
  }

}
