"""Property test for row kernels that INDEX their rows: random `map_reduce` / `reduce` bodies that
slice, flip, roll, concatenate, interleave, split, pad and gather their rows, mixed with each
other, with elementwise arithmetic and with row reductions, e.g.

    t0 = mx.concatenate([x[1::2], mx.roll(y, -3)])
    t0[2:7:2] = mx.sum(x[idx] * y[label])
    return mx.softmax(mx.pad(t0[::-1], (1, 2), constant_values=1.5)) * x[label] + mx.mean(t0)

Each value of the generator is a row of a TRACKED static length (or a per-row 0-d value), so only
rows of broadcast-compatible lengths meet (equal, or a row of one, or a per-row value): a row of a
wanted length n comes from a slice of a longer row (random start / stop / step, negative steps,
bounds past the ends that clamp, `x.shape[-1] - k` bounds), a pad or a concatenation of shorter
ones, an interleave (`mx.stack([a, b], axis=-1).reshape(-1)`) or split of others, or a gather
(`r[idx]`, `mx.take`, `mx.take_along_axis`, positions computed from `mx.arange` and `label`).
Per-row values are reductions (sum, mean, max, min, logsumexp, var) of any of these rows, reads at
a constant or per-row position (`r[3]`, `r[label]`, `mx.take(r, label)`, one-hot sums), and feed
back into rows. Statements name rows and values; slice assignment (`t[a:b:s] = v`, `t[k] = v`,
`t[label] = v`, `t[order] = v`) updates a local row.

Rows also come from scans (mx.cumsum / cumprod / cummax / cummin / logcumsumexp, random reverse= and
inclusive=; cumprod of `1 + 0.1 * mx.tanh(v)`, so products stay finite; an exclusive cummax's first
value, -inf, replaced by a constant), sorts (whole, reversed, sliced), `mx.sort(mx.topk(v, k))` and
`mx.sort(mx.partition(v, kth))` (MLX's CPU order of these is unspecified), gathers by (a slice of) a
sort's order (`v[mx.argsort(w)]`, `mx.take_along_axis`, ranks), the scatter back by one
(`mx.put_along_axis(mx.zeros_like(v), order, u, axis=-1)`, into mx.zeros / ones / full(_like) or a
row), and selects whose conditions are comparisons of rows, selects (`mx.where(mx.where(c, a, b) > 0,
...)`, bool-valued `mx.where(c1, c2, c3)`), positions compared with an arg-extremum
(`mx.arange(n) == mx.argmax(w)`), and / or / not of these, with selects in every operand position;
per-row values also from reads at an arg-extremum (`v[mx.argmax(w)]`) and per-row selects. What a
comparison, argsort or argmax sees is an EXACT row (Gen.key: input elements and constants, moved,
negated, summed, sorted or running-maxed: the same bits in the kernel and in MLX), so ties stay
ties; what a sort or a running / reduced extremum differentiates has no sum's scan in it
(Gen.unscanned); topk / partition see a row made free of ties. Inputs: x (..., D) float32, y with its own row length Dy
(full, a row shared by all, or broadcast over some leading axes), label (...) int32 (one value per
row, some negative, inside every row it indexes), idx (..., D) int32 (a permutation per row).

Checked as test_property_rows.check_rows does: values, shape (the generator's tracked length) and
dtype against `zmlx_dsl.testing.rowwise(body, args)` (the body on each row), the VJP with a
random cotangent for x and y, and the JVP as its transpose; tolerances relative to the program's
largest intermediate, and the float64 body bounds ill-conditioned cases. On "mlx" (MLX
differentiates the kernel's ops), "mlx:ir" (the generated derivative programs as MLX ops) and
"metal-sim" (the generated MSL, forward and backward, run on the CPU); the generated CUDA of a
subset (forward and backward) is type-checked as in backend/test_cuda_source.py.

MLX 0.32.4 facts the references work around: the VJP of a pad whose constant is an array crashes
the process (a segmentation fault), so the reference spells such a pad as a concatenation
(PAD_REFERENCE); its VJP of mx.full(shape, array) multiplies the cotangent by the fill value, so the
reference fills by addition (FULL_REFERENCE); MLX's VJP of a gather or scatter refuses a differentiable index,
so the reference reads orders and arg-extrema through mx.stop_gradient (ORDER_REFERENCE); MLX has
no JVP of cumprod / cummax / cummin, so the forward mode of bodies with them is checked against
MLX's VJP only (NO_MLX_JVP).

Failures the generator found are written out in INDEXING_CASES (minimal reproducers), those not
fixed yet as strict xfails (KNOWN_FAILURES), which the generator keeps clear of.

Bodies stay well-conditioned: denominators are positive and bounded away from 0, exp only of
bounded values, no discontinuous op of a computed value (positions are computed from `mx.arange`,
constants and `label` only, exactly in both). ZMLX_PROPERTY_SCALE (conftest.examples) multiplies
the example counts."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from conftest import HAVE_METAL_SIM, assert_values, cuda_type_errors, examples, kernel_of, to_numpy
from test_property import body_module
from zmlx_dsl.ir.interpret import interpret
from zmlx_dsl.ir.node import toposort
from zmlx_dsl.kernels import row_inputs
from zmlx_dsl.testing import rowwise

# ---- the generator ----------------------------------------------------------------------------
# Every text below is an "atom" (a name, a call, a subscript or a bracketed operation), so any of
# them can be subscripted or used as an operand without further brackets.

UNARY = ["mx.tanh({0})", "mx.sin({0})", "mx.cos({0})", "mx.sigmoid({0})", "mx.exp(mx.tanh({0}))",
         "mx.arctan({0})", "mx.square(mx.tanh({0}))", "mx.sqrt(mx.square({0}) + 1.0)",
         "mx.log(mx.abs({0}) + 1.0)", "(-{0})", "mx.abs({0})", "mx.maximum({0}, -0.75)", "mx.erf({0})",
         "mx.minimum({0}, 0.6)", "({0} * {0})"]
POSITIVE = ["(mx.abs({0}) + 1.0)", "(mx.square({0}) + 0.5)", "(mx.exp(mx.tanh({0})) + 0.5)"]
REDUCE = ["mx.sum({0})", "mx.mean({0})", "mx.max({0})", "mx.min({0})", "mx.logsumexp({0})", "{0}.sum()",
          "{0}.max()", "{0}.min()", "{0}.mean()", "mx.sum({0}, axis=-1)", "mx.max({0}, axis=0)"]
CONSTS = ["0.5", "1.5", "2.0", "0.25", "-1.0", "3.0", "-0.5"]
ROW_FORMS = ["filled", "bin", "bin", "scal_bin", "unary", "slice", "slice", "flip", "roll", "softmax", "where_label",
             "where_pos", "gather_pos", "split", "concat", "concat", "pad", "pad", "interleave",
             "gather_idx", "gather_idx", "label_row", "scan", "scan", "sort", "topk", "order_gather", "put_back",
             "where_sel", "where_sel"]
EXACT_FORMS = {"bin", "unary", "slice", "flip", "roll", "where_label", "where_pos", "gather_pos", "split", "concat",
               "pad", "interleave", "gather_idx", "scan", "sort", "topk", "order_gather", "put_back", "where_sel"}
"""The forms of an EXACT row (Gen.key): every value an input element, a constant, or a sum or
difference of such, the same bits in the kernel and in MLX, so comparisons, argsort and argmax of it
(discontinuous) agree exactly: ties stay ties (a computed row's real ties may round apart in one
order of summation and not in the other: the cumsum of a row with padded zeros)."""
EXACT_UNARY = ["(-{0})", "mx.abs({0})", "mx.maximum({0}, -0.75)", "mx.minimum({0}, 0.6)"]
SCANS = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]
ORDER_BUDGET = 1200
"""The most row elements the scans and sorts of one body hold (each holds its row in threadgroup
memory, the backward of cumprod / cummax / logcumsumexp up to five: 5 x 1200 x 4 bytes is 24 KiB of
Metal's 32)."""


@dataclass
class Body:
    kind: str                  # "map_reduce" (returns a row) or "reduce" (a per-row value)
    lines: list                # statements before the return
    returned: str
    length: Optional[int]      # the output row's length (None: a per-row value)
    D: int
    Dy: int
    label_max: int             # labels must lie in [-label_max, label_max)
    features: set = field(default_factory=set)

    @property
    def source(self) -> str:
        return "".join(f"    {t}\n" for t in self.lines) + f"    return {self.returned}\n"


class Gen:
    """Draws rows of exact static lengths and per-row values, over inputs x (D), y (Dy), label
    (one int per row) and idx (D ints), and named locals."""

    def __init__(self, draw, D: int, Dy: int):
        self.draw, self.D, self.Dy = draw, D, Dy
        self.rows = {"x": D, "y": Dy}  # named rows and their lengths
        self.scals: list = []          # named per-row values
        self.label_lens: list = []     # lengths of rows that label indexes
        self.features: set = set()
        self.lines: list = []
        self.exact = 0                 # > 0: drawing an exact row (key) for a comparison or a sort's order
        self.no_scan = 0               # > 0: no cumsum / cumprod / logcumsumexp (under an order or max)
        self.held = 0                  # row elements the scans and sorts so far hold (ORDER_BUDGET)

    # draws
    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def coin(self, p: float) -> bool:
        return self.draw(st.integers(0, 99)) < p * 100

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def const(self) -> str:
        return self.pick(CONSTS)

    def length(self) -> int:
        """A row length to make: the inputs', a local's, 1, or any other."""
        return self.pick([self.D, self.D, self.Dy, 1] + list(self.rows.values()) +
                         [self.int(1, 2 * self.D + 3)])

    # ---- rows of an exact length ----------------------------------------------------------------
    def row(self, n: int, depth: int) -> str:
        if depth <= 0 or self.coin(0.1):
            return self.leaf(n)
        forms = [f for f in ROW_FORMS if not (
            (f in ("concat", "pad") and n < 2) or (f == "interleave" and n % 2) or
            (f == "gather_idx" and n != self.D) or
            (f in ("scan", "sort", "topk", "order_gather", "put_back") and self.held + 2 * n + 3 > ORDER_BUDGET))]
        if self.exact:
            forms = [f for f in forms if f in EXACT_FORMS]
        form = self.pick(forms)
        d = depth - 1
        if form in ("scan", "sort", "topk", "order_gather", "put_back", "where_sel", "filled"):
            return getattr(self, form)(n, d)
        if form == "bin":
            op = self.pick("+-" if self.exact else "+-*/")
            a = self.row(n, d)
            b = self.row(1, d) if self.coin(0.15) else self.take_along_label(d) if self.coin(0.1) else self.row(n, d)
            if op == "/":
                self.features.add("divide")
                return f"({a} / {self.pick(POSITIVE).format(b)})"
            return f"({a} {op} {b})" if self.coin(0.6) else f"({b} {op} {a})"
        if form == "scal_bin":
            op = self.pick("+-*/")
            a, s = self.row(n, d), (self.const() if self.coin(0.3) else self.scal(d))
            if op == "/":
                return f"({a} / {self.pick(POSITIVE).format(s)})" if s not in CONSTS else f"({a} / {s.lstrip('-')})"
            return f"({a} {op} {s})" if self.coin(0.5) else f"({s} {op} {a})"
        if form == "unary":
            return self.pick(EXACT_UNARY if self.exact else UNARY).format(self.row(n, d))
        if form == "slice":
            return self.slice_to(n, d)
        if form == "flip":
            self.features.add("flip")
            return f"{self.row(n, d)}[::-1]"
        if form == "roll":
            self.features.add("roll")
            k = self.int(-2 * n - 1, 2 * n + 1)
            axis = self.pick(["", "", ", axis=-1", ", axis=0", ", -1"])
            return f"mx.roll({self.row(n, d)}, {k}{axis})"
        if form == "softmax":
            self.features.add("softmax")
            return f"mx.softmax({self.row(n, d)}{self.pick(['', ', axis=-1'])})"
        if form == "where_label":
            self.features.add("where_label")
            other = self.pick([lambda: self.row(n, d), self.const] + [lambda: self.scal(d)] * (not self.exact))()
            a, b = (self.row(n, d), other) if self.coin(0.5) else (other, self.row(n, d))
            return f"mx.where(mx.arange({n}) == label, {a}, {b})"
        if form == "where_pos":
            self.features.add("where_pos")
            cond = self.pick([f"mx.arange({n}) < {self.int(0, n)}", f"mx.arange({n}) % 2 == 0",
                              f"mx.arange({n}) >= label", f"mx.arange({n}) != {self.int(0, n - 1)}"])
            other = self.row(n, d) if self.coin(0.6) else self.const()
            return f"mx.where({cond}, {self.row(n, d)}, {other})"
        if form == "gather_pos":
            return self.gather_pos(n, d)
        if form == "split":
            return self.split_to(n, d)
        if form == "concat":
            self.features.add("concat")
            cuts = sorted(self.draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=min(2, n - 1))))
            bounds = [0] + cuts + [n]
            parts = ", ".join(self.row(b - a, d) for a, b in zip(bounds, bounds[1:]))
            axis = self.pick(["", "", ", axis=0", ", axis=-1"])
            return f"mx.concatenate([{parts}]{axis})"
        if form == "pad":
            return self.pad_to(n, d)
        if form == "interleave":
            self.features.add("interleave")
            h = n // 2
            a, b = self.row(h, d), self.row(h, d)
            flat = self.pick([".reshape(-1)", ".flatten()", f".reshape({n})"])
            if self.coin(0.2):  # axis 0: the rows one after the other
                self.features.add("stack0")
                return f"mx.stack([{a}, {b}]){flat}"
            return f"mx.stack([{a}, {b}], axis={self.pick(['-1', '1'])}){flat}"
        if form == "gather_idx":
            return self.gather_idx(d)
        # "label_row": a row times a read at the label
        return f"({self.row(n, d)} * {self.label_read(d)})"

    # ---- scans, sorts, orders and selects ----------------------------------------------------------
    def key(self, n: int, d: int) -> str:
        """An exact row of length n (EXACT_FORMS): compared, sorted by argsort, or its argmax taken."""
        self.exact += 1
        try:
            return self.row(n, max(d, 0))
        finally:
            self.exact -= 1

    def unscanned(self, n: int, d: int) -> str:
        """A row whose sort or running extremum is differentiated: exact, or computed without a sum's
        scan (a cumsum of a row with zeros has real ties that float32 orders of summation break)."""
        if self.exact or self.coin(0.5):
            return self.key(n, d)
        self.no_scan += 1
        try:
            return self.row(n, d)
        finally:
            self.no_scan -= 1

    def scan(self, n: int, d: int) -> str:
        kinds = [k for k in SCANS if not ((self.exact or self.no_scan) and k in ("cumsum", "cumprod", "logcumsumexp"))]
        kind = self.pick(kinds)
        self.features.add(kind)
        self.held += n
        reverse, inclusive = self.coin(0.4), not self.coin(0.35)
        flags = [f"axis={self.pick([-1, 0])}"] * self.coin(0.2) + ["reverse=True"] * reverse + \
            (["reverse=False"] * self.coin(0.1) if not reverse else []) + ["inclusive=False"] * (not inclusive)
        if reverse:
            self.features.add("scan_reverse")
        if not inclusive:
            self.features.add("scan_exclusive")
        if kind in ("cummax", "cummin"):
            src = self.unscanned(n, d)
        elif kind == "cumprod":  # products of factors in [0.9, 1.1] stay finite over 263 positions
            src = f"(1.0 + 0.1 * mx.tanh({self.row(n, d)}))"
        else:
            src = self.row(n, d)
        text = f"mx.{kind}({src}{''.join(', ' + f for f in flags)})"
        if not inclusive and kind in ("cummax", "cummin", "logcumsumexp"):
            # the exclusive scan's first value is its identity, -inf or inf: a constant there instead
            first = n - 1 if reverse else 0
            text = f"mx.where(mx.arange({n}) == {first}, {self.const()}, {text})"
        return text

    def sort(self, n: int, d: int) -> str:
        """The sorted values of a row: whole, reversed, or a slice of a longer one."""
        self.features.add("sort")
        form = self.pick(["whole", "reversed", "slice"])
        if form == "slice":
            self.features.add("sort_slice")
            s = self.pick([1, 1, 2, -1])
            m = (n - 1) * abs(s) + 1 + self.int(0, 3)
            self.held += m
            return self.slice_of(f"mx.sort({self.unscanned(m, d)}{self.pick(['', ', axis=-1'])})", m, n, s)
        self.held += n
        text = f"mx.sort({self.unscanned(n, d)})"
        if form == "reversed":
            self.features.add("sort_reversed")
            return f"{text}[::-1]"
        return text

    def topk(self, n: int, d: int) -> str:
        """The n largest of a row of m >= n, sorted (MLX's CPU order is unspecified); of n, a partition."""
        m = n + self.pick([0, 1, 2, self.int(0, n + 3)])
        self.held += m
        # which of tied values topk / partition take is unspecified (MLX's CPU ones are not stable, the
        # kernel's are), and with it where the gradient goes: the row made free of ties by a ramp
        scale = "0.0009765625" if m < 40 else "0.0001220703125"
        src = f"({self.unscanned(m, d)} + mx.arange({m}) * {scale})"
        if m == n and self.coin(0.3):
            self.features.add("partition")
            return f"mx.sort(mx.partition({src}, {self.int(-m, m - 1)}))"
        self.features.add("topk")
        return f"mx.sort(mx.topk({src}, {n}{self.pick(['', ', axis=-1'])}))"

    def order(self, m: int, d: int) -> str:
        """The ascending order of an exact row of m (a permutation of range(m)), as MLX's reference
        needs it differentiated: through mx.stop_gradient, or bare (the reference adds it: load)."""
        self.features.add("argsort")
        self.held += m
        text = f"mx.argsort({self.key(m, d)}{self.pick(['', ', axis=-1'])})"
        if self.coin(0.3):
            self.features.add("order_bare")
            return text
        return f"mx.stop_gradient({text})"

    def order_gather(self, n: int, d: int) -> str:
        """A row of n read by (a slice of) the order of a row of m >= n, from a row of at least m; or ranks."""
        m = n if self.coin(0.5) else n + self.int(1, 4)
        order = self.order(m, d)
        if m > n:
            self.features.add("order_slice")
            order = self.slice_of(order, m, n, self.pick([1, 1, 2, -1]) if 2 * (n - 1) + 1 <= m else self.pick([1, -1]))
        if self.coin(0.1):  # the ranks: the order of the order
            self.features.add("rank")
            return f"(mx.argsort({order}) * {self.pick(['0.25', '0.125'])})" if m == n else \
                f"({order} * {self.pick(['0.25', '0.125'])})"
        self.features.add("order_gather")
        src = self.row(m + self.pick([0, 0, 0, 2]), d)
        return self.pick([f"{src}[{order}]", f"mx.take({src}, {order})", f"mx.take_along_axis({src}, {order}, axis=-1)"])

    def put_back(self, n: int, d: int) -> str:
        """A row of n written at (a slice of) the order of a row of n: mx.put_along_axis into a new row
        (mx.zeros_like, mx.zeros, mx.ones, mx.full) or into a row."""
        self.features.add("put_back")
        k = n if self.coin(0.6) else self.int(1, n)
        order = self.order(n, d)
        if k < n:
            self.features.add("put_partial")
            step = self.pick([s for s in (1, -1, 2, -2, 3) if (k - 1) * abs(s) + 1 <= n])
            order = self.slice_of(order, n, k, step)
            if abs(step) > 1:  # every step-th position of the order: ir.positions.inverse divides
                self.features.add("put_strided")
        base = self.pick(["zeros_like", "zeros", "ones", "full", "full_like", "row", "row", "row"])
        self.features.add("new_row" if base != "row" else "put_into_row")
        base = {"zeros_like": lambda: f"mx.zeros_like({self.row(n, 0)})", "zeros": lambda: f"mx.zeros(({n},))",
                "ones": lambda: f"mx.ones({n})", "full": lambda: f"mx.full(({n},), {self.const()})",
                "full_like": lambda: f"mx.full_like({self.row(n, 0)}, {self.const()})",
                "row": lambda: self.row(n, d)}[base]()
        return f"mx.put_along_axis({base}, {order}, {self.row(k, d)}, axis=-1)"

    def argext(self, m: int, d: int) -> str:
        """The first position of the maximum or minimum of an exact row of m (uint32, per row)."""
        self.features.add("argext")
        return f"mx.{self.pick(['argmax', 'argmin'])}({self.key(m, d)}{self.pick(['', ', axis=-1', ', axis=0'])})"

    def cond(self, n: int, d: int) -> str:
        """A bool row of n (or a per-row bool, broadcast): positions, label, comparisons of exact
        rows (a select among them included), arg-extrema, bool selects, and / or / not of these."""
        forms = ["pos", "pos", "label", "cmp", "cmp_select"]
        if d > 0:
            forms += ["select_bool", "select_bool", "argext", "logic", "per_row"]
        form = self.pick(forms)
        d = d - 1
        if form == "pos":
            return self.pick([f"(mx.arange({n}) < {self.int(0, n)})", f"(mx.arange({n}) % 2 == 0)",
                              f"(mx.arange({n}) >= label)", f"(mx.arange({n}) != {self.int(0, n - 1)})"])
        if form == "label":
            return f"(mx.arange({n}) == label)"
        if form == "cmp":
            self.features.add("cond_value")
            return f"({self.key(n, d)} {self.pick(['>', '<', '>=', '<='])} {self.pick(['0.0', '0.5', '-1.0'])})"
        if form == "cmp_select":  # a select as the compared operand: mx.where(mx.where(c, a, b) > 0, ...)
            self.features.add("select_compared")
            self.exact += 1
            try:
                a, b = self.key(n, d), self.pick([lambda: self.key(n, d), self.const])()
                inner = f"mx.where({self.cond(n, d)}, {a}, {b})"
            finally:
                self.exact -= 1
            return f"({inner} {self.pick(['>', '<'])} {self.pick(['0.0', '0.5'])})"
        if form == "select_bool":  # a bool-valued select: mx.where(c1, c2, c3)
            self.features.add("select_bool")
            return f"mx.where({self.cond(n, d)}, {self.cond(n, d)}, {self.cond(n, d)})"
        if form == "argext":
            self.features.add("argext_position")
            return f"(mx.arange({n}) {self.pick(['==', '<', '>='])} {self.argext(self.length(), d)})"
        if form == "per_row":
            self.features.add("cond_per_row")
            return self.pick(["(label >= 0)", "(label < -1)", f"({self.argext(self.length(), d)} > {self.int(0, 3)})"])
        self.features.add("cond_logic")
        c = self.cond(n, d)
        return self.pick([f"({c} & {self.cond(n, d)})", f"({c} | {self.cond(n, d)})", f"mx.logical_not({c})",
                          f"mx.logical_and({c}, {self.cond(n, d)})"])

    def where_sel(self, n: int, d: int) -> str:
        """mx.where(cond, a, b) with the condition and both operands any of the above (selects too)."""
        self.features.add("where_select")
        c = self.cond(n, self.int(0, 2))
        if c.startswith("mx.where("):
            self.features.add("select_condition")

        def operand():
            o = self.pick(["row", "row", "row", "one", "const"] + ["scal"] * (not self.exact))
            if o == "row":
                return self.row(n, d)
            if o == "one":
                return self.row(1, d)
            return self.const() if o == "const" else self.scal(d)
        a, b = self.row(n, d), operand()  # a row of n: the condition may be one per row
        a, b = (a, b) if self.coin(0.5) else (b, a)
        if a.startswith("mx.where(") or b.startswith("mx.where("):
            self.features.add("select_operand")
        return f"mx.where({c}, {a}, {b})"

    def filled(self, n: int, d: int) -> str:
        """A row of n holding one value per row: mx.full((n,), v), or v[None] (a row of one)."""
        v = self.scal(d)
        if n == 1 and self.coin(0.5):
            self.features.add("new_axis")
            return f"({v})[None]" if self.coin(0.5) else f"({v})[..., None]"
        self.features.add("filled")
        return f"mx.full(({n},), {v})" if self.coin(0.5) else f"mx.full({n}, {v})"

    def take_along_label(self, d: int) -> str:
        """The read at label as a row of one, `mx.take_along_axis(r, label[None], axis=-1)` (label[None]
        a row of one, as in MLX)."""
        m = self.length()
        self.label_lens.append(m)
        self.features.add("take_along_label")
        return f"mx.take_along_axis({self.row(m, d)}, label[None], axis=-1)"

    def leaf(self, n: int) -> str:
        named = [k for k, m in self.rows.items() if m == n and (not self.exact or k in ("x", "y"))]
        options = ["named"] * (3 * bool(named)) + ["arange", "fit", "fit", "fit"]
        if n == self.D:
            options += ["idx"]
        form = self.pick(options)
        if form == "named":
            return self.pick(named)
        if form == "idx":
            return self.gather_idx(0)
        if form == "arange":
            self.features.add("arange")
            s = self.pick([1, 1, 2, -1, 3])
            start = self.int(-3, 3) if s > 0 else self.int(n - 1, n + 2)
            scale = self.pick(["0.25", "0.125", "0.0625"]) if n < 40 else "0.015625"
            if s == 1 and start == 0 and self.coin(0.5):
                return f"(mx.arange({n}) * {scale} - 0.5)"
            return f"(mx.arange({start}, {start + s * n}, {s}) * {scale})"
        # fit a named row to the length: slice a longer one, pad or extend a shorter one
        name = self.pick(["x", "y"] if self.exact else sorted(self.rows))
        m = self.rows[name]
        if m >= n:
            return self.slice_of(name, m, n, self.pick([1, 1, -1]) if (n - 1) * 2 + 1 > m else
                                 self.pick([1, 2, -1, -2]))
        if self.coin(0.5):
            b = self.int(0, n - m)
            self.features.add("pad")
            return f"mx.pad({name}, ({b}, {n - m - b}), constant_values={self.const()})"
        self.features.add("concat")
        return f"mx.concatenate([{name}, {self.leaf(n - m)}])"

    # ---- slices -----------------------------------------------------------------------------------
    def slice_to(self, n: int, d: int) -> str:
        s = self.pick([1, 1, 2, 3, -1, -1, -2, -3])
        need = (n - 1) * abs(s) + 1
        longer = [k for k, m in self.rows.items() if m >= need and (not self.exact or k in ("x", "y"))]
        if longer and self.coin(0.5):
            name = self.pick(sorted(longer))
            return self.slice_of(name, self.rows[name], n, s)
        m = need + self.int(0, 4)
        return self.slice_of(self.row(m, d), m, n, s)

    def slice_of(self, text: str, m: int, n: int, s: int) -> str:
        """text (a row of length m)[a:b:s] with n elements: the bounds drawn among the spellings
        that give exactly the positions wanted (negative, clamped, omitted, from .shape)."""
        self.features.add("slice" if s > 0 else "slice_negative_step")
        first = self.int(0, m - (n - 1) * s - 1) if s > 0 else self.int((n - 1) * -s, m - 1)
        want = list(range(first, first + n * s, s))
        return f"{text}[{self.bounds(text, m, want, s)}]"

    def bounds(self, text: str, m: int, want: list, s: int) -> str:
        """Slice bounds `a:b:s` over a row (text) of length m that select exactly the positions `want`."""
        first = want[0] if want else None
        last = want[-1] if want else None
        named = re.fullmatch(r"[a-z]\w*", text) is not None
        starts = {str(first), str(first - m)} if want else {str(self.int(-m - 2, m + 2))}
        stops = set()
        if want:
            stops |= {str(v) for v in range(last + 1, last + s + 1) if s > 0} | \
                {str(v) for v in range(last + s, last) if s < 0}
            stops |= {str(int(v) - m) for v in list(stops) if 0 < int(v) < m}
        stops |= {"", str(m + 3), str(-m - 2), "0", str(m)}
        starts |= {"", str(m + 2), str(-m - 3), "0", str(m - 1)}
        if named and m > 1:  # bounds computed from the row's static length
            stops |= {f"{text}.shape[-1] - {k}" for k in range(1, 3)} | {f"{text}.shape[0] // 2"}

        def positions(a: str, b: str) -> list:
            ev = lambda t: None if t == "" else eval(t, {}, {text: np.zeros(m)} if named else {})  # noqa: E731
            return list(range(m))[slice(ev(a), ev(b), s)]
        ok = [(a, b) for a in sorted(starts) for b in sorted(stops) if positions(a, b) == want]
        a, b = self.pick(ok) if ok else (str(first), "")  # a start alone always works for the prefix/suffix
        if not ok:
            assert positions(a, b) == want, (text, m, want, s)
        if ".shape" in b:
            self.features.add("shape_bound")
        if b.startswith("-") or a.startswith("-"):
            self.features.add("negative_bound")
        step = "" if s == 1 and self.coin(0.6) else f":{s}"
        return f"{a}:{b}{step}"

    # ---- gathers ----------------------------------------------------------------------------------
    def gather_idx(self, d: int) -> str:
        """A row of length D read at idx (a permutation of range(D)) from a row of length >= D."""
        self.features.add("gather_idx")
        longer = [k for k, m in self.rows.items() if m >= self.D and (not self.exact or k in ("x", "y"))]
        if longer and (d <= 0 or self.coin(0.5)):
            name = self.pick(sorted(longer))
            src, m = name, self.rows[name]
        else:
            m = self.D + self.pick([0, 0, 1, 3])
            src = self.row(m, d)
        # some positions negative (they wrap, as MLX's do): idx - k lies in [-k, D - k), inside [-m, m)
        pos = f"(idx - {self.pick([1, m, self.int(1, m)])})" if self.coin(0.3) else "idx"
        if pos != "idx":
            self.features.add("negative_index")
        return self.pick([f"{src}[{pos}]", f"mx.take({src}, {pos})", f"mx.take({src}, {pos}, axis=-1)",
                          f"mx.take_along_axis({src}, {pos}, axis=-1)"])

    def gather_pos(self, n: int, d: int) -> str:
        """A row of length n read at positions computed from mx.arange (and label), all inside a
        row of length m (MLX's % is a floor modulo, as the kernel's)."""
        self.features.add("gather_pos")
        m = self.length()
        a, b = self.int(-3, 3), self.int(-m, m)
        pos = self.pick([f"(mx.arange({n}) * {a} + {b}) % {m}", f"(mx.arange({n}) * {a} + label) % {m}",
                         f"(label - mx.arange({n})) % {m}", f"mx.arange({n}) % {m}"])
        if n <= m and self.coin(0.3):  # a reversed arange: inside without a modulo
            first = self.int(n - 1, m - 1)
            pos = f"mx.arange({first}, {first - n}, -1)"
        src = self.row(m, d)
        return self.pick([f"{src}[{pos}]", f"mx.take({src}, {pos})", f"mx.take_along_axis({src}, {pos}, axis=-1)"])

    def label_read(self, d: int) -> str:
        """A per-row value read at the per-row position label."""
        self.features.add("label_read")
        m = self.length()
        self.label_lens.append(m)
        src = self.row(m, d)
        return self.pick([f"{src}[label]", f"mx.take({src}, label)", f"mx.take({src}, label, axis=0)",
                          f"mx.sum(mx.where(mx.arange({m}) == label, {src}, 0.0))"])

    # ---- splits and pads ---------------------------------------------------------------------------
    def split_to(self, n: int, d: int) -> str:
        self.features.add("split")
        if self.coin(0.5):  # equal parts
            k = self.pick([2, 3])
            return f"mx.split({self.row(n * k, d)}, {k}{self.pick(['', ', axis=-1', ', 0'])})[{self.int(-k, k - 1)}]"
        before, after = self.int(0, 3), self.int(0, 3)
        m = before + n + after
        src = self.row(m, d)
        cuts = ([before] if before else []) + ([before + n] if after else [])
        if not cuts:  # a split with no cut is the row itself: cut off a part of the row after it
            return f"mx.split(mx.concatenate([{src}, {self.leaf(2)}]), [{n}])[0]"
        part = 1 if before else 0
        spelled = [str(c) if self.coin(0.6) else str(c - m) for c in cuts]
        return f"mx.split({src}, [{', '.join(spelled)}])[{part}]"

    def pad_to(self, n: int, d: int) -> str:
        self.features.add("pad")
        total = self.int(1, min(n - 1, 6))
        b = self.int(0, total)
        a = total - b
        src = self.row(n - total, d)
        form = self.pick(["const", "const", "zero", "list", "sym"] + ["value"] * (not self.exact))
        if form == "sym" and a == b:
            return f"mx.pad({src}, {a})"
        if form == "zero":
            return f"mx.pad({src}, ({b}, {a}))"
        if form == "list":
            return f"mx.pad({src}, [({b}, {a})], constant_values={self.const()})"
        if form == "value":  # a per-row constant: the reference spells it otherwise (PAD_REFERENCE)
            self.features.add("pad_value")
            value = self.pick(self.scals) if self.scals and self.coin(0.5) else self.scal(0)
            return f"mx.pad({src}, ({b}, {a}), constant_values={value})"
        return f"mx.pad({src}, ({b}, {a}), constant_values={self.const()})"

    # ---- per-row values --------------------------------------------------------------------------
    def scal(self, depth: int) -> str:
        if depth <= 0 or self.coin(0.2):
            options = ["red", "red", "red", "index", "label", "argext"] + ["named"] * (2 * bool(self.scals))
            if depth <= 0:
                options = [o for o in options if o != "red"] + ["red_leaf"]
            form = self.pick(options + ["label_float"])
            d = max(depth - 1, 0)
            if form == "named":
                return self.pick(self.scals)
            if form in ("red", "red_leaf"):
                return self.reduction(d)
            if form == "index":
                self.features.add("const_index")
                m = self.length()
                return f"{self.row(m, d)}[{self.int(-m, m - 1)}]"
            if form == "label":
                return self.label_read(d)
            if form == "argext":  # an arg-extremum as a position (a label) or as a number
                m = self.length()
                pos = self.argext(m, d)
                if self.coin(0.25):
                    self.features.add("argext_float")
                    return f"({pos} * {self.pick(['0.25', '0.5'])})"
                self.features.add("argext_read")
                src = self.row(m + self.pick([0, 0, 2]), d)
                return self.pick([f"{src}[{pos}]", f"mx.take({src}, {pos})", f"mx.take({src}, {pos}, axis=0)"])
            self.features.add("label_float")
            return "(label * 0.25)"
        form = self.pick(["bin", "bin", "const_bin", "unary", "div", "select"])
        d = depth - 1
        if form == "select":  # a per-row select by a per-row condition (label, an arg-extremum)
            self.features.add("select_per_row")
            c = self.pick(["(label >= 0)", "(label < -1)",
                           lambda: f"({self.argext(self.length(), d)} {self.pick(['<', '>='])} {self.int(0, 4)})",
                           lambda: f"mx.where(label > 0, label < 2, {self.argext(self.length(), d)} == 0)"])
            c = c if isinstance(c, str) else c()
            return f"mx.where({c}, {self.scal(d)}, {self.pick([self.const, lambda: self.scal(d)])()})"
        if form == "bin":
            return f"({self.scal(d)} {self.pick('+-*')} {self.scal(d)})"
        if form == "const_bin":
            op = self.pick("+-*")
            return f"({self.scal(d)} {op} {self.const()})" if self.coin(0.5) else f"({self.const()} {op} {self.scal(d)})"
        if form == "unary":
            return self.pick(UNARY).format(self.scal(d))
        return f"({self.scal(d)} / {self.pick(POSITIVE).format(self.scal(d))})"

    def reduction(self, d: int) -> str:
        m = self.length()
        template = self.pick(REDUCE + (["mx.var({0})"] if m > 1 else []))
        # max / min are differentiated at the extremum: of a row without a sum's scan (Gen.unscanned)
        text = self.unscanned(m, d) if re.search(r"max|min", template) and not self.exact else self.row(m, d)
        self.features.add("reduction")
        return template.format(text)

    # ---- statements ----------------------------------------------------------------------------------
    def statement(self, k: int) -> None:
        form = self.pick(["row", "row", "row", "scal", "split2"])
        depth = self.int(1, 4)
        if form == "scal":
            name = f"s{k}"
            self.lines.append(f"{name} = {self.scal(depth)}")
            self.scals.append(name)
            return
        if form == "split2":
            self.features.add("split_unpack")
            a, b = f"t{k}a", f"t{k}b"
            if self.coin(0.5):
                h = self.length()
                self.lines.append(f"{a}, {b} = mx.split({self.row(2 * h, depth)}, 2)")
                self.rows[a] = self.rows[b] = h
            else:
                m = max(self.length(), 2)
                c = self.int(1, m - 1)
                self.lines.append(f"{a}, {b} = mx.split({self.row(m, depth)}, [{c}])")
                self.rows[a], self.rows[b] = c, m - c
            return
        name, m = f"t{k}", self.length()
        text = self.row(m, depth)
        self.lines.append(f"{name} = {text}")  # a bare name is an alias (`t = x; t[0] = v` changes x)
        self.rows[name] = m
        for _ in range(self.draw(st.sampled_from([0, 0, 1, 1, 2]))):
            self.assign(name, m)

    def use_locals(self, out: str, n: Optional[int]) -> str:
        """out combined with every local that nothing after its statement reads (no dead statements):
        a row of the output's length (or of one) as an operand, any other row through a reduction
        or a read, a per-row value as an operand."""
        for k, line in enumerate(self.lines):
            target = line.partition(" = ")[0]
            later = " ".join(t.partition(" = ")[2] for t in self.lines[k + 1:]) + " " + out
            for name in re.findall(r"[a-z]\w*", target.split("[")[0]):
                if "[" in target or name in names_in(later):
                    continue
                op = self.pick(["+", "-", "*"])
                m = self.rows.get(name)
                if m is None:
                    out = f"({out} {op} {self.pick(['{0}', 'mx.tanh({0})']).format(name)})"
                elif n is not None and m in (n, 1):
                    out = f"({out} {op} {name})" if op != "*" else f"({out} * mx.tanh({name}))"
                else:
                    form = self.pick(["red", "red", "index", "label"])
                    if form == "red":
                        used = self.pick(REDUCE + (["mx.var({0})"] if m > 1 else [])).format(name)
                    elif form == "index":
                        used = f"{name}[{self.int(-m, m - 1)}]"
                    else:
                        self.label_lens.append(m)
                        used = f"{name}[label]"
                    out = f"({out} {op} {used})" if op != "*" else f"({out} * mx.tanh({used}))"
        return out

    def assign(self, name: str, m: int) -> None:
        """name[...] = value on the local row name (length m)."""
        form = self.pick(["slice", "slice", "slice", "int", "label"] + ["order"] * (self.held + m <= ORDER_BUDGET))
        d = self.int(0, 2)
        value = lambda: self.pick([self.const, lambda: self.scal(d)])()  # noqa: E731
        if form == "order":  # y[order] = v by (a slice of) a sort's order: put_along_axis
            self.features.add("assign_order")
            k = m
            order = self.order(m, d)
            self.lines.append(f"{name}[{order}] = {self.pick([lambda: self.row(k, d), value])()}")
            return
        if form == "int":
            self.features.add("assign_int")
            self.lines.append(f"{name}[{self.int(-m, m - 1)}] = {value()}")
            return
        if form == "label":
            self.features.add("assign_label")
            self.label_lens.append(m)
            self.lines.append(f"{name}[label] = {value()}")
            return
        self.features.add("assign_slice")
        s = self.pick([1, 1, 2, -1, -2, 3])
        count = self.int(0, (m - 1) // abs(s) + 1)
        if count == 0:
            self.features.add("assign_empty")
            first = self.int(0, m - 1)
            target = f"{first}:{first}" if s > 0 else f"{first}:{first}:{s}"
            self.lines.append(f"{name}[{target}] = {value()}")
            return
        first = self.int(0, m - (count - 1) * s - 1) if s > 0 else self.int((count - 1) * -s, m - 1)
        want = list(range(first, first + count * s, s))
        bounds = self.bounds(name, m, want, s)
        v = self.pick(["value", "row", "row1"])
        rhs = self.row(count, d) if v == "row" else self.row(1, d) if v == "row1" else value()
        self.lines.append(f"{name}[{bounds}] = {rhs}")


def names_in(text: str) -> set:
    return set(re.findall(r"\b[a-z_]\w*\b", re.sub(r"mx\.\w+", "", text)))


def inputs_used(text: str, lines: Sequence[str]) -> bool:
    """Whether the returned text depends on x or y (through the statements; an assignment to an
    empty slice, `t[3:3] = x[0]`, changes nothing)."""
    deps = {"x", "y"}
    for line in lines:
        target, _, value = line.partition(" = ")
        if re.search(r"\[(-?\d+):\1(:-?\d+)?\]$", target):
            continue
        names = set(re.findall(r"[a-z]\w*", value))
        for t in re.findall(r"[a-z]\w*", target.split("[")[0]):
            if names & deps:
                deps.add(t)
    return bool(set(re.findall(r"[a-z]\w*", text)) & deps)


@st.composite
def bodies(draw, kind: Optional[str] = None):
    kind = kind or draw(st.sampled_from(["map_reduce", "map_reduce", "reduce"]))
    D = draw(st.sampled_from(DS))
    Dy = draw(st.sampled_from(sorted({D, max(D // 2, 1), 2 * D, 1, D + 3})))
    g = Gen(draw, D, Dy)
    for k in range(draw(st.integers(0, 3))):
        g.statement(k)
    depth = draw(st.integers(2, 5))
    if kind == "reduce":
        n, out = None, g.scal(depth)
    else:
        n = g.length()
        out = g.row(n, depth)
    out = g.use_locals(out, n)
    if not inputs_used(out, g.lines):
        out = f"({out} + mx.mean(x))"
    label_max = min(g.label_lens + [D])
    return Body(kind, g.lines, out, n, D, Dy, label_max, g.features)


DS = [1, 2, 5, 8, 16, 33, 64, 130]


# ---- the references ------------------------------------------------------------------------------

def program_scale(kernel, args: Sequence[mx.array]) -> float:
    """The largest finite |value| any float node of the kernel's program takes on these inputs (the
    float64 IR interpreter, on the rows as the kernel sees them): float32 rounding errors are
    relative to it (test_property_rows.program_scale, for inputs of several row lengths)."""
    prog = kernel.program(*args)
    names = list(inspect.signature(kernel.__wrapped__).parameters)
    rows = row_inputs(list(args), "body")
    nodes = [n for n in toposort(prog.outputs) if n.dtype.is_float]
    scale = 1.0
    for v in interpret(nodes, {n: to_numpy(a) for n, a in zip(names, rows)}, mode="float64"):
        v = np.abs(np.asarray(v, dtype=np.float64))
        v = v[np.isfinite(v)]
        if v.size:
            scale = max(scale, float(v.max()))
    return scale


def float64(fn: Callable, args: Sequence[mx.array]) -> list:
    """fn's results with the float arguments in float64 (MLX's float64 is CPU-only), as NumPy
    arrays; Nones where an op has no float64 kernel."""
    try:
        with mx.stream(mx.cpu):
            outs = fn(*[a.astype(mx.float64) if a.dtype == mx.float32 else a for a in args])
            return [np.asarray(o) for o in outs]
    except (ValueError, RuntimeError):
        return [None] * len(args)


def close(got, want, what: str, context: str, scale: float = 1.0, exact=None) -> None:
    """Same dtype and shape; values within 1e-4 relative and 1e-4 x max(scale, |want|) absolute;
    where MLX's float32 `want` is itself off from the float64 `exact` by more, up to 4x MLX's error
    (as test_property_rows.check_rows compares)."""
    try:
        assert got.dtype == want.dtype and got.shape == want.shape, \
            f"{what}{got.dtype}{got.shape}, MLX {want.dtype}{want.shape}"
    except AssertionError as e:
        raise AssertionError(f"{context}\n{e}") from None
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    w = np.where(np.isnan(w) & (g == 0), 0.0, w)  # MLX's 0 * inf = NaN where the derivative has no term
    if exact is not None:
        with np.errstate(invalid="ignore"):
            e = np.broadcast_to(np.asarray(exact, dtype=np.float64), w.shape)
            w = np.where(np.abs(g - e) <= 4 * np.abs(w - e), g, w)
    finite = np.abs(w[np.isfinite(w)])
    scale = max(1.0, scale, float(finite.max()) if finite.size else 1.0)
    try:
        assert_values(g, w, atol=1e-4 * scale, rtol=1e-4, what=what)
    except AssertionError as e:
        raise AssertionError(f"{context}\n{e}") from None


def gradient_scales(ref: Callable, x, y, label, idx, ct) -> list:
    """Per float input, the size of the terms its gradient sums over the rows it is broadcast to
    (a shared y's gradient adds one term per row: its rounding is relative to their magnitudes)."""
    rows = row_inputs([x, y, label, idx], "body")
    lead = tuple(mx.broadcast_shapes(*[r.shape[:-1] for r in rows]))
    xb, yb = (mx.broadcast_to(r, lead + r.shape[-1:]) for r in rows[:2])
    terms = mx.vjp(lambda a, b: [ref(a, b, label, idx)], [xb, yb], [ct])[1]
    out = []
    for a, t in zip((x, y), terms):
        t = mx.abs(t)
        t = mx.sum(t, axis=list(range(t.ndim - a.ndim))) if t.ndim > a.ndim else t
        axes = [i for i in range(a.ndim) if a.shape[i] == 1 and t.shape[i] != 1]
        out.append(float(mx.max(mx.sum(t, axis=axes) if axes else t).item()))
    return out


LEADS = [(1,), (2,), (3,), (2, 3)]
Y_MODES = ["full", "full", "shared", "broadcast"]


def make_inputs(body: Body, lead: tuple, y_mode: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    D, Dy = body.D, body.Dy
    if y_mode == "full":
        y_shape = lead + (Dy,)
    elif y_mode == "shared":
        y_shape = (Dy,) if len(lead) > 1 or Dy != lead[0] else (1, Dy)  # (R,) would be one value per row
    else:
        y_shape = (lead[-1], Dy) if len(lead) > 1 else (1, Dy)
    x = mx.array(rng.uniform(-3, 3, size=lead + (D,)).astype(np.float32))
    y = mx.array(rng.uniform(-3, 3, size=y_shape).astype(np.float32))
    L = body.label_max
    label = mx.array(rng.integers(-L, L, size=lead).astype(np.int32))
    perms = np.stack([rng.permutation(D) for _ in range(int(np.prod(lead)))]).reshape(lead + (D,))
    idx = mx.array(perms.astype(np.int32))
    return [x, y, label, idx]


def leads_for(D: int, Dy: int) -> list:
    """Leading shapes where label (lead) is unambiguously one value per row: in a 2-D call an (R,)
    integer array with R a row length of the (R, n) arguments must say which it is (kernels.row_inputs)."""
    widths = {D, Dy}  # y as the gradient scales see it: broadcast to full rows
    return [lead for lead in LEADS if len(lead) > 1 or lead[0] not in widths]


@st.composite
def cases(draw, kind: Optional[str] = None):
    body = draw(bodies(kind))
    y_mode = draw(st.sampled_from(Y_MODES))
    lead = draw(st.sampled_from(leads_for(body.D, body.Dy)))
    return body, lead, y_mode, draw(st.integers(0, 2**31 - 1))


# ---- forward, VJP and JVP against the body run per row in MLX ----------------------------------

NO_MLX_JVP = {"cumprod", "cummax", "cummin"}
"""MLX 0.32.4 has no JVP of these (`JVP is not implemented for cumulative prod/min/max`): the kernel's
forward mode is checked against MLX's VJP only (the adjoint identity below), not by mx.jvp of the body."""

PAD_REFERENCE = [
    "pad_widths = lambda w: (w, w) if isinstance(w, int) else tuple(w[0]) if isinstance(w, list) else w",
    "pad_reference = lambda r, w, constant_values=0.0: mx.concatenate([mx.zeros((pad_widths(w)[0],), r.dtype) + "
    "constant_values, r, mx.zeros((pad_widths(w)[1],), r.dtype) + constant_values])"]
"""The reference's spelling of mx.pad in bodies that pad with a per-row value: MLX 0.32.4's VJP of
such a pad crashes the process (`mx.vjp(lambda v: mx.pad(x, (0, 3), constant_values=v.max()),
...)`: a segmentation fault)."""


ORDER_REFERENCE = [f"{f}_reference = lambda a, axis=-1: mx.stop_gradient(mx.{f}(a, axis=axis))"
                   for f in ("argsort", "argmax", "argmin")]
"""The reference's spelling of an order or arg-extremum used as an index: MLX 0.32.4's VJP of a
gather or scatter refuses a differentiable index (`[gather] Cannot calculate VJP with respect to
indices. Use stop_gradient on indices`), the kernel's takes none through it."""


FULL_REFERENCE = ["full_reference = lambda shape, vals: mx.zeros(shape) + vals"]
"""The reference's spelling of mx.full: MLX 0.32.4's VJP of mx.full(shape, array) is the cotangent
times the fill value (Full::vjp multiplies by its primal), where the kernel's is the cotangent's sum."""


def needs_reference(body: Body) -> bool:
    return bool(body.features & {"pad_value", "argsort", "argext", "filled", "new_row"})


def load(tmp_dir, body: Body, reference: bool = False):
    """The body as a module function (kernels need source); with `reference`, as the reference runs it."""
    lines, returned = body.lines, body.returned
    if reference and needs_reference(body):
        def swap(t: str) -> str:
            t = t.replace("mx.pad(", "pad_reference(") if "pad_value" in body.features else t
            return re.sub(r"mx\.(argsort|argmax|argmin|full)\(", r"\1_reference(", t)
        lines, returned = PAD_REFERENCE + ORDER_REFERENCE + FULL_REFERENCE + [swap(t) for t in lines], swap(returned)
    return body_module(tmp_dir, "x, y, label, idx", returned, "zmlx_prop_indexing", lines)


def check(tmp_dir, case, backend: str, grads: bool = True) -> None:
    """The kernel of the case's body on `backend` against the body run per row in MLX: values, shape
    (the generator's tracked length), dtype; with `grads`, the VJP with a random cotangent (x and y)
    and the JVP as its transpose."""
    body, lead, y_mode, seed = case
    fn, src = load(tmp_dir, body)
    args = make_inputs(body, lead, y_mode, seed)
    x, y, label, idx = args
    kernel = kernel_of(fn, backend, body.kind)
    eager = load(tmp_dir, body, reference=True)[0] if needs_reference(body) else fn
    ref = rowwise(eager, args)
    shapes = ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(("x", "y", "label", "idx"), args))
    context = (f"{src}\n{body.kind}, {shapes}, labels in [-{body.label_max}, {body.label_max}), seed {seed} "
               f"({backend})")
    want = ref(*args)
    expected = lead + ((body.length,) if body.length is not None else ())
    assert want.shape == expected and want.dtype == mx.float32, \
        f"{context}\nthe generator meant {expected}, MLX made {want.dtype}{want.shape}"  # the generator's own check
    got = kernel(*args)
    scale = program_scale(kernel, args)
    exact = float64(lambda *a: [ref(*a)], args)[0]
    close(got, want, "kernel vs MLX body: ", context, scale, exact)
    if not grads or not bool(mx.all(mx.isfinite(want)).item()):
        return
    rng = np.random.default_rng(seed + 1)
    ct = mx.array(rng.normal(size=want.shape).astype(np.float32))
    of_k = lambda a, b: kernel(a, b, label, idx)  # noqa: E731
    of_r = lambda a, b: ref(a, b, label, idx)  # noqa: E731
    got_g = mx.vjp(of_k, [x, y], [ct])[1]
    want_g = mx.vjp(of_r, [x, y], [ct])[1]
    exact_g = float64(lambda a, b, c: mx.vjp(of_r, [a, b], [c])[1], [x, y, ct])
    for arg, g, h, s, e in zip("xy", got_g, want_g, gradient_scales(ref, *args, ct), exact_g):
        close(g, h, f"gradient of {arg}: ", context, s, e)
    # forward mode, as the transpose of MLX's VJP: <ct, J t> = <J^T ct, t>
    tangents = [mx.array(rng.normal(size=a.shape).astype(np.float32)) for a in (x, y)]
    if body.features & NO_MLX_JVP and backend == "mlx":
        return  # MLX differentiates the kernel's own ops, and has no JVP of cumprod / cummax / cummin
    if body.features & NO_MLX_JVP and backend == "mlx:ir":
        # MLX 0.32.4's mx.jvp traces into the kernel's mx.custom_function body (and fails on the JVP
        # MLX lacks) before calling its custom JVP: the generated forward-mode program, called
        # directly, is what that custom JVP runs (test_scans.test_scan_forward_mode)
        rows = kernel._rows(list(args))[0]  # as the kernel passes them (label one per row: (..., 1))
        tangent = kernel.compiled_for(tuple(args), {}, "mlx")._jvp(rows, tangents + [None, None])[0]
        tangent = tangent.reshape(want.shape)
    else:
        tangent = mx.jvp(of_k, [x, y], tangents)[1][0]
    lhs = float(mx.sum(ct * tangent).item())
    terms = [g * t for g, t in zip(want_g, tangents)]
    rhs = float(sum(mx.sum(p).item() for p in terms))
    size = float(sum(mx.sum(mx.abs(p)).item() for p in terms)) + abs(rhs)
    within = abs(lhs - rhs) <= 1e-4 * max(1.0, size)
    if not within and all(e is not None for e in exact_g):
        rhs64 = sum(float(np.sum(e * np.asarray(t, np.float64))) for e, t in zip(exact_g, tangents))
        within = abs(lhs - rhs64) <= 4 * abs(rhs - rhs64)
    if np.isfinite(rhs):
        assert within, f"{context}\nforward mode: <ct, J t> = {lhs}, <J^T ct, t> = {rhs}"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop_indexing")


# ---- the generator itself ----------------------------------------------------------------------

FEATURES = {"slice", "slice_negative_step", "negative_bound", "shape_bound", "flip", "roll", "concat",
            "interleave", "stack0", "split", "split_unpack", "pad", "pad_value", "gather_idx", "negative_index",
            "gather_pos", "label_read", "take_along_label", "where_label", "where_pos", "arange", "softmax",
            "reduction", "const_index", "label_float", "divide", "assign_slice", "assign_int", "assign_label",
            "assign_empty",
            # scans, sorts, orders, arg-extrema and selects of selects
            "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "scan_reverse", "scan_exclusive", "sort",
            "sort_slice", "sort_reversed", "topk", "partition", "argsort", "order_bare", "order_slice", "order_gather",
            "rank", "put_back", "put_partial", "put_strided", "filled", "new_axis", "new_row", "put_into_row", "assign_order", "argext", "argext_read",
            "argext_float", "argext_position", "cond_value", "cond_per_row", "cond_logic", "select_compared",
            "select_bool", "select_condition", "select_operand", "where_select", "select_per_row"}


def test_generator(index_dir):
    """On a sample: every construct occurs, both kinds and every D; each body runs in MLX on one row
    and gives the row length the generator tracked (the main tests check it on every example too).
    Hypothesis' choices vary a little from run to run even derandomized, so a construct missing
    from the first sample gets up to three more seeded samples before it counts as never drawn."""
    seen, kinds, Ds = set(), set(), set()

    def sample(round: int) -> None:
        @settings(max_examples=examples(300), deadline=None, derandomize=round == 0, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @seed(round)
        @given(case=cases())
        def one(case):
            body, lead, y_mode, seed_ = case
            seen.update(body.features)
            kinds.add(body.kind)
            Ds.add(body.D)
            fn, src = load(index_dir, body)
            args = make_inputs(body, (1,), "full", seed_)
            out = fn(args[0][0], args[1][0], args[2][0], args[3][0])
            assert out.shape == (() if body.length is None else (body.length,)), (src, out.shape)
        one()

    for round in range(4):
        sample(round)
        if not FEATURES - seen:
            break
    assert FEATURES - seen == set()
    assert kinds == {"map_reduce", "reduce"} and Ds == set(DS)


SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])
COMPILING = dict(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""Tests that compile C++ per program: a failure is reported as drawn (its whole source is in the
message), not shrunk (which would compile hundreds of variants)."""


# ---- random bodies -------------------------------------------------------------------------------

@settings(max_examples=examples(400), **SETTINGS)
@given(case=cases())
def test_indexing_bodies_generated_gradients(index_dir, eager_mlx, case):
    check(index_dir, case, "mlx:ir")


@settings(max_examples=examples(150), **SETTINGS)
@given(case=cases())
def test_indexing_bodies_mlx(index_dir, eager_mlx, case):
    check(index_dir, case, "mlx")


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
@settings(max_examples=examples(80), **COMPILING)
@given(case=cases())
def test_indexing_bodies_metal_sim(index_dir, eager_mlx, case):
    check(index_dir, case, "metal-sim")


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="the type check needs clang++-19 or the `ziglang` package")
@pytest.mark.parametrize("kind", ["map_reduce", "reduce"])
@settings(max_examples=examples(10), **COMPILING)
@given(data=st.data())
def test_indexing_bodies_cuda_type_check(index_dir, eager_mlx, kind, data):
    """The CUDA source of the kernel (`kernel.source`) and of its backward (`kernel.grad_source`),
    as MLX's CUDA backend would compile them, type-checks against tests/cuda_stub."""
    body, lead, y_mode, seed = data.draw(cases(kind))
    fn, src = load(index_dir, body)
    args = make_inputs(body, lead, y_mode, seed)
    kernel = kernel_of(fn, "mlx", kind)
    for what, make in [("forward", kernel.source), ("backward", kernel.grad_source)]:
        cuda = make(*args, backend="cuda")
        errors = cuda_type_errors(cuda, index_dir, "indexing")
        assert not errors, f"{src}\n{kind}, {[a.shape for a in args]}: {what} CUDA:\n" + "\n".join(errors[:10]) + \
            f"\n--- source ---\n{cuda}"


# ---- written-out cases: known shapes, and the failures found (xfail, strict) ------------------------
# From "negative index row" on: failures the generator found (minimal reproducers), fixed since
# (regression cases) or still failing (KNOWN_FAILURES: xfail, strict; the generator keeps clear of them).

INDEXING_CASES = {  # id: (kind, statements, returned, output length, D, Dy, features)
    "rope halves": ("map_reduce", ["h = x.shape[-1] // 2", "x1, x2 = x[:h], x[h:]"],
                    "mx.concatenate([x1 * mx.cos(y) - x2 * mx.sin(y), x2 * mx.cos(y) + x1 * mx.sin(y)])", 16, 16, 8, set()),
    "rope interleaved": ("map_reduce", ["x1, x2 = x[0::2], x[1::2]"],
                         "mx.stack([x1 * mx.cos(y) - x2 * mx.sin(y), x1 * mx.sin(y) + x2 * mx.cos(y)], axis=-1).reshape(-1)",
                         16, 16, 8, set()),
    "cross-entropy at label": ("reduce", [], "mx.logsumexp(x) - x[label]", None, 33, 33, set()),
    "glu by split": ("map_reduce", ["a, b = mx.split(x, 2)"], "a * mx.sigmoid(b) + y[::-1]", 32, 64, 32, set()),
    "slice assignment": ("map_reduce", ["t = x * 2.0", "t[1:7:3] = mx.sum(y)", "t[label] = -1.0"],
                         "mx.softmax(mx.roll(t, -3)[::-1])", 16, 16, 5, {"assign_slice"}),
    "pad with a per-row value": ("map_reduce", ["m = mx.max(x)"], "mx.pad(x[1:-1], (2, 1), constant_values=m)",
                                 9, 8, 8, {"pad_value"}),
    "gather by index rows": ("map_reduce", [], "x[idx] * mx.take(y, idx) + mx.take_along_axis(x, idx, axis=-1)", 33, 33, 40, set()),
    "negative index row": ("map_reduce", [], "x[idx - 1] * y", 8, 8, 8, set()),
    "scatter in a part loop": ("map_reduce", [], "mx.where(mx.arange(8) < 4, x, 0.0) + x[idx] + mx.sum(mx.arange(16) * x[0])",
                               8, 8, 8, set()),
    "update of an alias": ("map_reduce", ["t = x", "t[0] = 0.5", "u = x * 1.0", "u += 1.0"], "x + t + u", 8, 8, 8,
                           {"assign_slice"}),
    "update of a copy": ("map_reduce", ["t = x[:]", "t[0] = 0.5"], "x + t", 8, 8, 8, {"assign_slice"}),
    "augmented update of a copy": ("map_reduce", ["t = mx.roll(x, 8)", "t += 1.0"], "x + t", 8, 8, 8, {"assign_slice"}),
    "softmax of a concatenation": ("map_reduce", [], "mx.softmax(mx.concatenate([x, x]))", 10, 5, 5, set()),
    "softmax of a padded row": ("map_reduce", [], "mx.softmax(mx.pad(x, (0, 1), constant_values=1.5))", 9, 8, 8, set()),
    "softmax of a reversed roll": ("map_reduce", [], "mx.softmax(mx.roll(x, 1)[::-1])", 8, 8, 5, set()),
    "softmax in a part of a concatenation": ("map_reduce", [],
                                             "mx.concatenate([x[:3], mx.softmax(mx.pad(x, (0, 1), constant_values=1.5)[7:9])])",
                                             5, 8, 8, set()),
    "logsumexp of a roll": ("reduce", [], "mx.logsumexp(mx.roll(x[1:], 2))", None, 6, 6, set()),
    "sum of a padded row beside a roll": ("map_reduce", [], "mx.roll(x, 1) + mx.sum(mx.pad(x, (1, 0), constant_values=0.5))",
                                          5, 5, 5, set()),
    "tangent of a per-row value summed over a row": ("reduce", [], "mx.sum(mx.arange(3) * 1.0 + mx.sum(x))", None, 4, 4, set()),
    "tangent of a row of one summed over a longer row": ("map_reduce", [], "mx.where(mx.arange(5) == label, x, "
                                                         "mx.sum(((mx.arange(2) * 0.25 - 0.5) + y)))", 5, 5, 1, set()),
    "a body that reads no input": ("map_reduce", [], "mx.arange(2) * 0.25", 2, 4, 4, set()),
    "take_along_axis at label: a row of one": ("map_reduce", [], "mx.take_along_axis(x, label[None], axis=-1)",
                                               1, 8, 8, set()),
    "take_along_axis at label, padded": ("map_reduce", [],
                                         "mx.pad(mx.take_along_axis(x, label[None], axis=-1), (0, 1), constant_values=0.5)",
                                         2, 8, 8, set()),
    "keepdims reduction: a row of one": ("map_reduce", [], "mx.max(x, keepdims=True)", 1, 8, 8, set()),
    # scans, sorts and selects (the reference's arg-extrema and orders under stop_gradient: ORDER_REFERENCE)
    "read at an arg-extremum": ("reduce", [], "x[mx.argmax(x)] + mx.take(y, mx.argmin(y))", None, 8, 8, {"argext"}),
    "scatter at a slice of an order": ("map_reduce", [], "mx.put_along_axis(mx.zeros_like(x), mx.argsort(x)[5:2:-1], y[:3], "
                                       "axis=-1) + mx.put_along_axis(x, mx.stop_gradient(mx.argsort(y))[2:5], x[:3] * 2.0, "
                                       "axis=-1)", 8, 8, 8, {"argsort"}),
    "assignment at a slice of an order": ("map_reduce", ["t = x * 1.0", "t[mx.argsort(y)[2:5]] = x[:3] * 2.0"], "t",
                                          8, 8, 8, {"argsort", "assign_slice"}),
    "sort of a row of 9 in rows of 16": ("map_reduce", [], "mx.sort(x[:9])[5:]", 4, 16, 16, set()),
    "cumsum of a row of 9 in rows of 16": ("map_reduce", [], "mx.cumsum(x[:9])[5:]", 4, 16, 16, set()),
    "scatter at a step-2 slice of an order": ("map_reduce", [], "mx.put_along_axis(mx.zeros_like(x), mx.argsort(x)[::2], "
                                              "y[:4], axis=-1)", 8, 8, 8, {"argsort"}),
    "scan jvp, one label per row": ("reduce", [], "mx.sum(mx.cummax(x) * mx.cumprod(1.0 + 0.1 * mx.tanh(y))) + x[label]",
                                    None, 8, 8, {"cummax", "cumprod"}),
}
CASE_BACKENDS = ["mlx", "mlx:ir"] + (["metal-sim"] if HAVE_METAL_SIM else [])
KNOWN_FAILURES = {  # id: (backends, how it fails, what is wrong)
}


def _case_params():
    for name in INDEXING_CASES:
        for backend in CASE_BACKENDS:
            marks = []
            backends, raises, reason = KNOWN_FAILURES.get(name, ((), None, ""))
            if backend in backends:
                marks = [pytest.mark.xfail(strict=True, raises=raises, reason=reason)]
            yield pytest.param(name, backend, marks=marks, id=f"{name}-{backend}")


@pytest.mark.parametrize("name,backend", list(_case_params()))
def test_indexing_cases(index_dir, eager_mlx, name, backend):
    kind, lines, returned, length, D, Dy, features = INDEXING_CASES[name]
    body = Body(kind, lines, returned, length, D, Dy, D, set(features))
    check(index_dir, (body, (3,), "full", 7), backend)
