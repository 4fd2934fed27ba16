"""Golden tests: build_metal_source reproduces the text MLX itself generates for metal_kernel."""

import os
import tempfile

import pytest

mx = pytest.importorskip("mlx.core")

from zmlx_dsl.backend.metal_source import build_metal_source  # noqa: E402

BUG = """[[kernel]] void custom_kernel_k2_float16_t_bfloat16_tc_float_int32_t(
  const device float16_t* x [[buffer(0)]],
  const constant int* x_shape [[buffer(1)]],
  const constant bfloat16_t* w [[buffer(2)]],
  device float* o [[buffer(3)]]) {
  device int32_t* q [[buffer(4)]]) {
o[0]=x_shape[0]; q[0]=w[0];
}
"""

TEMPLATED = """#define X 1
template <typename T, int N, bool B>
[[kernel]] void custom_kernel_k1__float_3_1_floatc_floats_float_float(
  const constant float* a [[buffer(0)]],
  const constant int* a_shape [[buffer(1)]],
  const constant int64_t* a_strides [[buffer(2)]],
  const constant int& a_ndim [[buffer(3)]],
  const constant float& s [[buffer(4)]],
  device float* o [[buffer(5)]],
  device float* p [[buffer(6)]],
  uint3 thread_position_in_grid [[thread_position_in_grid]]) {
uint i = thread_position_in_grid.x; o[i] = a[i]*s + a_shape[0]; p[i]=a_strides[0]+a_ndim;
}

template [[host_name("custom_kernel_k1__float_3_1_floatc_floats_float_float")]] [[kernel]] decltype(custom_kernel_k1__float_3_1_floatc_floats_float_float<float, 3, 1>) custom_kernel_k1__float_3_1_floatc_floats_float_float<float, 3, 1>;
"""

CASES = [
    ("k1", ["a", "s"], ["o", "p"],
     "uint i = thread_position_in_grid.x; o[i] = a[i]*s + a_shape[0]; p[i]=a_strides[0]+a_ndim;", "#define X 1\n",
     lambda: [mx.zeros((4,)), mx.array(2.0)], [mx.float32, mx.float32], [("T", mx.float32), ("N", 3), ("B", True)],
     False, TEMPLATED),
    ("k2", ["x", "w"], ["o", "q"], "o[0]=x_shape[0]; q[0]=w[0];", "",
     lambda: [mx.zeros((16,), mx.float16), mx.zeros((3, 2), mx.bfloat16)], [mx.float32, mx.int32], None, False, BUG),
    ("k3", ["x"], ["o"],
     "atomic_fetch_add_explicit(&o[0], x[thread_index_in_simdgroup], memory_order_relaxed); "
     "// threads_per_threadgroup simdgroup_index_in_threadgroup",
     "", lambda: [mx.zeros((64, 8), mx.int32)], [mx.int32], [("A", False)], True, None),
    ("k4", ["x"], ["o"], "o[0]=x_shape[0]+x_ndim;", "", lambda: [mx.zeros((16,), mx.uint8)], [mx.uint32], None,
     False, None),
]


def mlx_generated(name, inn, outn, src, header, inputs, out_dtypes, template, atomic):
    """The source MLX prints with verbose=True while export_function traces the kernel."""
    k = mx.fast.metal_kernel(name=name, input_names=inn, output_names=outn, source=src, header=header,
                             atomic_outputs=atomic)

    def f(*args):
        return k(inputs=list(args), output_shapes=[(4,)] * len(outn), output_dtypes=out_dtypes,
                 grid=(4, 1, 1), threadgroup=(4, 1, 1), template=template, verbose=True)

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "out.txt")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT)
        saved = os.dup(1)
        os.dup2(fd, 1)
        try:
            mx.export_function(os.path.join(d, "f.mlxfn"), f, *inputs)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(fd)
        text = open(log).read()
    head = f"Generated source code for `{name}`:\n```\n"
    assert text.startswith(head), text
    return text[len(head):-len("\n```\n")]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_mlx(case):
    name, inn, outn, src, header, make, out_dtypes, template, atomic, golden = case
    mine = build_metal_source(name, inn, outn, src, header, make(), template=template, atomic_outputs=atomic,
                              output_dtypes=out_dtypes)
    assert mine == mlx_generated(name, inn, outn, src, header, make(), out_dtypes, template, atomic)
    if golden is not None:
        assert mine == golden
