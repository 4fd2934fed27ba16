"""Launch plans: how each input is read, the vector width, threads, registers and the grid of a C
kernel, decided once per shape signature. The renderer writes the kernel a plan describes and
the launcher launches it with the plan's grid; neither decides these again."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import mlx.core as mx

from ..ir.node import toposort
from ..ir.registry import OPS
from ..ir.rows import online_sums, pass_levels, per_row, tie_operands
from ..ir.program import Program
from .metal_source import MAX_CONSTANT_ARRAY_SIZE

# Elementwise launch: threads per group, bytes per array access (vector width), and vectors per
# thread (block-cyclic: vector c of a thread is THREADS vectors after vector c - 1).
THREADS = 256
VECTOR_BYTES = 16
ELEMENTWISE_VECTORS = 2
# The most threads one launch may have: MLX's grid is a signed 32-bit int (Metal) and CUDA's
# block count comes from it. Larger launches loop over their work (Plan.grid_stride).
MAX_GRID_THREADS = 2**31 - 1
# Arrays of at least this many elements index in 64 bits (size_t) instead of 32.
WIDE_INDEX_ELEMENTS = 2**31
# Row kernels: a row is held in registers when each thread needs at most this many elements.
MAX_REGISTER_ELEMENTS = 32
# Row kernels read in one pass: held in registers only up to this many elements a thread.
ONE_PASS_REGISTER_ELEMENTS = 16
# Row kernels summing outputs over the rows (a weight's gradient): at most this many groups, each
# accumulating at least ROW_SUM_MIN_ROWS rows in registers before writing its partial sums (the
# partials are then ROW_SUM_GROUPS x D, not rows x D). Two per SM of an H100/H200 (132 SMs): these
# kernels fit 2-3 groups an SM, and a grid past the resident groups runs a second, partial wave
# (benchmarks/variants.py on an H200: rmsnorm/layernorm backward at D=4096 fastest at 264 groups
# in float32 and for layernorm in bfloat16, 229-279 us against 240-309 at 512).
ROW_SUM_GROUPS = 264
ROW_SUM_MIN_ROWS = 4


@dataclass(frozen=True)
class Plan:
    """Launch-time facts a kernel is specialised for (part of its cache key)."""

    modes: tuple[str, ...]            # per program input, how it is read:
    #   elementwise: full (the output's shape) / suffix (trailing dims, x[i % m]) /
    #                prefix (leading dims, x[i / (n / m)]) / scalar (x[0])
    #   rows:        full / shared (one row for all) / per_row / scalar
    wide_index: bool                  # 64-bit indexing (an array has >= 2**31 elements)
    rowsize: int = 0                  # row kernels: the row length D
    rows_per_group: int = 1           # row kernels of one simdgroup per row: rows sharing a threadgroup
    grid_stride: bool = False         # more groups than one grid launches: each loops over its share
    in_constant: tuple[bool, ...] = ()  # per input: MLX passes it in Metal's constant space (< 8 elements)
    vec: int = 1                      # elements per vector access
    threads: int = THREADS            # threads per row (rows) or per group (elementwise)
    cached: bool = False              # rows: the row is held in registers across passes
    vectors: int = 1                  # elementwise: vectors per thread (block-cyclic)
    lengths: tuple[int, ...] = ()     # rows: each input's row length (its own last axis)
    row_index: tuple[tuple[int, int], ...] = ()  # rows: per input, its row of grid row r, see row_index
    row_sums: tuple[int, ...] = ()    # rows: outputs summed over the rows (partial sums per group)
    as_ops: bool = False              # rows: no faithful kernel for this launch, run as MLX ops (see row_plan)
    # threadgroups launched: a launch size, not what the kernel is specialised for, so not part
    # of its cache key (a new row count must not render and build the kernel again)
    groups: int = field(default=1, compare=False)

    @property
    def group_threads(self) -> int:
        return self.threads * self.rows_per_group

    @property
    def grid(self) -> tuple[int, int, int]:
        """The launch grid in threads (MLX's convention on both backends)."""
        return (self.groups * self.group_threads, 1, 1)


def grid_groups(groups: int, group_threads: int) -> int:
    """How many groups of `group_threads` to launch for `groups` of work: all of them, or as many
    as one grid holds (MAX_GRID_THREADS), each then looping over its share."""
    return min(groups, max(1, MAX_GRID_THREADS // group_threads))


def _launch(plan: Plan, groups: int) -> Plan:
    """plan with its grid: every group of work launched, or a grid-stride loop past the limit."""
    launched = grid_groups(groups, plan.group_threads)
    return replace(plan, groups=launched, grid_stride=launched < groups)


# ---- elementwise -------------------------------------------------------------------------------

def elementwise_mode(x: mx.array, shape: tuple) -> str:
    """How an elementwise kernel reads input x broadcast to `shape` (see Plan.modes)."""
    if x.size == 1:
        return "scalar"
    if x.shape == shape:
        return "full"
    dims = list(x.shape)
    while dims and dims[0] == 1:
        dims.pop(0)
    if tuple(dims) == shape[len(shape) - len(dims):]:
        return "suffix"
    padded = (1,) * (len(shape) - x.ndim) + tuple(x.shape)
    k = len(padded)
    while k and padded[k - 1] == 1:
        k -= 1
    return "prefix" if padded[:k] == shape[:k] else "full"


def elementwise_modes(inputs: Sequence[mx.array], shape: tuple) -> list[str]:
    """How an elementwise launch over `shape` reads each input: broadcasts along leading or
    trailing dims are read in place, other broadcasts through stride-0 views; one array, at
    least, carries the full shape."""
    modes = [elementwise_mode(x, shape) for x in inputs]
    if "full" not in modes:
        modes[next((i for i, m in enumerate(modes) if m != "scalar"), 0)] = "full"
    return modes


def elementwise_view(x: mx.array, mode: str, shape: tuple) -> mx.array:
    """The array an elementwise launch passes for input x read in `mode`."""
    if mode == "scalar" or (mode == "full" and not shape):
        return x.reshape((1,))
    if mode == "full" and x.shape != shape:
        return mx.broadcast_to(x, shape)
    return x


def elementwise_plan(p: Program, inputs: Sequence[mx.array], shape: tuple) -> tuple[list[mx.array], Plan]:
    """The input views and the plan of an elementwise launch of p over `shape`: each thread moves
    ELEMENTWISE_VECTORS vectors of 16 bytes of the widest full array or output."""
    modes = elementwise_modes(inputs, shape)
    views = [elementwise_view(x, m, shape) for x, m in zip(inputs, modes)]
    widest = max([x.dtype.itemsize for x, m in zip(p.inputs, modes) if m == "full"]
                 + [o.dtype.itemsize for o in p.outputs])
    plan = Plan(tuple(modes), math.prod(shape) >= WIDE_INDEX_ELEMENTS, vec=max(1, VECTOR_BYTES // widest),
                threads=THREADS, vectors=ELEMENTWISE_VECTORS,
                in_constant=tuple(x.size < MAX_CONSTANT_ARRAY_SIZE for x in views))
    return views, _launch(plan, -(-math.prod(shape) // (plan.vec * plan.vectors * plan.threads)))


# ---- rows ----------------------------------------------------------------------------------------

def row_mode(x: mx.array, lead: tuple, length: int) -> str:
    """How a row kernel reads an input whose rows have `length` elements, broadcast over the row
    grid `lead`, without materialising the broadcast: full rows (one per row of the grid, or one
    per row of a trailing or leading part of it: see row_index), one row shared by all (a (D,)
    weight), one value per row ((B, 1)), or one scalar."""
    if x.size == 1:
        return "scalar"
    if length == 1:
        return "per_row"
    if x.shape[-1] == length and x.size == length:
        return "shared"
    return "full"


def row_index(x: mx.array, lead: tuple) -> tuple[int, int]:
    """(div, mod): input x's row for grid row r is (r / div) % mod (mod 0: no modulo). An input
    whose leading axes are a trailing part of the grid's (rope's (S, D/2) tables beside (B, H, S, D)
    rows) repeats every `mod` rows; a leading part, each row `div` times. Anything else is
    broadcast in memory first (div 1, mod 0, of the broadcast view)."""
    own = (1,) * (len(lead) - (x.ndim - 1)) + tuple(x.shape[:-1]) if x.ndim - 1 <= len(lead) else None
    if own is None or own == lead:
        return 1, 0
    k = next((i for i, n in enumerate(own) if n != 1), len(own))
    if own[k:] == lead[k:]:
        return 1, math.prod(lead[k:])
    j = max((i + 1 for i, n in enumerate(own) if n != 1), default=0)
    if own[:j] == lead[:j]:
        return math.prod(lead[j:]), 0
    return 1, 0


def row_view(x: mx.array, mode: str, lead: tuple, length: int, index: tuple[int, int] = (1, 0)) -> mx.array:
    """The array a row launch passes for input x read in `mode` at rows `index` (see row_index)."""
    if mode == "scalar":
        return x.reshape((1,))
    if mode == "shared":
        return x.reshape((length,))
    rows = math.prod(lead) // index[0] if index[1] == 0 else index[1]
    if index != (1, 0):
        return x.reshape((rows, length) if mode == "full" else (rows,))
    grid = lead + (length,)
    full = x if x.shape == grid else mx.broadcast_to(x, grid)
    return full if mode == "full" else full.reshape((rows,))


def row_extents(p: Program, lengths: Sequence[int]) -> list[int]:
    """The row lengths a row kernel loops over: its per-element outputs', reductions' operands' and
    scans' and sorts' operands' (each filled in a pass of its own)."""
    length = p.row_lengths(default=max(lengths, default=1)) if p.lengths else None
    rows = per_row(p.outputs)
    D = max(lengths, default=1)
    targets = [o for o in p.outputs if not rows[o]]
    targets += [n.args[0] for n in toposort(p.outputs)
                if n.op in OPS and (OPS[n.op].reduction and n.op != "fold" or OPS[n.op].whole_row)]
    return sorted({length[t] if length else D for t in targets} | ({D} if not length else set()))


def row_vector(p: Program, modes: Sequence[str], lengths: Sequence[int], extents: Sequence[int]) -> int:
    """Elements per row access: 16 bytes of the widest per-element array when every row allows."""
    rows = per_row(p.outputs)
    arrays = [x for x, m in zip(p.inputs, modes) if m in ("full", "shared")]
    arrays += [o for o in p.outputs if not rows[o]]
    vec = max(1, VECTOR_BYTES // max([a.dtype.itemsize for a in arrays] + [1]))
    sizes = list(extents) + [n for n, m in zip(lengths, modes) if m in ("full", "shared")]
    return vec if all(n % vec == 0 for n in sizes) else 1


def row_threads(rowsize: int, vec: int) -> int:
    """Threads per row: about two vectors each, a power of two between 32 and 1024."""
    want = max(1, -(-rowsize // (2 * vec)))
    return min(1024, max(32, 1 << (want - 1).bit_length()))


def one_pass(p: Program, D: int) -> bool:
    """Whether a row program reads its row in one pass: only per-row outputs, no scan or sort, and
    its reductions in one pass (logsumexp's sum in its max's pass, see ir.rows.online_sums)."""
    rows = per_row(p.outputs)
    order = toposort(p.outputs)
    if not all(rows[o] for o in p.outputs) or any(n.op in OPS and OPS[n.op].whole_row for n in order):
        return False
    reductions = [n for n in order if n.op in OPS and OPS[n.op].reduction]
    level = pass_levels(p.outputs, set(reductions), online_sums(reductions, p.row_lengths(default=D)))
    return max((level[r] for r in reductions), default=0) <= 1


def row_plan(p: Program, inputs: Sequence[mx.array], lead: tuple, lengths: Sequence[int],
             register_budget: Callable[[int], int]) -> tuple[list[mx.array], Plan]:
    """The input views and the plan of a row launch of p over the row grid `lead`, the inputs'
    rows of `lengths`: threads and vector width per row, whether the row stays in registers (one
    row length throughout, at most MAX_REGISTER_ELEMENTS per thread and the backend's
    `register_budget(itemsize)` per group), and for rows of one simdgroup, up to 8 rows (a divisor
    of the row count) per group (for rows without reductions, as many threads as the row has
    vectors, and up to 256 threads' worth of rows per group)."""
    modes = tuple(row_mode(x, lead, n) for x, n in zip(inputs, lengths))
    index = [row_index(x, lead) if m in ("full", "per_row") else (1, 0) for x, m in zip(inputs, modes)]
    rowed = [i for i, m in enumerate(modes) if m in ("full", "per_row")]
    if rowed and all(index[i] != (1, 0) for i in rowed):  # one input spans the grid (its shape counts the rows)
        index[rowed[0]] = (1, 0)
    index = tuple(index)
    views = [row_view(x, m, lead, n, i) for x, m, n, i in zip(inputs, modes, lengths, index)]
    extents = row_extents(p, lengths)
    D, nrows = max(extents + list(lengths)), math.prod(lead)
    vec = row_vector(p, modes, lengths, extents)
    threads = row_threads(D, vec)
    ops = [OPS[n.op] for n in toposort(p.outputs) if n.op in OPS]
    whole = any(op.whole_row for op in ops)  # scans and sorts: one row per group, whole simdgroups
    if threads == 32 and not any(op.reduction or op.whole_row for op in ops):
        threads = 1 << max(0, (D // vec - 1).bit_length())  # no reductions: as many threads as vectors
    used = set(toposort(p.outputs))  # an unused input (it may only fix the row shape) is not read
    full = [x for x, m in zip(p.inputs, modes) if m == "full" and x in used]
    one_length = set(extents) == {D} and all(n == D for x, n, m in zip(p.inputs, lengths, modes) if m == "full")
    per_thread = -(-(D // vec) // threads) * vec
    budget = register_budget(max([x.dtype.itemsize for x in full], default=4))
    if whole and all(x.dtype.itemsize >= 4 for x in full):
        # a scan of a row in registers stays there (else it takes a row of threadgroup memory); not
        # for 16-bit rows past the budget: 1024 threads x 32 elements of a bfloat16 row and their
        # float32 scan need more registers than a CUDA launch of 1024 threads has (measured, H200)
        budget = max(budget, MAX_REGISTER_ELEMENTS * threads)
    cached = one_length and 0 < per_thread * max(1, len(full)) <= min(MAX_REGISTER_ELEMENTS, budget // threads)
    if cached and per_thread * max(1, len(full)) > ONE_PASS_REGISTER_ELEMENTS and one_pass(p, D):
        cached = False  # registers would save no re-read, and cost occupancy (logsumexp f32 of 32768: 50%)
    # a tie test (max/min's derivative) compares a value with its row's extremum in a later pass:
    # only a row held in registers computes the value once; else the launch runs as MLX ops
    as_ops = not cached and bool(tie_operands(p.outputs))
    plan = Plan(modes, nrows * D >= WIDE_INDEX_ELEMENTS or any(math.prod(v.shape) >= WIDE_INDEX_ELEMENTS for v in views),
                D, math.gcd(nrows, 256 // threads) if threads <= 32 and not whole else 1,
                in_constant=tuple(x.size < MAX_CONSTANT_ARRAY_SIZE for x in views), vec=vec,
                threads=threads, cached=cached, lengths=tuple(lengths), row_index=index, as_ops=as_ops)
    return views, _launch(plan, nrows // plan.rows_per_group)


def row_sum_plan(p: Program, plan: Plan, summed: Sequence[int], nrows: int) -> Optional[Plan]:
    """The plan of a row launch that sums outputs `summed` over its `nrows` rows in the kernel:
    each group's rows (each of its rows_per_group slots, for short rows) are accumulated in
    registers over a grid-stride loop, then written as one row of partial sums. Only where the row
    is held in registers and every summed output is a full row; otherwise None (the outputs are
    written and then summed)."""
    if not plan.cached or nrows < 2:
        return None
    rows, length = per_row(p.outputs), p.row_lengths(default=plan.rowsize)
    if any(rows[p.outputs[k]] or length[p.outputs[k]] != plan.rowsize for k in summed):
        return None
    groups = min(ROW_SUM_GROUPS, -(-nrows // (ROW_SUM_MIN_ROWS * plan.rows_per_group)))
    return replace(plan, row_sums=tuple(summed), groups=groups, grid_stride=True)
