"""Row kernels: @zmlx.map_reduce / @zmlx.reduce written as Python.

Every kernel is checked against
- an MLX reference (mx.softmax, mx.logsumexp, mx.fast.rms_norm, mx.fast.layer_norm, mx.var,
  cross-entropy with a one-hot or a (B, 1) label-logit input), evaluated in float32 on the same
  (rounded) inputs and cast to the kernel's dtype: the kernel accumulates in float32, so this is
  the accurate oracle;
- the body itself applied row by row: inputs broadcast together first, then a loop over the
  leading axes (DESIGN.md) -- same dtype, same shape, values within the dtype's tolerance;
- gradients: `mx.vjp` with random cotangents w.r.t. every float array input, a (D,) weight and a
  (B, 1) per-row input included (Python scalars such as eps are parameters).

Matrix: row lengths 1, 7, 32, 33, 1000, 4096, 10000; leading shapes (), (5,), (3, 5) (() means a
1-D input of shape (D,)); float32/float16/bfloat16. The full product runs on the portable "mlx"
backend; on "metal-sim" (the generated MSL executed on the CPU) every row length at leading (3,)
float32, a dtype sweep at D=33 over every leading shape, and gradients at D in (7, 1000).
"""
from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.testing import rowwise
from zmlx_dsl import ZMLXShapeError, ZMLXSyntaxError
from zmlx_dsl.backend.metal_sim.compiler import find_compiler

from conftest import assert_close, kernel_of, rand, random_like, restricted

HAVE_SIM = find_compiler() is not None
needs_sim = pytest.mark.skipif(not HAVE_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
FILE = inspect.getsourcefile(lambda: None)

ROW_LENGTHS = (1, 7, 32, 33, 1000, 4096, 10000)
LEADS = ((), (5,), (3, 5))
DTYPES = {"f32": mx.float32, "f16": mx.float16, "bf16": mx.bfloat16}
EPS = 1e-5

# (atol, rtol) per dtype. vs the float32 oracle: the kernel rounds once, at the store (+ the rounding
# of half-precision parameters and row sizes that MLX's typing implies). vs the body run in MLX: the
# body rounds after every op in half precision, so its own error is several ulps.
TOL_REF = {mx.float32: (2e-5, 1e-4), mx.float16: (2e-3, 4e-3), mx.bfloat16: (1.6e-2, 3e-2)}
TOL_BODY = {mx.float32: (2e-5, 1e-4), mx.float16: (1e-2, 1e-2), mx.bfloat16: (8e-2, 8e-2)}
TOL_GRAD = {mx.float32: (1e-4, 1e-3), mx.float16: (1e-2, 2e-2), mx.bfloat16: (8e-2, 8e-2)}


# ---- kernel bodies (one row each) ----------------------------------------------------------------


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def logsumexp(x):
    m = x.max()
    return m + mx.log(mx.exp(x - m).sum())


def rmsnorm(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


def layernorm(x, w, b, eps):
    mu = x.mean()
    d = x - mu
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w + b


def variance(x):
    return mx.var(x)


def xent_onehot(logits, onehot):
    m = logits.max()
    return m + mx.log(mx.exp(logits - m).sum()) - (logits * onehot).sum()


def xent_label(logits, target_logit):
    """target_logit is (B, 1): broadcast to the row, so it is reduced to one value (mean) per row."""
    m = logits.max()
    return m + mx.log(mx.exp(logits - m).sum()) - mx.mean(target_logit)


def temp_softmax(x, temp):
    """A (B, 1) per-row temperature, differentiated too."""
    z = x / temp
    e = mx.exp(z - z.max())
    return e / e.sum()


@dataclass(frozen=True)
class Spec:
    kind: str
    body: Callable
    make: Callable          # (lead, D, dtype, rng) -> args
    ref: Callable           # MLX reference, same args


def _x(lead, D, dtype, rng, **kw):
    return rand(lead + (D,), dtype, rng=rng, **kw)


def _onehot(lead, D, dtype, rng):
    labels = rng.integers(0, D, size=lead)
    return mx.array(np.arange(D) == labels[..., None]).astype(dtype)


SPECS = {
    "softmax": Spec("map_reduce", softmax, lambda L, D, t, r: [_x(L, D, t, r, low=-4, high=4)],
                    lambda x: mx.softmax(x, axis=-1)),
    "logsumexp": Spec("reduce", logsumexp, lambda L, D, t, r: [_x(L, D, t, r, low=-5, high=5)],
                      lambda x: mx.logsumexp(x, axis=-1)),
    "rmsnorm": Spec("map_reduce", rmsnorm,
                    lambda L, D, t, r: [_x(L, D, t, r), rand((D,), t, rng=r, low=0.5, high=1.5), EPS],
                    lambda x, w, eps: mx.fast.rms_norm(x, w, eps)),
    "layernorm": Spec("map_reduce", layernorm,
                      lambda L, D, t, r: [_x(L, D, t, r), rand((D,), t, rng=r, low=0.5, high=1.5),
                                          rand((D,), t, rng=r), EPS],
                      lambda x, w, b, eps: mx.fast.layer_norm(x, w, b, eps)),
    "var": Spec("reduce", variance, lambda L, D, t, r: [_x(L, D, t, r)], lambda x: mx.var(x, axis=-1)),
    "xent_onehot": Spec("reduce", xent_onehot, lambda L, D, t, r: [_x(L, D, t, r), _onehot(L, D, t, r)],
                        lambda lg, oh: mx.logsumexp(lg, axis=-1) - (lg * oh).sum(axis=-1)),
    "xent_label": Spec("reduce", xent_label, lambda L, D, t, r: [_x(L, D, t, r), rand(L + (1,), t, rng=r)],
                       lambda lg, tl: mx.logsumexp(lg, axis=-1) - tl[..., 0]),
    "temp_softmax": Spec("map_reduce", temp_softmax,
                         lambda L, D, t, r: [_x(L, D, t, r), rand(L + (1,), t, rng=r, low=0.5, high=2.0)],
                         lambda x, tp: mx.softmax(x / tp, axis=-1)),
}

_KERNELS: dict = {}


def kernel(name: str, backend: str):
    key = (name, backend)
    if key not in _KERNELS:
        spec = SPECS[name]
        _KERNELS[key] = getattr(zmlx, spec.kind)(spec.body, backend=backend)
    return _KERNELS[key]


# ---- references ----------------------------------------------------------------------------------


def upcast(args: list) -> list:
    return [a.astype(mx.float32) if isinstance(a, mx.array) and a.dtype in (mx.float16, mx.bfloat16) else a
            for a in args]


def float_pos(args: list) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, mx.array) and a.dtype in DTYPES.values()]


def check_values(name: str, backend: str, lead: tuple, D: int, dtype) -> None:
    spec = SPECS[name]
    rng = np.random.default_rng(zlib.crc32(repr((name, lead, D)).encode()))
    args = spec.make(lead, D, dtype, rng)
    k = kernel(name, backend)
    got = k(*args)
    mx.eval(got)
    # the MLX reference, float32 oracle on the same inputs
    want = spec.ref(*upcast(args)).astype(dtype)
    atol, rtol = TOL_REF[dtype]
    assert got.dtype == dtype
    assert_close(got, want, atol=atol, rtol=rtol, what=f"{name} vs MLX reference: ")
    # the body applied row by row, in the kernel's dtype
    body = rowwise(spec.body, args)(*args)
    atol, rtol = TOL_BODY[dtype]
    assert_close(got, body, atol=atol, rtol=rtol, what=f"{name} vs the body per row: ")


def check_grads(name: str, backend: str, lead: tuple, D: int, dtype, vs_body: bool = True) -> None:
    spec = SPECS[name]
    rng = np.random.default_rng(zlib.crc32(repr((name, lead, D, "grad")).encode()))
    args = spec.make(lead, D, dtype, rng)
    if name == "xent_onehot":
        args[1] = args[1] + random_like(args[1], rng, 0.1)  # soft labels: a nonzero-everywhere input
    pos = float_pos(args)
    k = kernel(name, backend)
    out = spec.ref(*args)
    cot = random_like(out, rng)
    _, g_kern = mx.vjp(restricted(k, args, pos), [args[i] for i in pos], [cot])
    mx.eval(g_kern)
    up = upcast(args)
    _, g_ref = mx.vjp(restricted(spec.ref, up, pos), [up[i] for i in pos], [cot.astype(mx.float32)])
    atol, rtol = TOL_GRAD[dtype]
    for i, gk, gr in zip(pos, g_kern, g_ref):
        assert gk.shape == args[i].shape and gk.dtype == args[i].dtype, (i, gk.shape, gk.dtype)
        assert_close(gk, gr.astype(dtype), atol=atol, rtol=rtol, what=f"{name} grad {i} vs MLX reference: ")
    if vs_body and dtype == mx.float32:
        ref = rowwise(spec.body, args)
        _, g_body = mx.vjp(restricted(ref, args, pos), [args[i] for i in pos], [cot])
        for i, gk, gb in zip(pos, g_kern, g_body):
            assert_close(gk, gb, atol=atol, rtol=rtol, what=f"{name} grad {i} vs the body per row: ")


def _id(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) and v else ("1d" if v == () else str(v))


# ---- the matrix on the portable backend ----------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("lead", LEADS, ids=_id)
@pytest.mark.parametrize("D", ROW_LENGTHS)
@pytest.mark.parametrize("name", list(SPECS))
def test_mlx_values_and_grads(name, D, lead, dtype, eager_mlx):
    """eager_mlx: without mx.compile, whose CPU JIT would compile each of the ~100 distinct graphs of
    this matrix with the system C++ compiler on a cold cache; the compiled launch path of row kernels
    is covered by the tests below (axes, several outputs, grad of grad) and the metal-sim tests."""
    check_values(name, "mlx", lead, D, DTYPES[dtype])
    check_grads(name, "mlx", lead, D, DTYPES[dtype])


# ---- metal-sim: the generated MSL, run on the CPU ------------------------------------------------


@needs_sim
@pytest.mark.parametrize("D", ROW_LENGTHS)
@pytest.mark.parametrize("name", list(SPECS))
def test_metal_sim_row_lengths(name, D):
    check_values(name, "metal-sim", (3,), D, mx.float32)


@needs_sim
@pytest.mark.parametrize("lead", [(8,), (2, 2), (6,)], ids=_id)
@pytest.mark.parametrize("name", list(SPECS))
def test_metal_sim_packed_short_rows(name, lead):
    """Short rows run one simdgroup per row, several rows per threadgroup (a divisor of the count)."""
    check_values(name, "metal-sim", lead, 7, mx.float32)
    check_grads(name, "metal-sim", lead, 7, mx.float32)


@needs_sim
@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("name", list(SPECS))
def test_metal_sim_dtypes(name, dtype):
    for lead in LEADS:
        check_values(name, "metal-sim", lead, 33, DTYPES[dtype])


@needs_sim
@pytest.mark.parametrize("D", (7, 1000))
@pytest.mark.parametrize("name", list(SPECS))
def test_metal_sim_grads(name, D):
    check_grads(name, "metal-sim", (3,), D, mx.float32)


BACKENDS = ["mlx"] + (["metal-sim"] if HAVE_SIM else [])


# ---- other axes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", (0, 1))
def test_other_axis_on_3d(backend, axis):
    rng = np.random.default_rng(7 + axis)
    x = rand((6, 4, 5), rng=rng, low=-3, high=3)
    sm = zmlx.map_reduce(softmax, axis=axis, backend=backend)
    lse = zmlx.reduce(logsumexp, axis=axis, backend=backend)
    y, z = sm(x), lse(x)
    assert y.shape == x.shape and z.shape == tuple(s for i, s in enumerate(x.shape) if i != axis)
    assert_close(y, mx.softmax(x, axis=axis), atol=1e-6, rtol=1e-5)
    assert_close(z, mx.logsumexp(x, axis=axis), atol=1e-5, rtol=1e-5)
    for k, ref in ((sm, lambda a: mx.softmax(a, axis=axis)), (lse, lambda a: mx.logsumexp(a, axis=axis))):
        cot = random_like(ref(x), rng)
        _, (gk,) = mx.vjp(k, [x], [cot])
        _, (gr,) = mx.vjp(ref, [x], [cot])
        assert_close(gk, gr, atol=1e-5, rtol=1e-4)
    # a (D,) weight along the reduced axis broadcasts against it
    w = rand((x.shape[axis],) + (1,) * (2 - axis), rng=rng, low=0.5, high=1.5)
    rms = zmlx.map_reduce(rmsnorm, axis=axis, backend=backend)
    want = mx.moveaxis(mx.fast.rms_norm(mx.moveaxis(x, axis, -1), w.reshape(-1), EPS), -1, axis)
    assert_close(rms(x, w, EPS), want, atol=1e-5, rtol=1e-4)


# ---- several outputs: rows and per-row values mixed -----------------------------------------------


def softmax_and_lse(x):
    m = x.max()
    e = mx.exp(x - m)
    s = e.sum()
    return e / s, m + mx.log(s)


def add_rmsnorm(x, residual, w, eps):
    h = x + residual
    return h * mx.rsqrt(mx.mean(h * h) + eps) * w, h


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(33,), (3, 33), (2, 3, 1000)], ids=_id)
def test_multiple_outputs(backend, shape):
    rng = np.random.default_rng(11)
    x = rand(shape, rng=rng)
    k = zmlx.map_reduce(softmax_and_lse, backend=backend)
    ref = lambda a: (mx.softmax(a, axis=-1), mx.logsumexp(a, axis=-1))  # noqa: E731
    got, want = k(x), ref(x)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w, b in zip(got, want, rowwise(softmax_and_lse, [x])(x)):
        assert g.shape == w.shape == b.shape and g.dtype == w.dtype == b.dtype
        assert_close(g, w, atol=1e-5, rtol=1e-5)
        assert_close(g, b, atol=1e-5, rtol=1e-5)
    cots = [random_like(w, rng) for w in want]
    _, gk = mx.vjp(lambda a: list(k(a)), [x], cots)
    _, gr = mx.vjp(lambda a: list(ref(a)), [x], cots)
    assert_close(gk[0], gr[0], atol=1e-5, rtol=1e-4)

    r, w = rand(shape, rng=rng), rand(shape[-1:], rng=rng, low=0.5, high=1.5)
    k2 = zmlx.map_reduce(add_rmsnorm, backend=backend)
    ref2 = lambda a, b, c: (mx.fast.rms_norm(a + b, c, EPS), a + b)  # noqa: E731
    got, want = k2(x, r, w, EPS), ref2(x, r, w)
    for g, v in zip(got, want):
        assert g.shape == v.shape and g.dtype == v.dtype
        assert_close(g, v, atol=1e-5, rtol=1e-4)
    cots = [random_like(v, rng) for v in want]
    _, gk = mx.vjp(lambda a, b, c: list(k2(a, b, c, EPS)), [x, r, w], cots)
    _, gr = mx.vjp(lambda a, b, c: list(ref2(a, b, c)), [x, r, w], cots)
    for i, (a, b) in enumerate(zip(gk, gr)):
        assert a.shape == b.shape
        assert_close(a, b, atol=1e-4, rtol=1e-3, what=f"add_rmsnorm grad {i}: ")


# ---- second order ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_of_grad(backend):
    rng = np.random.default_rng(5)
    x = rand((3, 33), rng=rng)
    c1, c2 = random_like(x, rng), random_like(x, rng)
    sm = zmlx.map_reduce(softmax, backend=backend)
    rms = zmlx.map_reduce(rmsnorm, backend=backend)
    w = rand((33,), rng=rng, low=0.5, high=1.5)
    for k, ref in ((sm, lambda a: mx.softmax(a, axis=-1)),
                   (lambda a: rms(a, w, EPS), lambda a: mx.fast.rms_norm(a, w, EPS))):
        def outer(f):
            inner = mx.grad(lambda a: (f(a) * c1).sum())
            return mx.grad(lambda a: (inner(a) * c2).sum())
        assert_close(outer(k)(x), outer(ref)(x), atol=1e-4, rtol=1e-3)


# ---- bad input: exact, located messages -----------------------------------------------------------


def located(fn, snippet: str, message: str) -> str:
    lines, first = inspect.getsourcelines(fn)
    i, line = next((i, line) for i, line in enumerate(lines) if snippet in line)
    col = line.index(snippet) + 1
    text = line.rstrip("\n").rstrip()
    return f"{FILE}:{first + i}:{col}: {message}\n    {text}\n    {' ' * (col - 1)}^"


def bad_axis(x):
    return x / x.sum(axis=1)


def bad_branch(x):
    if x > 0:
        y = x / x.sum()
    else:
        y = x
    return y


def bad_not_per_row(logits, target_logit):
    m = logits.max()
    return m + mx.log(mx.exp(logits - m).sum()) - target_logit


X2 = mx.ones((2, 8))


def test_reduction_over_another_axis():
    k = zmlx.map_reduce(bad_axis, backend="mlx")
    with pytest.raises(ZMLXSyntaxError) as ei:
        k(X2)
    assert str(ei.value) == located(bad_axis, "x.sum(axis=1)",
                                    "sum(axis=1): the body is MLX code for one row (1-D), where only axis -1 "
                                    "(or 0, or None) exists; write axis=-1, and choose the axis of the inputs "
                                    "that rows run along with the decorator's axis= (e.g. "
                                    "@zmlx.map_reduce(axis=1))")


def test_reduction_inside_data_dependent_branch():
    k = zmlx.map_reduce(bad_branch, backend="mlx")
    with pytest.raises(ZMLXSyntaxError) as ei:
        k(X2)
    assert str(ei.value) == located(bad_branch, "x.sum()",
                                    "reduction 'sum' inside a data-dependent branch is not supported; "
                                    "compute it before the 'if' and select afterwards")


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_lengths_that_do_not_broadcast(backend):
    """Rows keep their own lengths (broadcast over the leading axes only): rows that meet in the body
    must broadcast as MLX's 1-D arrays, and leading axes as MLX's; each mismatch names what to do."""
    k = zmlx.map_reduce(rmsnorm, backend=backend)
    with pytest.raises(ZMLXShapeError) as ei:
        k(mx.ones((4, 8)), mx.ones((7,)), EPS)
    assert str(ei.value) == located(rmsnorm, "x * mx.rsqrt", "mul: rows of lengths 7 and 8 do not broadcast (the "
                                    "rows of a body broadcast as MLX's 1-D arrays: equal lengths, or length 1); "
                                    "slice one to the other's length")
    assert isinstance(ei.value, ValueError)
    k = zmlx.reduce(xent_label, backend=backend)
    with pytest.raises(ZMLXShapeError) as ei:
        k(mx.ones((4, 8)), mx.ones((3, 1)))
    assert str(ei.value) == ("xent_label: the inputs' leading axes (all but the rows) (4,), (3,) do not broadcast "
                             "together")


def test_reduce_output_not_per_row():
    """An input of whole rows returned unreduced from @zmlx.reduce is a row, not one value per row
    (a (B, 1) or (B,) input would be one: see test_reductions_of_values_already_one_per_row)."""
    k = zmlx.reduce(bad_not_per_row, backend="mlx")
    with pytest.raises(ZMLXSyntaxError) as ei:
        k(X2, mx.ones(X2.shape))
    assert str(ei.value) == located(bad_not_per_row, "def bad_not_per_row",
                                    "output 0 of reduce kernel 'bad_not_per_row' is not one value per row; "
                                    "reduce it (e.g. .sum()) or use @zmlx.map_reduce to return rows")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_mean_of_long_rows(backend, dtype):
    """mean/var divide by the row length: in float16 70000 overflows and bfloat16 rounds 70001,
    so the division happens in float32 (MLX's mean scales in float too)."""
    rng = np.random.default_rng(3)
    t = DTYPES[dtype]
    x, w = rand((2, 70001), t, rng=rng), mx.ones((70001,), t)
    got = kernel("rmsnorm", backend)(x, w, EPS)
    want = mx.fast.rms_norm(x.astype(mx.float32), w.astype(mx.float32), EPS).astype(t)
    assert_close(got, want, atol=TOL_REF[t][0], rtol=TOL_REF[t][1])
    assert_close(kernel("var", backend)(x), mx.var(x.astype(mx.float32), axis=-1).astype(t),
                 atol=TOL_REF[t][0], rtol=TOL_REF[t][1])


def test_long_rows_held_in_registers_per_backend_budget():
    """Rows of 32768 float32: the CUDA renderer keeps them in registers (32 per thread at 1024
    threads, measured faster on an H100); 16-bit rows and Metal's smaller budget re-read them."""
    def softmax_body(x):
        e = mx.exp(x - x.max())
        return e / e.sum()
    k = zmlx.map_reduce(softmax_body)
    x = mx.zeros((2, 32768))
    assert "one row of 32768 per threadgroup of 1024, vectors of 4, row held in registers (32 per thread)" \
        in k.source(x, backend="cuda")
    assert "one row of 32768 per threadgroup of 1024, vectors of 4, row re-read per pass" in k.source(x, backend="metal")
    xh = mx.zeros((2, 32768), dtype=mx.bfloat16)
    assert "one row of 32768 per threadgroup of 1024, vectors of 8, row re-read per pass" in k.source(xh, backend="cuda")


def test_rows_read_in_one_pass_stay_out_of_registers(backend):
    """A row read in one pass (logsumexp: its sum in the max's pass; cross-entropy) is streamed at
    long rows: registers would save no re-read and cap occupancy (logsumexp float32 of 32768: 50%
    on an H200). Short rows, and rows read again (softmax), stay in registers. Values as MLX's."""
    def logsumexp_body(x):
        m = x.max()
        return m + mx.log(mx.exp(x - m).sum())

    def xent_body(z, onehot):
        return mx.logsumexp(z) - (z * onehot).sum()
    lse = zmlx.reduce(logsumexp_body)
    x = mx.zeros((2, 32768))
    assert "one row of 32768 per threadgroup of 1024, vectors of 4, row re-read per pass" in lse.source(x, backend="cuda")
    assert "row held in registers (8 per thread)" in lse.source(mx.zeros((2, 4096)), backend="cuda")
    onehot = mx.zeros((2, 32768))
    assert "row re-read per pass" in zmlx.reduce(xent_body).source(x, onehot, backend="cuda")
    rng = np.random.default_rng(0)
    z = rand((3, 32768), rng=rng, low=-30.0, high=30.0)
    assert_close(kernel_of(logsumexp_body, backend, "reduce")(z), mx.logsumexp(z, axis=-1), atol=1e-5, rtol=1e-5)


def _two_sums_one_max(x):
    m = x.max()
    a = mx.exp(x - m).sum()
    b = mx.exp(x - mx.stop_gradient(m)).sum()  # as mx.softmax's inlined body writes its shift
    return mx.log(a) + mx.log(b) + m


@needs_sim
def test_two_online_sums_of_one_max():
    """Two sums of exp(x - max) of one max in its pass (rows re-read: the online normaliser) share
    the max's local copy (found by the nested property test: `max1_0_here` was declared twice)."""
    x = rand((3, 33000), rng=np.random.default_rng(1), low=-12.0, high=12.0)
    k = zmlx.reduce(_two_sums_one_max, backend="metal-sim")
    assert_close(k(x), rowwise(_two_sums_one_max, [x])(x), atol=1e-4, rtol=1e-5)
    assert zmlx.reduce(_two_sums_one_max).source(x, backend="metal").count("max1_0_here =") == 1


def _count_positive(x):
    return (x > 0).sum()


def _count_and_total(x):
    return (x * 2 > 1).sum() + x.sum()


def _range_of(x):
    return x.max() - x.min()


def _rowwise(body, x):
    """The body applied to each row in MLX: the reference for one value per row."""
    return mx.stack([body(x[i]) for i in range(x.shape[0])])


@pytest.mark.parametrize("body", [_count_positive, _count_and_total], ids=lambda f: f.__name__)
def test_sums_of_comparisons(backend, body):
    """MLX sums booleans as int32; a comparison summed by `acc + ...` keeps its parentheses."""
    x = mx.array([[1.0, -1.0, 2.0, 0.25], [0.5, 3.0, -2.0, 0.75], [-1.0, -2.0, -3.0, -4.0]])
    got, want = zmlx.reduce(body, backend=backend)(x), _rowwise(body, x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert mx.array_equal(got, want).item()


def test_row_max_and_min_propagate_nan(backend):
    """A NaN anywhere in a row makes its max and min NaN, as in MLX (C's max/min would drop it),
    also when it sits in another simdgroup than the row's extremes."""
    x = mx.random.normal((3, 300))
    x = mx.concatenate([x[:1], mx.where(mx.arange(300) == 290, float("nan"), x[1:2]), x[2:]])
    got, want = zmlx.reduce(_range_of, backend=backend)(x), _rowwise(_range_of, x)
    assert mx.isnan(got[1]).item() and not mx.isnan(got[0]).item()
    assert mx.allclose(got, want, equal_nan=True).item()


def _reduce_row_values(x, w):
    m = x.max()
    return (mx.abs(m).sum() / (mx.abs(w) + 1.0) + mx.mean(m) + mx.var(x.sum()) + mx.logsumexp(m)
            + mx.softmax(x.min()) + (m > 0).sum())


def test_reductions_of_values_already_one_per_row(backend):
    """In the body such a value is a 0-d array: its sum/max/min/mean is itself, its var 0, its
    softmax 1 (a kernel must not reduce it over the row's elements)."""
    x, w = mx.random.normal((3, 37)), mx.random.normal((37,))
    got = zmlx.map_reduce(_reduce_row_values, backend=backend)(x, w)
    want = mx.stack([_reduce_row_values(x[i], w) for i in range(3)])
    assert got.dtype == want.dtype and got.shape == want.shape
    assert mx.allclose(got, want, atol=1e-5).item()
