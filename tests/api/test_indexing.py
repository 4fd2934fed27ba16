"""Indexing inside row kernels (@zmlx.map_reduce / @zmlx.reduce).

A row body is MLX code for ONE row (1-D). Every kernel here is checked against the body itself
applied row by row (`zmlx_dsl.testing.rowwise`: inputs are rows on their last axis, broadcast over
the leading axes only, each keeping its own row length; an (R,) or 0-d array is one value per row):
values, shape and dtype of every output, and `mx.vjp` with random cotangents for every float input
(gradient shape and dtype included). Backends: "mlx" (the kernel is MLX ops, differentiated by
MLX) and "metal-sim" (the generated MSL and the generated backward kernels, run on the CPU).

Covered: static slices (negative bounds and steps, clamping, bounds from x.shape[-1]), x[int],
x[per-row int] (a label), x[int row] (a permutation gather: negative indices wrap, out-of-range
reads give 0), concatenate, split, stack (interleave and axis 0), roll, flip, pad, take,
take_along_axis, arange, one-hot where, slice assignment into a local row, outputs whose row
length differs from the input's; RoPE (half-split and interleaved), cross-entropy with labels,
GLU; forward mode, grad of grad, and the generated CUDA type-checked against a stub.

The sweeps over row lengths run without mx.compile (conftest's eager_mlx: on a cold cache the CPU
JIT compiles every new graph with the system compiler, ~1 s each); the workloads (RoPE,
cross-entropy, GLU, concatenate, slice assignment, ...) run compiled.
"""
from __future__ import annotations

from typing import Callable

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl.testing import rowwise

from conftest import HAVE_METAL_SIM, assert_close, assert_cuda_type_checks, random_like, restricted
from rowcheck import GradientMismatch, check, float_pos, ints, kernel, normal, rng_for

needs_sim = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
BACKENDS = ["mlx", pytest.param("metal-sim", marks=needs_sim)]
KINDS = ["map_reduce", "reduce"]

# The scatter loop (c_rows.scattered, the adjoint of a gather by an index row) once wrote
# `if (POS == i)` without brackets around a wrapped index `idx < 0 ? idx + D : idx`: negative
# indices are the regression case.
BACKENDS_NEG_SCATTER = ["mlx", pytest.param("metal-sim", marks=needs_sim)]


# ---- bodies ---------------------------------------------------------------------------------------


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[:h], x[h:]
    return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin])


def rope_interleaved(x, cos, sin):
    x1, x2 = x[0::2], x[1::2]
    return mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(-1)


def cross_entropy(logits, label):
    return mx.logsumexp(logits) - logits[label]


def glu(x):
    a, b = mx.split(x, 2)
    return a * mx.sigmoid(b)


def affine_params(x, w):
    return w[0] * x + w[1]


def gather(x, idx):
    return x[idx]


# ---- static slices --------------------------------------------------------------------------------


def slice_step(x):
    return x[1:7:2] * 2.0


def slice_negative(x):
    return x[-5:-1] + x[-4:]


def slice_negative_step(x):
    return x[::-3] * x[-1::-3]


def slice_clamped(x):
    return x[-1000:3] - x[2:1000][:3]


def slice_from_shape(x):
    n = x.shape[-1]
    return x[1:n - 1] * x[: n - 2] + x[2:n]


def slice_tuple(x):
    return x[1::2], x[-2:], x[::-1][1:4]


SLICES = [slice_step, slice_negative, slice_negative_step, slice_clamped, slice_from_shape, slice_tuple]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [8, 33, 130])
@pytest.mark.parametrize("body", SLICES, ids=lambda f: f.__name__)
def test_static_slices(body, D, backend, eager_mlx):
    check(body, [normal((2, 3, D), rng_for(body.__name__, D))], backend, seed=D)


# ---- x[int], x[label] -----------------------------------------------------------------------------


def const_index(x):
    return x * x[0] + x[-1] - x[3]


def const_index_scalar(x):
    return x[2] * x.sum() + x[-2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_index(backend):
    check(const_index, [normal((2, 3, 33), rng_for("const_index"))], backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_constant_index_one_value_per_row(kind, backend):
    check(const_index_scalar, [normal((3, 4, 8), rng_for("const_index_scalar"))], backend, kind)


def _labels(lead: tuple, V: int, rng: np.random.Generator) -> mx.array:
    lab = rng.integers(-V, V, size=lead)
    lab.flat[0] = -1  # a negative label (the row's last class) always present
    lab.flat[-1] = V - 1
    return ints(lab)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lead,V", [((6,), 33), ((2, 3), 130), ((2, 2, 2), 5)], ids=["6x33", "2x3x130", "2x2x2x5"])
def test_cross_entropy_label(lead, V, kind, backend):
    rng = rng_for("ce", lead, V)
    check(cross_entropy, [normal(lead + (V,), rng) * 3, _labels(lead, V, rng)], backend, kind)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_bfloat16(backend):
    rng = rng_for("ce bf16")
    check(cross_entropy, [normal((4, 64), rng, mx.bfloat16), _labels((4,), 64, rng)], backend, "reduce")


# ---- a small parameter vector ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [5, 64])
def test_parameter_vector(D, backend):
    rng = rng_for("affine_params", D)
    check(affine_params, [normal((2, 3, D), rng), normal((2,), rng)], backend)


def flip_scaled(x, s):
    return x[::-1] * s + x[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_dimensional_input(backend):
    """A 0-d array is one value per row (0-d in the body), differentiated as a sum over all rows."""
    rng = rng_for("flip_scaled")
    check(flip_scaled, [normal((2, 3, 33), rng), mx.array(1.5)], backend)


# ---- permutation gather x[idx] --------------------------------------------------------------------


def _index_rows(how: str, lead: tuple, D: int, rng: np.random.Generator) -> np.ndarray:
    """(lead, D) int indices into rows of D: a reversal (an affine map: its adjoint is a gather), a
    random permutation per row, repeated indices (not a permutation: the adjoint is a scatter-add),
    or repeated indices of both signs (negative ones wrap, as in MLX)."""
    if how == "reverse":
        idx = np.broadcast_to(np.arange(D)[::-1], lead + (D,))
    elif how == "permutation":
        idx = np.stack([rng.permutation(D) for _ in range(int(np.prod(lead)))]).reshape(lead + (D,))
    else:
        idx = rng.integers(-D if how == "negative" else 0, D, size=lead + (D,))
        idx[..., 1:3] = idx[..., :1]  # a position read three times
        if how == "negative":
            idx[..., 3] = -1
    return np.ascontiguousarray(idx)


def _gather_params() -> list:
    """(how, D, backend): the scatter bug shows where the wrapped position is rendered inline (rows
    shorter than 128; longer rows bind it to a temporary first, `if (sel_2 == i)`)."""
    out = []
    for how in ("reverse", "permutation", "repeated", "negative"):
        for D in (5, 8, 33, 64, 130):
            for b in (BACKENDS_NEG_SCATTER if how == "negative" and D < 128 else BACKENDS):
                name, marks = (b.values[0], b.marks) if hasattr(b, "values") else (b, ())
                out.append(pytest.param(how, D, name, marks=marks, id=f"{how}-{D}-{name}"))
    return out


@pytest.mark.parametrize("how,D,backend", _gather_params())
def test_gather(how, D, backend, eager_mlx):
    rng = rng_for("gather", how, D)
    lead = (2, 3)
    check(gather, [normal(lead + (D,), rng), ints(_index_rows(how, lead, D, rng))], backend, seed=(how, D))


def gather_scaled(x, idx, w):
    return x[idx] * w


@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_shared_weight(backend):
    rng = rng_for("gather_scaled")
    D = 33
    check(gather_scaled, [normal((4, D), rng), ints(_index_rows("permutation", (4,), D, rng)), normal((D,), rng)],
          backend)


def gather_other_length(x, idx):
    return x[idx] * 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_into_a_shorter_row(backend):
    """An index row of 5 into rows of 33: the output has the index row's length."""
    rng = rng_for("gather_shorter")
    check(gather_other_length, [normal((2, 3, 33), rng), ints(rng.integers(0, 33, size=(2, 3, 5)))], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_into_a_longer_row(backend):
    """An index row of 20 into rows of 6 (repeats necessarily)."""
    rng = rng_for("gather_longer")
    check(gather_other_length, [normal((3, 6), rng), ints(rng.integers(0, 6, size=(3, 20)))], backend)


@pytest.mark.parametrize("backend", BACKENDS_NEG_SCATTER)
def test_gather_out_of_range_reads_zero(backend):
    """Indices outside -D … D-1 read 0 (MLX leaves them undefined, so the reference is NumPy) and
    receive no gradient."""
    rng = rng_for("gather out of range")
    D = 8
    x = normal((3, D), rng)
    idx_np = rng.integers(-D, D, size=(3, D))
    idx_np[0, 1], idx_np[1, 4], idx_np[2, 0], idx_np[2, 7] = D, -D - 1, 1000, -1000
    k = kernel(gather, backend)
    got = k(x, ints(idx_np))
    xn = np.array(x)
    inside = (idx_np >= -D) & (idx_np < D)
    want = np.where(inside, np.take_along_axis(xn, np.where(inside, idx_np % D, 0), axis=-1), 0.0)
    assert got.dtype == mx.float32 and got.shape == (3, D)
    assert_close(got, mx.array(want.astype(np.float32)), atol=0, rtol=0)
    cot = normal((3, D), rng)
    _, (g,) = mx.vjp(lambda a: [k(a, ints(idx_np))], [x], [cot])
    want_g = np.zeros((3, D), np.float64)
    for r in range(3):
        np.add.at(want_g[r], idx_np[r][inside[r]] % D, np.array(cot)[r][inside[r]])
    try:
        assert_close(g, mx.array(want_g.astype(np.float32)), atol=1e-6, rtol=1e-6)
    except AssertionError as e:
        raise GradientMismatch(str(e)) from None


@pytest.mark.parametrize("backend", ["mlx:ir", pytest.param("metal-sim", marks=needs_sim)])
def test_scatter_of_a_negative_index_minimal(backend):
    """The minimal reproducer of the scatter loop's missing brackets: x[idx] with idx = [-1, 0, 1, 2] on rows of 4 (not an
    affine map, so its adjoint is a scatter-add). The gradient is the cotangent moved to idx:
    [10, 100, 1000, 1] (the C backends once gave [11, 101, 1001, 1]: cotangent[0] landed everywhere)."""
    name, _, autodiff = backend.partition(":")
    k = zmlx.map_reduce(gather, backend=name, **({"autodiff": autodiff} if autodiff else {}))
    idx = ints([[-1, 0, 1, 2]])
    cot = mx.array([[1.0, 10.0, 100.0, 1000.0]])
    _, (g,) = mx.vjp(lambda a: [k(a, idx)], [mx.zeros((1, 4))], [cot])
    if g.tolist() != [[10.0, 100.0, 1000.0, 1.0]]:
        raise GradientMismatch(f"gradient {g.tolist()}")


# ---- concatenate, split, stack ---------------------------------------------------------------------


def concat_two_inputs(x, y):
    return mx.concatenate([x * 2.0, y, x[:2]])


def split_equal(x):
    a, b, c = mx.split(x, 3)
    return a * b - c


def split_at(x):
    a, b = mx.split(x, [3])
    return a.sum() * b, a


def split_at_several(x):
    a, b, c = mx.split(x, [2, -3])
    return mx.concatenate([c, a]) * 2.0, b


def stack_axis0(x, y):
    return mx.stack([x, y * 3.0], axis=0).reshape(-1)


def stack_three(x):
    a, b, c = x[0::3], x[1::3], x[2::3]
    return mx.stack([c, a * b, b], axis=-1).reshape(-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concatenate(backend):
    rng = rng_for("concat_two_inputs")
    check(concat_two_inputs, [normal((2, 3, 5), rng), normal((2, 3, 8), rng)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [6, 33, 129])
def test_split_equal_parts(D, backend, eager_mlx):
    check(split_equal, [normal((2, 3, D), rng_for("split_equal", D))], backend, seed=D)


@pytest.mark.parametrize("backend", BACKENDS)
def test_split_at_index(backend):
    check(split_at, [normal((3, 4, 33), rng_for("split_at"))], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_split_at_indices(backend):
    check(split_at_several, [normal((2, 3, 8), rng_for("split_at_several"))], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stack_axis0(backend):
    rng = rng_for("stack_axis0")
    check(stack_axis0, [normal((2, 3, 8), rng), normal((2, 3, 8), rng)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stack_interleave_three(backend):
    check(stack_three, [normal((2, 3, 33), rng_for("stack_three"))], backend)


# ---- roll, flip, pad ------------------------------------------------------------------------------


def roll_2(x):
    return mx.roll(x, 2) * x


def roll_negative(x):
    return mx.roll(x, -3) - x


def roll_long(x):
    return mx.roll(x, 135, axis=-1) + 0.5 * mx.roll(x, 0)


def flip(x):
    return x[::-1] * x


def pad_zero(x):
    return mx.pad(x, (2, 3)) * 2.0


def pad_value(x):
    return mx.pad(x, (1, 4), constant_values=-1.5)


def pad_symmetric(x):
    return mx.pad(x, 3, constant_values=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [5, 8, 33, 64, 130])
@pytest.mark.parametrize("body", [roll_2, roll_negative, roll_long, flip], ids=lambda f: f.__name__)
def test_roll_and_flip(body, D, backend, eager_mlx):
    check(body, [normal((2, 3, D), rng_for(body.__name__, D))], backend, seed=D)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [5, 64])
@pytest.mark.parametrize("body", [pad_zero, pad_value, pad_symmetric], ids=lambda f: f.__name__)
def test_pad(body, D, backend, eager_mlx):
    check(body, [normal((2, 3, D), rng_for(body.__name__, D))], backend, seed=D)


def pad_mode_keyword(x):
    return mx.pad(x, (2, 1), mode="constant", constant_values=0.5)


def concatenate_positional_axis(x):
    return mx.concatenate([x, x * 2.0], 0)


def test_pad_mode_keyword():
    check(pad_mode_keyword, [normal((3, 8), rng_for("pad_mode_keyword"))], "mlx")


def test_concatenate_positional_axis():
    check(concatenate_positional_axis, [normal((3, 8), rng_for("concatenate_positional_axis"))], "mlx")


# ---- take, take_along_axis ------------------------------------------------------------------------


def take_row(x, idx):
    return mx.take(x, idx) * 2.0


def take_label(x, label):
    return mx.take(x, label) * x


def take_along(x, idx):
    return mx.take_along_axis(x, idx, axis=-1) + x


def take_along_label_sum(x, label):
    return mx.logsumexp(x) - mx.take_along_axis(x, label[None], axis=-1).sum()


def take_along_label(x, label):
    return mx.logsumexp(x) - mx.take_along_axis(x, label[None], axis=-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_take(backend):
    rng = rng_for("take")
    D = 33
    check(take_row, [normal((2, 3, D), rng), ints(_index_rows("repeated", (2, 3), D, rng))], backend)
    check(take_label, [normal((2, 3, D), rng), _labels((2, 3), D, rng)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_take_along_axis_label(kind, backend):
    rng = rng_for("take_along_label_sum")
    check(take_along_label_sum, [normal((2, 3, 64), rng), _labels((2, 3), 64, rng)], backend, kind)


@pytest.mark.parametrize("backend", BACKENDS)
def test_take_along_axis_rows(backend):
    rng = rng_for("take_along")
    check(take_along, [normal((4, 8), rng), ints(_index_rows("permutation", (4,), 8, rng))], backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_take_along_axis_label_keeps_its_axis(kind, backend):
    """In MLX, label[None] is a (1,) row and take_along_axis(x, label[None], axis=-1) a (1,) array:
    the body's output per row is (1,), so the kernel's is (R, 1)."""
    rng = rng_for("take_along_label")
    check(take_along_label, [normal((6, 8), rng), _labels((6,), 8, rng)], backend, kind)


# ---- arange, one-hot where -------------------------------------------------------------------------


def arange_weights(x):
    return x * mx.arange(x.shape[-1])


def arange_start_stop_step(x):
    n = x.shape[-1]
    return x * mx.arange(1, 2 * n, 2) + mx.arange(n - 1, -1, -1)


def arange_float(x):
    return x * mx.arange(0.5, x.shape[-1], 1.0) + mx.arange(x.shape[-1], dtype=mx.float32) * 0.25


def arange_even_positions(x):
    i = mx.arange(x.shape[-1])
    return mx.where(i % 2 == 0, x, -x)


def onehot_cross_entropy(logits, label):
    return mx.logsumexp(logits) - mx.where(mx.arange(logits.shape[-1]) == label, logits, 0.0).sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [5, 130])
@pytest.mark.parametrize("body", [arange_weights, arange_start_stop_step, arange_float, arange_even_positions],
                         ids=lambda f: f.__name__)
def test_arange(body, D, backend, eager_mlx):
    check(body, [normal((2, 3, D), rng_for(body.__name__, D))], backend, seed=D)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_onehot_where_label(kind, backend):
    rng = rng_for("onehot")
    check(onehot_cross_entropy, [normal((3, 4, 33), rng), ints(rng.integers(0, 33, size=(3, 4)))], backend, kind)


# ---- slice assignment ------------------------------------------------------------------------------


def assign_slices(x, z, v):
    y = x * 2.0
    y[:4] = z
    y[1::2] = 0.0
    y[-1] = v
    return y


def assign_negative_step(x, z):
    y = x + 1.0
    y[::-2] = z * 3.0
    y[2] = y[0] * y[1]
    return y


def assign_broadcast_value(x, v):
    y = mx.exp(x)
    y[2:6] = v
    y[-3:] = y[:3]
    return y / y.sum()


def assign_at_label(x, k, v):
    y = x * 3.0
    y[k] = v
    return y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [8, 33])
def test_slice_assignment(D, backend):
    rng = rng_for("assign_slices", D)
    check(assign_slices, [normal((2, 3, D), rng), normal((2, 3, 4), rng), normal((2, 3), rng)], backend, seed=D)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slice_assignment_negative_step(backend):
    rng = rng_for("assign_negative_step")
    check(assign_negative_step, [normal((3, 9), rng), normal((3, 5), rng)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_slice_assignment_broadcast_value(backend):
    rng = rng_for("assign_broadcast_value")
    check(assign_broadcast_value, [normal((2, 2, 64), rng), normal((2, 2), rng)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_assignment_at_a_label(backend):
    rng = rng_for("assign_at_label")
    check(assign_at_label, [normal((2, 3, 33), rng), _labels((2, 3), 33, rng), normal((2, 3), rng)], backend)


def assign_constant(x):
    y = x * 2.0
    y[1::2] = 0.0
    return y


def and_of_a_constant(x):
    return mx.where((x > 0) & (mx.arange(4) < 2), 1.0, x)


def test_rowwise_is_the_body_per_row():
    """testing.rowwise equals the body applied to each row (where MLX 0.32.4's mx.vmap is wrong:
    a slice assignment of an unbatched value updates row 0 only; `a & b` with b made in the body
    reads past b's buffer)."""
    x = mx.arange(12, dtype=mx.float32).reshape(3, 4) - 5.0
    assert rowwise(assign_constant, [x])(x).tolist() == \
        [[-10.0, 0.0, -6.0, 0.0], [-2.0, 0.0, 2.0, 0.0], [6.0, 0.0, 10.0, 0.0]]
    assert rowwise(and_of_a_constant, [x])(x).tolist() == \
        [[-5.0, -4.0, -3.0, -2.0], [-1.0, 0.0, 1.0, 2.0], [1.0, 1.0, 5.0, 6.0]]


# ---- outputs of another row length: GLU, RoPE -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("D", [8, 64, 130])
def test_glu(D, backend):
    check(glu, [normal((2, 3, D), rng_for("glu", D))], backend, seed=D)


@pytest.mark.parametrize("backend", BACKENDS)
def test_glu_bfloat16(backend):
    check(glu, [normal((3, 4, 66), rng_for("glu bf16"), mx.bfloat16)], backend)


def _rope_tables(S: int, half: int, dtype=mx.float32) -> tuple[mx.array, mx.array]:
    theta = 10000.0 ** (-np.arange(half) / half)
    angle = np.arange(S)[:, None] * theta[None, :]
    return (mx.array(np.cos(angle).astype(np.float32)).astype(dtype),
            mx.array(np.sin(angle).astype(np.float32)).astype(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("body", [rope, rope_interleaved], ids=lambda f: f.__name__)
def test_rope(body, backend):
    """x (2, 3, 4, 16), cos/sin (4, 8): the tables broadcast over the leading (2, 3)."""
    x = normal((2, 3, 4, 16), rng_for(body.__name__))
    cos, sin = _rope_tables(4, 8)
    check(body, [x, cos, sin], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rope_bfloat16_long_rows(backend):
    x = normal((2, 130), rng_for("rope bf16"), mx.bfloat16)
    cos, sin = _rope_tables(2, 65, mx.bfloat16)
    check(rope, [x, cos, sin], backend)


def several_lengths(x):
    return x[:3], mx.concatenate([x, x[::-1]]), x.max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_of_several_row_lengths(backend):
    check(several_lengths, [normal((2, 3, 33), rng_for("several_lengths"))], backend)


# ---- forward mode, grad of grad ---------------------------------------------------------------------


def check_jvp(body: Callable, args: list, backend: str, kind: str = "map_reduce") -> None:
    k = kernel(body, backend, kind)
    ref = rowwise(body, args)
    pos = float_pos(args)
    rng = rng_for(body.__name__, "tangent")
    tans = [random_like(args[i], rng) for i in pos]
    primals = [args[i] for i in pos]
    out_r, t_r = mx.jvp(restricted(ref, args, pos), primals, tans)
    out_k, t_k = mx.jvp(restricted(k, args, pos), primals, tans)
    mx.eval(t_k, t_r)
    for a, b in zip(out_k, out_r):
        assert_close(a, b, atol=1e-5, rtol=1e-5, what="primal: ")
    for j, (a, b) in enumerate(zip(t_k, t_r)):
        assert a.shape == b.shape, (a.shape, b.shape)
        assert_close(a, b, atol=1e-5, rtol=1e-4, what=f"{body.__name__} tangent {j}: ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_rope(backend):
    cos, sin = _rope_tables(4, 8)
    check_jvp(rope, [normal((2, 3, 4, 16), rng_for("jvp rope")), cos, sin], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_cross_entropy(backend):
    rng = rng_for("jvp ce")
    check_jvp(cross_entropy, [normal((2, 3, 33), rng), _labels((2, 3), 33, rng)], backend, "reduce")


def test_grad_of_grad_cross_entropy():
    """Second order through the generated derivatives on the portable backend (autodiff="ir")."""
    rng = rng_for("grad of grad")
    x, label = normal((2, 3, 33), rng), _labels((2, 3), 33, rng)
    c1, c2 = random_like(x[..., 0], rng), random_like(x, rng)
    k = zmlx.map_reduce(cross_entropy, backend="mlx", autodiff="ir")
    ref = rowwise(cross_entropy, [x, label])

    def outer(f):
        inner = mx.grad(lambda a: (f(a, label) * c1).sum())
        return mx.grad(lambda a: (inner(a) * c2).sum())
    assert_close(outer(k)(x), outer(ref)(x), atol=1e-5, rtol=1e-4)


# ---- the generated VJP of a re-assembled row ------------------------------------------------------


def concat_halves(x):
    return mx.concatenate([x[:2], x[2:]])


@pytest.mark.parametrize("backend", ["mlx:ir", pytest.param("metal-sim", marks=needs_sim)])
def test_generated_vjp_of_concatenate_is_the_cotangent(backend):
    """concatenate([x[:2], x[2:]]) is x: its VJP is the cotangent. (Before 8db23ec the generated one
    summed each part's adjoint over its row: [11, 11, 1100, 1100].)"""
    name, _, autodiff = backend.partition(":")
    k = zmlx.map_reduce(concat_halves, backend=name, **({"autodiff": autodiff} if autodiff else {}))
    cot = mx.array([[1.0, 10.0, 100.0, 1000.0]])
    _, (g,) = mx.vjp(lambda a: [k(a)], [mx.zeros((1, 4))], [cot])
    assert g.tolist() == cot.tolist()


# ---- the generated CUDA type-checks -----------------------------------------------------------------


def _cuda_cases() -> list:
    rng = rng_for("cuda")
    cos, sin = _rope_tables(4, 8)
    x16 = normal((2, 3, 4, 16), rng)
    return [
        ("rope", "map_reduce", rope, [x16, cos, sin]),
        ("rope_interleaved", "map_reduce", rope_interleaved, [x16, cos, sin]),
        ("cross_entropy", "reduce", cross_entropy, [normal((6, 130), rng), _labels((6,), 130, rng)]),
        ("glu", "map_reduce", glu, [normal((4, 130), rng)]),
        ("gather", "map_reduce", gather, [normal((4, 33), rng), ints(_index_rows("negative", (4,), 33, rng))]),
        ("pad", "map_reduce", pad_value, [normal((4, 64), rng)]),
        ("roll", "map_reduce", roll_negative, [normal((4, 33), rng)]),
        ("slice_assign", "map_reduce", assign_slices, [normal((3, 33), rng), normal((3, 4), rng), normal((3,), rng)]),
    ]


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="needs clang++-19 or the `ziglang` package")
@pytest.mark.parametrize("case", range(len(_cuda_cases())), ids=[c[0] for c in _cuda_cases()])
def test_cuda_type_checks(case, tmp_path):
    name, kind, body, args = _cuda_cases()[case]
    k = getattr(zmlx, kind)(body, backend="mlx")  # grad_source runs the forward here; the text is CUDA's
    assert_cuda_type_checks(name, k.source(*args, backend="cuda"), tmp_path, "forward")
    assert_cuda_type_checks(f"{name} backward", k.grad_source(*args, backend="cuda"), tmp_path, "backward")


def label_ce(logits, label):
    return mx.logsumexp(logits) - logits[label]


def test_ambiguous_integer_row_asks_which_it_is():
    """An integer (R,) beside (R, R) rows could be one value per row or a shared row: the call says
    how to pass either (a float one stays a shared row, as before)."""
    k = zmlx.reduce(label_ce, backend="mlx")
    with pytest.raises(zmlx.ZMLXShapeError) as ei:
        k(mx.zeros((5, 5)), mx.array([0, 1, 2, 3, 4]))
    assert str(ei.value) == ("label_ce: an integer array of shape (5,) beside rows of shape (5, 5) is either one "
                             "value per row or one row shared by all; say which: pass it as (5, 1) for one value "
                             "per row, or as (1, 5) for a shared row")
    got = k(mx.zeros((5, 5)), mx.array([[0], [1], [2], [3], [4]]))
    assert got.shape == (5, 1)  # the label is a row of one in the body: the result is (1,), as MLX's
