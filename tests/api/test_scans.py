"""Scans, sorts and arg-extrema inside row kernels (@zmlx.map_reduce / @zmlx.reduce).

Every kernel is checked against its body applied row by row as MLX code (tests/rowcheck.check):
values, shape and dtype of every output, then mx.vjp with random cotangents for every float input.
Backends: "mlx" (the kernel as MLX ops, differentiated by MLX), "mlx:ir" (the generated derivative
programs as MLX ops) and "metal-sim" (the generated MSL, forward and backward, run on the CPU);
"cuda" too where MLX's CUDA backend is (the GPU machine).
Forward mode: mx.jvp against MLX's where MLX has one (cumsum, logcumsumexp), else the adjoint
identity <c, J t> = <J^T c, t> against MLX's VJP (MLX has no JVP of cumprod/cummax/cummin).

Covered: the five scans with reverse= and inclusive= on rows of 1 to 5000 (more than one element
per thread), float32/bfloat16/int32/bool rows (integer scans exact, wrapping as MLX's); sort,
argsort (ties in row order, NaN last, -0.0 == 0.0, as MLX), topk, partition/argpartition (as a
set), argmax/argmin (first index, NaN first, keepdims) as per-row outputs; the scatter back by a
sort's order (mx.put_along_axis, `y[order] = v`); the workloads the issue names (top-p and min-p
sampling filters, sparsemax, top-k routing of expert gates); the CUDA text type-checked; and the
refusals, with their exact text.
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from zmlx_dsl.errors import ZMLXError
from zmlx_dsl.testing import rowwise

from conftest import HAVE_METAL_SIM, assert_close, assert_cuda_type_checks, kernel_of, random_like
from rowcheck import check, ints, kernel, normal, rng_for

needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
SIM = pytest.param("metal-sim", marks=needs_sim)
CUDA = ["cuda"] if mx.cuda.is_available() else []  # on the GPU machine (tests/gpu's run)
BACKENDS = ["mlx", SIM] + CUDA
GRAD_BACKENDS = ["mlx", "mlx:ir", SIM] + CUDA

# A float32 scan adds in another order than MLX's sequential loop (per-thread runs, then a tree):
# the difference grows with the partial sums, as any two float orders differ.
SCAN_TOL = (1e-4, 1e-4)
SCAN_GRAD_TOL = (1e-4, 1e-3)


# ---- scans ----------------------------------------------------------------------------------------

def cumsum(x):
    return mx.cumsum(x)


def cumsum_reverse_exclusive(x):
    return mx.cumsum(x, reverse=True, inclusive=False)


def cumprod(x):
    return mx.cumprod(x, axis=-1)


def cumprod_reverse_exclusive(x):
    return mx.cumprod(x, reverse=True, inclusive=False)


def cummax(x):
    return mx.cummax(x)


def cummax_exclusive(x):
    return mx.cummax(x, inclusive=False)


def cummin_reverse(x):
    return mx.cummin(x, reverse=True)


def logcumsumexp(x):
    return mx.logcumsumexp(x, axis=-1)


def logcumsumexp_reverse_exclusive(x):
    return mx.logcumsumexp(x, reverse=True, inclusive=False)


SCAN_BODIES = [cumsum, cumsum_reverse_exclusive, cumprod, cumprod_reverse_exclusive, cummax, cummax_exclusive,
               cummin_reverse, logcumsumexp, logcumsumexp_reverse_exclusive]


def _scan_input(body, D: int, seed=0) -> mx.array:
    x = normal((3, D), rng_for(body.__name__, D, seed))
    if "cumprod" in body.__name__:  # products of a long row stay finite; zeros are the exact case
        x = mx.where(mx.abs(x) < 0.15, 0.0, 1.0 + 0.05 * x)
    if "cummax" in body.__name__ or "cummin" in body.__name__:
        x = mx.round(x * 2)  # ties: the cotangent goes to the first position holding the running extremum
    return x


@pytest.mark.parametrize("body", SCAN_BODIES, ids=lambda b: b.__name__)
@pytest.mark.parametrize("D", [1, 7, 300])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_scans(body, D, backend, eager_mlx):
    check(body, [_scan_input(body, D)], backend, tol=SCAN_TOL, tol_grad=SCAN_GRAD_TOL)


@pytest.mark.parametrize("body,D", [(b, D) for b in (cumsum, cumprod, cummax_exclusive, logcumsumexp_reverse_exclusive)
                                     for D in (33, 1024, 1400)] + [(cumsum, 5000)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("backend", BACKENDS)
def test_scans_of_long_rows(body, D, backend, eager_mlx):
    """Rows of more than one simdgroup, and of more elements than threads (a run per thread). (The
    backward kernels of cumprod, cummax and logcumsumexp hold up to five scans of the row in threadgroup
    memory: 5 x 1400 float32 is 27 KiB of Metal's 32.)"""
    check(body, [_scan_input(body, D, seed=1)], backend, tol=(1e-3, 1e-4), tol_grad=(1e-3, 1e-3))


def scans_bf16(x):
    return mx.cumsum(x) * 0.25 + mx.cummax(x, reverse=True) + mx.logcumsumexp(x)


def in_float32(body, args):
    """The body computed in float32 and rounded to its inputs' 16-bit type: a 16-bit kernel's
    reference (it computes in compute_dtype, float32, as MLX's mx.fast kernels do). MLX's own
    bfloat16 cumsum rounds every partial sum, drifting by a few bfloat16 steps over a row."""
    ref = rowwise(body, args)

    def call(*full):
        d = next(a.dtype for a in full if isinstance(a, mx.array))
        return ref(*[a.astype(mx.float32) if isinstance(a, mx.array) else a for a in full]).astype(d)
    return call


def scans_bf16_total(x):
    return mx.sum(mx.cumsum(x) * x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scans_bfloat16(backend):
    x = normal((4, 200), rng_for("bf16 scans"), mx.bfloat16)
    check(scans_bf16, [x], backend, reference=in_float32)
    check(scans_bf16_total, [x], backend, "reduce", reference=in_float32)


def cumsum_of_concatenation(x, y):
    return mx.cumsum(mx.concatenate([x, y])) * 2


def cumsum_read_reversed(x):
    return mx.cumsum(x)[::-1] + mx.cumsum(x, reverse=True)


@pytest.mark.parametrize("body,lengths,where", [
    (cumsum, (1000,), "in registers"),                       # the row in registers: its scan stays there
    (cumsum_reverse_exclusive, (1000,), "threadgroup"),      # a reverse scan: through threadgroup memory
    (cumsum_read_reversed, (999,), "threadgroup"),           # read at other positions
    (cumsum_of_concatenation, (300, 77), "threadgroup"),     # rows of two lengths: not in registers
], ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_in_registers_and_in_threadgroup_memory(body, lengths, where, backend):
    """Both forms of a scan, each checked where the generated Metal source shows it was chosen."""
    args = [normal((3, n), rng_for("paths", n, i)) for i, n in enumerate(lengths)]
    src = kernel(body, "mlx").source(*args, backend="metal")
    assert ("in registers: tile by tile" in src) == (where == "in registers"), src
    check(body, args, backend, tol=SCAN_TOL, tol_grad=SCAN_GRAD_TOL)


def int_scans(x):
    return mx.cumsum(x), mx.cumprod(x, reverse=True), mx.cummax(x, inclusive=False), mx.cummin(x)


@pytest.mark.parametrize("D", [5, 100, 2000])
@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_scans_are_exact(D, backend):
    """int32 scans exact and wrapping as MLX's (the sum of the row overflows int32)."""
    rng = rng_for("int scans", D)
    x = ints(rng.integers(-3, 4, (3, D)))
    x = mx.where(mx.arange(D) == D // 2, 2**31 - 5, x)  # a partial sum past int32's range
    got, want = kernel(int_scans, backend)(x), rowwise(int_scans, [x])(x)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == mx.int32
        assert np.array_equal(np.array(g), np.array(w))


def bool_scans(m):
    return mx.cumsum(m), mx.cumprod(m), mx.cummax(m, reverse=True), mx.cummin(m), mx.logcumsumexp(m)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_scans(backend):
    """MLX: a bool row's cumsum counts (int32), cumprod/cummax/cummin stay bool, logcumsumexp is float32."""
    m = mx.array(rng_for("bool scans").random((3, 70)) < 0.4)
    got, want = kernel(bool_scans, backend)(m), rowwise(bool_scans, [m])(m)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        assert_close(g, w, atol=1e-5, rtol=1e-5)


def logcumsumexp_of_infinities(x):
    return mx.logcumsumexp(x), mx.cummax(x), mx.cumsum(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scans_of_infinities_and_nan(backend):
    x = mx.array([[-np.inf, -np.inf, 1.0, np.inf, 2.0, -np.inf, np.nan, 3.0]], dtype=mx.float32)
    check(logcumsumexp_of_infinities, [x], backend, grads=False)


def cumsum_twice(x):
    return mx.cumsum(mx.cumsum(x) * x, reverse=True)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_grad_of_grad_of_cumsum(backend):
    x = normal((2, 37), rng_for("cumsum twice"))
    k = kernel(cumsum_twice, backend)
    c = random_like(x, rng_for("cumsum twice c"))

    def grad_of(f):
        return lambda a: mx.vjp(lambda y: [f(y)], [a], [c])[1][0]
    ref = rowwise(cumsum_twice, [x])
    got, want = mx.grad(lambda a: (grad_of(k)(a) * c).sum())(x), mx.grad(lambda a: (grad_of(ref)(a) * c).sum())(x)
    assert_close(got, want, atol=1e-4, rtol=1e-4)


def mlx_has_jvp(body) -> bool:
    return "cumsum" in body.__name__ or "logcumsumexp" in body.__name__


@pytest.mark.parametrize("body", SCAN_BODIES, ids=lambda b: b.__name__)
@pytest.mark.parametrize("backend", ["mlx:ir", SIM])
def test_scan_forward_mode(body, backend):
    """mx.jvp through the kernel: against MLX's JVP where it has one, else the adjoint identity."""
    x = _scan_input(body, 45)
    rng = rng_for(body.__name__, "jvp")
    t = random_like(x, rng)
    k, ref = kernel(body, backend), rowwise(body, [x])
    if backend == "mlx:ir" and not mlx_has_jvp(body):
        # MLX 0.32.4's mx.jvp traces into an mx.custom_function's body (it then fails on cumprod's
        # missing JVP) before calling the custom JVP; the generated forward-mode program, called
        # directly, is what the custom JVP would run
        jk = k.compiled_for((x,), {}, "mlx")._jvp([x], [t])[0]
    else:
        _, (jk,) = mx.jvp(k, [x], [t])
    if mlx_has_jvp(body):
        _, (jr,) = mx.jvp(ref, [x], [t])
        assert_close(jk, jr, atol=1e-4, rtol=1e-4)
        return
    for _ in range(3):
        c = random_like(x, rng)
        _, (vr,) = mx.vjp(ref, [x], [c])
        lhs, rhs = (c * jk).sum().item(), (vr * t).sum().item()
        assert abs(lhs - rhs) <= 1e-4 * (1 + abs(rhs)), (lhs, rhs)


# ---- sorts ----------------------------------------------------------------------------------------

def sort(x):
    return mx.sort(x)


def argsort(x):
    return mx.argsort(x)


def sort_scaled(x, w):
    return mx.sort(x * w) * w


def sorted_descending(x):
    return mx.sort(x)[::-1]


def _ties(shape, seed) -> mx.array:
    return mx.round(normal(shape, rng_for("ties", shape, seed)) * 2)


@pytest.mark.parametrize("D", [1, 2, 7, 33, 1000, 4096])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sort_and_argsort_with_ties(D, backend, eager_mlx):
    """Stable as MLX's: tied values keep their row order (the positions compared exactly)."""
    x = _ties((2, D), 0)
    order = kernel(argsort, backend)(x)
    want = rowwise(argsort, [x])(x)
    assert order.dtype == want.dtype == mx.uint32 and order.shape == want.shape
    assert np.array_equal(np.array(order), np.array(want))
    check(sort, [x], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sort_nan_last_and_signed_zeros(backend):
    x = mx.array([[np.nan, 1.0, -0.0, 0.0, -np.inf, np.nan, np.inf, -1.0, 0.0],
                  [0.0, -0.0, np.nan, 2.0, 2.0, -5.0, np.nan, np.nan, 1.0]], dtype=mx.float32)
    order, want = kernel(argsort, backend)(x), rowwise(argsort, [x])(x)
    assert np.array_equal(np.array(order), np.array(want))
    check(sort, [x], backend, grads=False)


@pytest.mark.parametrize("dtype", [mx.int32, mx.bfloat16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sort_of_other_dtypes(dtype, backend):
    rng = rng_for("sort dtypes", str(dtype))
    x = mx.array(rng.integers(-20, 20, (3, 300)).astype(np.float32)).astype(dtype)
    assert np.array_equal(np.array(kernel(argsort, backend)(x)), np.array(rowwise(argsort, [x])(x)))
    check(sort, [x], backend, grads=False)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_sort_gradients(backend):
    """A sort's adjoint scatters the cotangent back through its order (of the product, here)."""
    x, w = normal((3, 50), rng_for("sort grads")), normal((50,), rng_for("sort grads w"))
    check(sort_scaled, [x, w], backend)
    check(sorted_descending, [x], backend)


def topk(x):
    return mx.topk(x, 5)


def topk_sorted(x):
    return mx.sort(mx.topk(x, 5))


def partition_sorted(x):
    return mx.sort(mx.partition(x, 3))


def argpartition_sorted(x):
    return mx.sort(mx.argpartition(x, kth=-2))


@pytest.mark.parametrize("D", [5, 40, 2000])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_topk_and_partition(D, backend):
    """topk/partition equal MLX's as sets (MLX leaves their order unspecified); the kernel returns the k
    largest ascending, as MLX's GPU kernels (which sort)."""
    x = normal((3, D), rng_for("topk", D))
    check(topk_sorted, [x], backend)
    check(partition_sorted, [x], backend)
    check(argpartition_sorted, [x], backend, grads=False)
    got = kernel(topk, backend)(x)
    assert np.array_equal(np.array(got), np.sort(np.array(x), axis=-1)[:, -5:])


def argmax(x):
    return mx.argmax(x)


def argmin_keepdims(x):
    return mx.argmin(x, axis=-1, keepdims=True)


def greedy_with_logprob(logits):
    return mx.argmax(logits), mx.max(logits) - mx.logsumexp(logits)


@pytest.mark.parametrize("kind", ["map_reduce", "reduce"])
@pytest.mark.parametrize("D", [1, 9, 1000])
@pytest.mark.parametrize("backend", BACKENDS)
def test_arg_extrema(kind, D, backend, eager_mlx):
    """The first index of the extremum (ties), of the first NaN where there is one; uint32."""
    x = _ties((4, D), 1)
    if D > 1:
        x = mx.where((mx.arange(4)[:, None] == 2) & (mx.arange(D) == D // 3), np.nan, x)  # a NaN in row 2
    for body in (argmax, argmin_keepdims):
        got, want = kernel(body, backend, kind)(x), rowwise(body, [x])(x)
        assert got.dtype == want.dtype == mx.uint32 and got.shape == want.shape, (got.shape, want.shape)
        assert np.array_equal(np.array(got), np.array(want))
    check(greedy_with_logprob, [normal((4, D), rng_for("greedy", D))], backend, kind, grads=False)


# ---- the scatter back by a sort's order ---------------------------------------------------------

def put_back(x):
    order = mx.stop_gradient(mx.argsort(x))
    return mx.put_along_axis(x * 0, order, mx.cumsum(mx.sort(x)), axis=-1)


def assign_back(x):
    order = mx.argsort(x)
    y = mx.zeros(x.shape)
    y[order] = mx.cumsum(x[order])
    return y


def rank(x):
    return mx.argsort(mx.argsort(x))


@pytest.mark.parametrize("D", [1, 8, 129])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_scatter_back_by_order(D, backend):
    x = normal((3, D), rng_for("scatter back", D))
    check(put_back, [x], backend, tol=SCAN_TOL, tol_grad=SCAN_GRAD_TOL)
    check(rank, [x], backend, grads=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slice_assignment_by_order(backend):
    """`y[order] = v` on a local row is put_along_axis (MLX's vmap of it is wrong: compared with a loop)."""
    x = normal((3, 20), rng_for("assign back"))
    want = mx.stack([assign_back(r) for r in x])
    assert_close(kernel(assign_back, backend)(x), want, atol=1e-5, rtol=1e-5)


def put_strided(x, y):
    """Every other position of the order, and every third from the back: the inverse permutation's
    position divided by the step where it divides."""
    order = mx.stop_gradient(mx.argsort(x))
    t = x * 2.0
    t[order[x.shape[-1] - 1:0:-3]] = y[:(x.shape[-1] + 1) // 3]
    return mx.put_along_axis(mx.zeros_like(x), order[::2], y[:(x.shape[-1] + 1) // 2], axis=-1) + t


@pytest.mark.parametrize("D", [2, 9, 130])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_scatter_at_a_strided_slice_of_an_order(D, backend):
    rng = rng_for("strided scatter", D)
    check(put_strided, [normal((3, D), rng), normal((3, D), rng)], backend)


# ---- workloads ------------------------------------------------------------------------------------

def top_p_filter(logits, top_p):
    """mlx-lm's apply_top_p, for one row: keep the smallest set of tokens whose probability exceeds top_p."""
    probs = mx.softmax(logits)
    order = mx.stop_gradient(mx.argsort(logits))
    sorted_probs = probs[order]
    cumulative = mx.cumsum(sorted_probs)
    kept = mx.where(cumulative > 1 - top_p, logits[order], -float("inf"))
    return mx.put_along_axis(mx.zeros(logits.shape), order, kept, axis=-1)


def min_p_filter(logits, min_p):
    """mlx-lm's apply_min_p, for one row: drop tokens below min_p times the top probability."""
    logprobs = logits - mx.logsumexp(logits)
    top = mx.max(logprobs)
    return mx.where(logprobs < top + mx.log(min_p), -float("inf"), logits)


def sparsemax(x):
    z = mx.sort(x)[::-1]
    k = mx.arange(1, x.shape[-1] + 1)
    support = 1 + k * z > mx.cumsum(z)
    tau = (mx.sum(mx.where(support, z, 0)) - 1) / mx.sum(support)
    return mx.maximum(x - tau, 0)


def moe_route(gates):
    """Top-2 routing of expert gates: the two experts and their normalised weights."""
    top = mx.stop_gradient(mx.argpartition(-gates, kth=1))[:2]
    scores = mx.softmax(gates[top], precise=True)
    return top, scores


@pytest.mark.parametrize("D", [7, 1000])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_sampling_filters(D, backend):
    x = normal((4, D), rng_for("top p", D)) * 3
    check(top_p_filter, [x, 0.9], backend, tol=SCAN_TOL, tol_grad=SCAN_GRAD_TOL)
    check(min_p_filter, [x, 0.05], backend)


@pytest.mark.parametrize("D", [2, 10, 1024])
@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_sparsemax(D, backend):
    check(sparsemax, [normal((5, D), rng_for("sparsemax", D))], backend, tol=SCAN_TOL, tol_grad=SCAN_GRAD_TOL)


@pytest.mark.parametrize("backend", GRAD_BACKENDS)
def test_moe_routing(backend):
    check(moe_route, [normal((6, 8), rng_for("moe"))], backend)


# ---- the CUDA text --------------------------------------------------------------------------------

CUDA_CASES = [(cumsum, mx.float32, 300), (cumprod_reverse_exclusive, mx.bfloat16, 2000), (int_scans, mx.int32, 100),
              (sort, mx.float32, 4096), (argsort, mx.int32, 33), (top_p_filter, mx.bfloat16, 1000),
              (sparsemax, mx.float32, 1024), (rank, mx.float32, 64), (argmax, mx.float16, 100),
              (put_strided, mx.float32, 130)]


@pytest.mark.parametrize("body,dtype,D", CUDA_CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_cuda_source_type_checks(body, dtype, D, tmp_path):
    x = normal((4, D), rng_for("cuda", D), dtype) if dtype != mx.int32 else ints(np.arange(4 * D).reshape(4, D) % 7)
    args = [x, 0.9] if body is top_p_filter else [x, x * 0.5] if body is put_strided else [x]
    k = kernel(body, "mlx")
    assert_cuda_type_checks(body.__name__, k.source(*args, backend="cuda"), tmp_path)
    grads = [a for a in args if isinstance(a, mx.array) and a.dtype in (mx.float32, mx.bfloat16)]
    if grads and body not in (argsort, rank, argmax):
        assert_cuda_type_checks(f"{body.__name__} backward", k.grad_source(*args, backend="cuda"), tmp_path, "bwd")


# ---- refusals -------------------------------------------------------------------------------------

def scan_other_axis(x):
    return mx.cumsum(x, axis=1)


def topk_too_many(x):
    return mx.topk(x, 9)


def partition_out_of_range(x):
    return mx.partition(x, 8)


def put_at_any_positions(x, idx):
    return mx.put_along_axis(x, idx, x * 2, axis=-1)


def cumsum_elementwise(x):
    return mx.cumsum(x)


def sort_in_branch(x):
    if x.sum() > 0:
        y = mx.sort(x)
    else:
        y = x
    return y


def _message(fn, *args, kind="map_reduce", backend="mlx", source=None) -> str:
    k = kernel_of(fn, backend, kind)
    with pytest.raises(ZMLXError) as e:
        k.source(*args, backend=source) if source else mx.eval(k(*args))
    return str(e.value)


def test_refusals():
    x = normal((2, 8), rng_for("refusals"))
    assert ("cumsum(axis=1): the body is MLX code for one row (1-D), where only axis -1 (or 0, or None) exists; "
            "write axis=-1, and choose the axis of the inputs that rows run along with the decorator's axis= "
            "(e.g. @zmlx.map_reduce(axis=1))") in _message(scan_other_axis, x)
    assert ("topk(): k=9 is out of range for a row of length 8 (1 … 8); a kernel's row length is the input's "
            "last axis (or the decorator's axis=)") in _message(topk_too_many, x)
    assert "partition(): kth=8 is out of range for a row of length 8 (-8 … 7)" in _message(partition_out_of_range, x)
    assert ("a row is written at an index row only where its positions are known to be distinct: the order of "
            "a sort of a row of the same length (mx.argsort, mx.argpartition, or a slice of it); at one position, "
            "write mx.where(mx.arange(n) == pos, value, y)") in _message(put_at_any_positions, x, ints([[0] * 8] * 2))
    assert ("cumsum() is only allowed in row kernels (@zmlx.reduce / @zmlx.map_reduce); an elementwise body "
            "sees one element") in _message(cumsum_elementwise, x, kind="elementwise")
    assert ("sort() inside a data-dependent branch is not supported; compute it before the 'if' and select "
            "afterwards") in _message(sort_in_branch, x)


def test_refusal_locations():
    """Each refusal names the file, line and column of the call, the line, and a caret under it."""
    text = _message(topk_too_many, normal((2, 8), rng_for("loc")))
    line = next(i for i, s in enumerate(open(__file__).read().splitlines(), 1) if "return mx.topk(x, 9)" in s)
    assert f"test_scans.py:{line}:12:" in text
    assert "    return mx.topk(x, 9)\n" + " " * 15 + "^" in text


def test_threadgroup_memory_limit():
    x = normal((2, 8192), rng_for("limit"))
    text = _message(sort, x, source="metal")
    assert text.endswith("the scans and sorts of rows of 8192 need 48 KiB of threadgroup memory, more than the 32 KiB "
                         "of the metal backend (each scan or sort holds its row there); use shorter rows, fewer scans "
                         "or sorts per kernel, or backend='mlx'")
    kernel(sort, "mlx").source(x, backend="cuda")  # 48 KiB: within CUDA's


def int64_cumsum(x):
    return mx.cumsum(x.astype(mx.int64))


def test_64_bit_scans_on_c_backends():
    x = ints(np.ones((2, 8)))
    assert ("cumsum of int64 rows is not supported on the metal backend (64-bit simdgroup exchanges); compute it "
            "in int32 (.astype(mx.int32)) or use backend='mlx'") in _message(int64_cumsum, x, source="metal")
    got = kernel(int64_cumsum, "mlx")(x)
    assert got.dtype == mx.int64 and np.array_equal(np.array(got), np.cumsum(np.ones((2, 8)), axis=-1))


def test_scan_flags_must_be_constants():
    def scan_flag(x, r):
        return mx.cumsum(x, reverse=r)
    x = normal((2, 8), rng_for("flags"))
    assert "cumsum(): reverse must be True or False (a constant)" in _message(scan_flag, x, mx.array(1.0))
