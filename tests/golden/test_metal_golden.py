"""Golden tests of the generated Metal (and CUDA) kernel text.

Each case's full kernel -- MLX's wrapper included, as `kernel.source(..., backend="metal")` returns
it -- is pinned in tests/golden/<case>.metal (.cu for CUDA). The files were written once with
`UPDATE_GOLDEN=1 pytest tests/golden/test_metal_golden.py`, read by eye, and are compared verbatim since:
a change to the generated code shows up as a diff to review, then re-pin with UPDATE_GOLDEN=1.

Independent of the golden text, every case is checked for properties a Metal engineer relies on:
no `double`, an attribute named in every kernel signature (MLX 0.32.4's malformed-signature bug),
valid kernel names that are identical in another process (no salted `hash()`), the text equal to
what MLX itself prints for the kernel, and the kernel running on metal-sim with the body's values.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import mlx.core as mx
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.testing import rowwise
from zmlx_dsl.backend.metal_source import METAL_ATTRIBUTES

from conftest import HAVE_METAL_SIM, assert_grads, assert_same, rand

GOLDEN = Path(__file__).parent
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


# ---- the kernels ---------------------------------------------------------------------------------


@zmlx.elementwise
def silu(x):
    return x * mx.sigmoid(x)


@zmlx.elementwise
def gelu(x):
    return 0.5 * x * (1.0 + mx.erf(x / math.sqrt(2.0)))


@zmlx.elementwise
def axpy_relu(x, y, z, alpha):
    """3 inputs broadcast together, a Python scalar parameter."""
    return mx.maximum(x * y + alpha * z, 0.0)


@zmlx.elementwise
def scaled_add(a, b):
    return a * 2.0 + b


@zmlx.elementwise
def sincos(x):
    """2 outputs (with _shape/_strides used: the MLX 0.32.4 signature-bug configuration)."""
    return mx.sin(x), mx.cos(x)


@zmlx.elementwise
def softplus(x):
    return mx.logaddexp(x, 0.0)


@zmlx.elementwise
def masked_scale(a, m):
    """int32 and bool inputs; int32 output."""
    return mx.where(m, a * 3, -a)


@zmlx.elementwise
def mixed_types(a, m, h, b):
    """One input of each dtype: int32, bool, float16, bfloat16 (computes in float32)."""
    return mx.where(m, a.astype(mx.float32) * h, b)


@zmlx.map_reduce
def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def _transcendentals(x):
    """Each function with a fast spelling (c_ops.FAST_SPELLINGS) once."""
    return mx.exp(x) + mx.erf(x) + mx.tanh(x) * mx.sigmoid(x)


fast_f32 = zmlx.elementwise(_transcendentals, name="fast_f32", fast_math=True)   # opted in
precise_bf16 = zmlx.elementwise(_transcendentals, name="precise_bf16", fast_math=False)  # opted out
fast_softmax = zmlx.map_reduce(softmax.__wrapped__, name="fast_softmax", fast_math=True)


@zmlx.map_reduce
def rmsnorm(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


def _x(shape, dtype=mx.float32, seed=0, **kw):
    import numpy as np
    return rand(shape, dtype, rng=np.random.default_rng(seed), **kw)


def _transposed():
    return _x((16, 8), seed=3).T  # (8, 16) with strides (1, 8): not row-contiguous


# name -> (kernel, args builder, "fwd" or "bwd")
CASES = {
    "silu_f32": (silu, lambda: [_x((4, 4096))], "fwd"),
    "gelu_f16": (gelu, lambda: [_x((4, 4096), mx.float16)], "fwd"),
    "axpy_relu_broadcast_f32": (axpy_relu, lambda: [_x((4, 64)), _x((64,), seed=1), _x((4, 1), seed=2), 0.5],
                                "fwd"),
    "axpy_relu_0d_input_f32": (axpy_relu, lambda: [_x((4, 64)), _x((64,), seed=1), mx.array(2.0), 0.5], "fwd"),
    "scaled_add_strided_f32": (scaled_add, lambda: [_transposed(), _x((8, 16), seed=4)], "fwd"),
    "sincos_two_outputs_f32": (sincos, lambda: [_x((64, 64))], "fwd"),
    "softplus_bf16": (softplus, lambda: [_x((8, 512), mx.bfloat16)], "fwd"),
    "masked_scale_int32_bool": (masked_scale, lambda: [_x((8, 512), mx.int32, high=100), _x((8, 512), mx.bool_)],
                                "fwd"),
    "mixed_types": (mixed_types, lambda: [_x((8, 64), mx.int32), _x((8, 64), mx.bool_), _x((8, 64), mx.float16),
                                          _x((8, 64), mx.bfloat16)], "fwd"),
    "silu_backward_f32": (silu, lambda: [_x((4, 4096))], "bwd"),
    "axpy_relu_backward_f32": (axpy_relu, lambda: [_x((4, 64)), _x((64,), seed=1), _x((4, 1), seed=2), 0.5],
                               "bwd"),
    "softmax_d33_f32": (softmax, lambda: [_x((3, 33))], "fwd"),
    "softmax_d4096_f16": (softmax, lambda: [_x((8, 4096), mx.float16)], "fwd"),
    "softmax_backward_d1000_f32": (softmax, lambda: [_x((4, 1000))], "bwd"),
    "softmax_d32768_bf16": (softmax, lambda: [_x((2, 32768), mx.bfloat16)], "fwd"),  # re-read: the online form
    "fast_math_f32": (fast_f32, lambda: [_x((4, 256))], "fwd"),
    "fast_math_backward_f32": (fast_f32, lambda: [_x((4, 256))], "bwd"),
    "precise_math_bf16": (precise_bf16, lambda: [_x((4, 256), mx.bfloat16)], "fwd"),
    "fast_softmax_d1000_f32": (fast_softmax, lambda: [_x((4, 1000))], "fwd"),
    "rmsnorm_d1024_bf16": (rmsnorm, lambda: [_x((8, 1024), mx.bfloat16), _x((1024,), mx.bfloat16, seed=1), 1e-5],
                           "fwd"),
    # the weight's gradient summed over the rows in the kernel (partial sums per group)
    "rmsnorm_backward_d1024_f32": (rmsnorm, lambda: [_x((8, 1024)), _x((1024,), seed=1), 1e-5], "bwd"),
}
CUDA_CASES = ["silu_f32", "softmax_d33_f32", "fast_math_f32", "softmax_d32768_bf16", "rmsnorm_backward_d1024_f32"]


def source_of(case: str, backend: str = "metal") -> str:
    kernel, make, which = CASES[case]
    args = make()
    if which == "bwd":
        return kernel.grad_source(*args, backend=backend)
    return kernel.source(*args, backend=backend)


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text)
        return
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), (f"generated source differs from {path.name}; review the diff and "
                                      "re-pin with UPDATE_GOLDEN=1")


def mlx_printed(case: str) -> str:
    """The full Metal source MLX itself generates when the kernel is launched (printed with
    verbose=True while mx.export_function traces the call; Linux has no Metal to run it)."""
    from zmlx_dsl.backend.launch import Launcher
    from zmlx_dsl.backend.metal import RENDERER
    kernel, make, which = CASES[case]
    args = make()
    compiled = kernel.compiled_for(tuple(args), {}, "metal")
    arrays = [a for a in args if isinstance(a, mx.array)]
    roles, summed = None, ()
    if which == "bwd":
        summed = compiled.row_sums(arrays)
        compiled, roles = compiled.backward[:2]
    params = [mx.array(a, dtype=q.dtype.mx) for a, q in zip([a for a in args if not isinstance(a, mx.array)],
                                                             compiled.program.params)]
    if roles is not None:
        outs = kernel(*args)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        arrays = [{"x": arrays, "g": outs, "y": outs}[r][k] for r, k in roles]

    def factory(**kw):
        k = mx.fast.metal_kernel(**kw)
        return lambda **call: k(**call, verbose=True)

    launcher = Launcher(compiled.program, RENDERER.for_program(compiled.program, compiled.fast_math), factory, "metal")
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "out.txt")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT)
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(fd, 1)
        try:
            run = (lambda *xs: launcher.row_summed(list(xs), summed)) if summed else lambda *xs: launcher(list(xs))
            mx.export_function(os.path.join(d, "f.mlxfn"), run, *(arrays + params))
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(fd)
        text = open(log).read()
    blocks = re.findall(r"Generated source code for `[^`]*`:\n```\n(.*?)\n```\n", text, re.S)
    assert blocks, text
    return "\n".join(blocks)


# ---- the tests -----------------------------------------------------------------------------------

KERNEL_SIG = re.compile(r"\[\[kernel\]\] void (\w+)\((.*?)\) \{\n", re.S)
ATTRIBUTES = [a for a, _ in METAL_ATTRIBUTES]


@pytest.mark.parametrize("case", list(CASES))
def test_metal_golden(case):
    check_golden(GOLDEN / f"{case}.metal", source_of(case))


@pytest.mark.parametrize("case", CUDA_CASES)
def test_cuda_golden(case):
    check_golden(GOLDEN / f"{case}.cu", source_of(case, "cuda"))


@pytest.mark.parametrize("case", list(CASES))
def test_source_is_what_mlx_compiles(case):
    """kernel.source() reproduces MLX's own wrapper for the arrays the launch really passes
    (broadcast views, size-1 inputs as (1,), params as (1,) constants)."""
    assert source_of(case).rstrip("\n") == mlx_printed(case).rstrip("\n")


@pytest.mark.parametrize("case", list(CASES))
def test_metal_structure(case):
    text = source_of(case)
    assert not re.search(r"\bdouble\b", text), "double in generated Metal"
    assert "float64" not in text
    sigs = KERNEL_SIG.findall(text)
    assert len(sigs) == 1, sigs
    for name, params in sigs:
        assert name.isidentifier() and name.isascii(), name
        # MLX 0.32.4 writes a malformed signature (>= 2 outputs, _shape/_strides used, no attribute
        # named): every generated body names an attribute, so the signature always ends with one.
        attrs = re.findall(r"\[\[(\w+)\]\]", params)
        assert any(a in ATTRIBUTES for a in attrs), params
        assert params.rstrip().endswith("]]"), params
        assert params.count(") {") == 0, "malformed signature"
    # the body itself names the attribute (MLX declares one only when its name occurs in the body)
    body = text[KERNEL_SIG.search(text).end():]
    assert any(re.search(rf"\b{a}\b", body) for a in ATTRIBUTES), "no attribute referenced in the body"


@pytest.mark.parametrize("case", CUDA_CASES)
def test_cuda_structure(case):
    text = source_of(case, "cuda")
    assert not re.search(r"\bdouble\b", text)
    names = re.findall(r"__global__ void (\w+)\(", text)
    assert len(names) == 1 and names[0].isidentifier()
    assert "blockIdx.x" in text and "threadIdx.x" in text


NAMES_SCRIPT = """
import sys
sys.path[:0] = [{here!r}, {tests!r}]
import test_metal_golden as t
for case in t.CASES:
    kernel, make, which = t.CASES[case]
    entry = kernel.compiled_for(tuple(make()), {{}}, "mlx")
    prog = entry.backward[0].program if which == "bwd" else entry.program
    print(case, prog.kernel_name)
"""


def kernel_names_here() -> str:
    lines = []
    for case, (kernel, make, which) in CASES.items():
        entry = kernel.compiled_for(tuple(make()), {}, "mlx")
        prog = entry.backward[0].program if which == "bwd" else entry.program
        lines.append(f"{case} {prog.kernel_name}")
    return "\n".join(lines) + "\n"


def test_kernel_names_are_stable_identifiers():
    """Content-derived names: valid identifiers, distinct per program, the same in a process with
    another hash seed (ZMLX 0.10 used Python's salted hash())."""
    here = kernel_names_here()
    names = [line.split()[1] for line in here.splitlines()]
    assert all(n.isidentifier() for n in names)
    assert len(set(names)) == len(names) - 1  # the two axpy_relu forward cases are one program
    root = Path(__file__).parents[2]
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", NAMES_SCRIPT.format(here=str(Path(__file__).parent), tests=str(Path(__file__).parents[1]))],
                         env=env, capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == here
    for case, (kernel, make, which) in CASES.items():
        sig = KERNEL_SIG.search(source_of(case)).group(1)
        assert sig.startswith("custom_kernel_" + dict(line.split() for line in here.splitlines())[case] + "_")


def row_reference(body, args):
    """The row body applied row by row, as the kernel sees its arguments (testing.rowwise)."""
    return rowwise(body, args)


@pytest.mark.parametrize("case", list(CASES))
def test_runs_on_metal_sim(case):
    """The pinned kernels compute the body's values (and gradients) when their MSL runs (metal-sim)."""
    kernel, make, which = CASES[case]
    sim = getattr(zmlx, kernel.kind)(kernel.__wrapped__, backend="metal-sim", fast_math=kernel.fast_math)
    args = make()
    ref = kernel.__wrapped__ if kernel.kind == "elementwise" else row_reference(kernel.__wrapped__, args)
    if which == "bwd":
        assert_grads(sim, ref, *args, atol=1e-5, rtol=1e-4)
    else:
        assert_same(sim, ref, *args, atol=2e-2 if args[0].dtype == mx.bfloat16 else None)


def _names(text: str, backend: str) -> list[str]:
    pattern = r"\[\[kernel\]\] void (\w+)\(" if backend == "metal" else r"__global__ void (\w+)\("
    return re.findall(pattern, text)


@pytest.mark.parametrize("backend", ["metal", "cuda"])
def test_distinct_sources_have_distinct_names(backend):
    """MLX caches compiled kernels by name (CUDA: its JIT module cache is keyed by the name alone),
    so two different kernel texts under one name would run the first one compiled. One program
    specialised for different launch plans (row length, a size-1 input) must get different names."""
    texts = [softmax.source(_x((3, D)), backend=backend) for D in (33, 1000, 4096)]
    texts += [axpy_relu.source(_x((4, 64)), _x((64,)), z, 0.5, backend=backend)
              for z in (_x((4, 64)), mx.array(2.0))]
    names = [_names(t, backend)[0] for t in texts]
    assert len(set(texts)) == len(texts)
    assert len(set(names)) == len(names), names
    again = softmax.source(_x((5, 33), seed=9), backend=backend)  # same plan: same text, same name
    assert again == texts[0]


def _log_chain(x):
    a = mx.log(x * x + 1.0)
    b = mx.log(a * a + 1.0)
    c = mx.log(b * b + 1.0)
    d = mx.log(c * c + 1.0)
    e = mx.log(d * d + 1.0)
    f = mx.log(e * e + 1.0)
    return a * b * c * d * e * f + mx.log2(a + b + 2.0) * mx.log10(c + d + 3.0) + mx.log(e - f + 5.0)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
def test_temporaries_never_shadow_functions():
    """Temporaries are `<op>_<n>`: `log` + 10 must not become `log10` and hide the C function."""
    src = zmlx.elementwise(_log_chain).source(mx.ones((8,)), backend="metal")
    names = re.findall(r"const float (\w+) =", src)
    assert len(names) >= 6 and not {"log2", "log10"} & set(names)
    x = mx.random.uniform(-2, 2, (64,))
    got = zmlx.elementwise(_log_chain, backend="metal-sim")(x)
    assert mx.allclose(got, _log_chain(x), rtol=1e-4, atol=1e-5).item()
