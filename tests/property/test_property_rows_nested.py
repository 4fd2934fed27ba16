"""Property test for row kernels with NESTED per-row values: bodies of 2-4 statements

    m = mx.mean(x * x) + 1.0
    r = mx.sum(x * mx.rsqrt(m)) / m - -m * x.max()
    s = r * mx.var(x - r * w) - (m + mx.logsumexp(w / m))
    return (x - m) * s / (mx.abs(r) + 1.0) + w

where each statement's per-row value mixes earlier ones with row reductions (sum, mean, max, min,
var, var(ddof=1), logsumexp, counts of a comparison) of arrays that themselves use earlier per-row
values, combined by BARE infix + - * / (the source has only the brackets Python needs to express
the generated tree, e.g. `a - (b + c)`), unary minus, and smooth functions with safe domains
(test_property.FLOAT_OPS's domain wrapping: mx.rsqrt(mx.abs(v) + 0.5), mx.exp(mx.clip(v, ...))).
`zmlx.reduce` bodies return a per-row value, `zmlx.map_reduce` bodies an elementwise expression of
the row and the per-row values. Inputs: x full rows (rows, D), w a shared row (D,), y one value
per row (rows, 1) or a full row. Checked as test_property_rows.check_rows does: values, shape and dtype
against the body run on each row in MLX, VJP with a random cotangent, JVP as its transpose; on
"mlx" (MLX differentiates the kernel's ops), "mlx:ir" (the generated derivative programs, as MLX
ops) and "metal-sim" (the generated MSL, forward and backward, run on the CPU). The generated CUDA
of such programs (forward and backward) is type-checked as in backend/test_cuda_source.py.

Also: integer rows (int32, int64, uint32; sum, max, min, counts) longer than a simdgroup, with
values near the type's limits, compared exactly with MLX (whose int32/uint32 sums wrap around).

Division: denominators are generated positive and bounded away from 0 (|v| + 1.0, v * v + 0.5,
mean(e * e) + 1.0, a per-row value built so); functions get arguments in their domain; no
discontinuous op (floor, sign, a comparison) is applied to a COMPUTED per-row value, whose
rounding differs between the kernel and MLX (counts compare the inputs only). Absolute tolerances
are relative to the largest intermediate value of the program (test_property_rows.program_scale).

ZMLX_PROPERTY_SCALE (conftest.examples) multiplies the example counts."""
from __future__ import annotations

import ast
import re

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import zmlx_dsl as zmlx
from conftest import HAVE_METAL_SIM, cuda_type_errors, examples
from test_property import BOOL_OPS, EAGER, FLOAT_OPS, expr_text
from test_property_rows import check_rows, load_body, program_scale

# ---- the generator ---------------------------------------------------------------------------
# A tree is a tuple: ("leaf", text) | ("neg", a) | ("bin", op, a, b) | ("call", template, a, ...)
# (a template's {0}, {1}, ... are whole call arguments: never bracketed) | ("method", a, ".sum()")
# | ("gt", a, "0.25") (a comparison, bracketed wherever it is an operand).

PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
ATOM, NEG, CMP = 4, 3, 0

# smooth functions of per-row values and of arrays, each keeping its argument in its domain
SMOOTH = [FLOAT_OPS[k].replace("{a}", "{0}") for k in
          ("rsqrt", "exp", "log", "tanh", "sigmoid", "sin", "arctan", "sinh", "erf", "log1p", "reciprocal",
           "arcsinh", "cosh")] + ["mx.rsqrt(mx.abs({0}) + 1.0)", "mx.sqrt(mx.square({0}) + 1.0)",
                                  "mx.maximum({0}, -1.0)", "mx.abs({0})", "mx.square(mx.tanh({0}))"]
SMOOTH2 = ["mx.maximum({0}, {1})", "mx.minimum({0}, {1})", "mx.logaddexp({0}, {1})"]
# row reductions: (template, method form?)
REDUCTIONS = ["mx.sum({0})", ".sum()", "mx.mean({0})", ".max()", ".min()", "mx.max({0})", "mx.min({0})",
              "mx.var({0})", "mx.var({0}, ddof=1)", "mx.logsumexp({0})", ".mean()",
              # logsumexp written out: a shift its value does not depend on (ir/shifts.py)
              "(({0}).max() + mx.log(mx.exp(({0}) - ({0}).max()).sum()))",
              # an extremum of a computed value that saturates: many elements tie, and the
              # derivative's tie test must see the same bits as the max (ir.rows.tie_operands)
              "(mx.tanh(mx.clip({0}, -0.5, 0.5)) * 2.0).max()", "mx.min(mx.cosh(mx.clip({0}, -1.0, 1.0)) + 0.5)"]
# softmax written out (its max a shift the value does not depend on), besides mx.softmax
WRITTEN_SOFTMAX = "(mx.exp(({0}) - ({0}).max()) / mx.exp(({0}) - ({0}).max()).sum())"
# inputs only (exact in both the kernel and MLX), for discontinuous ops: FLOAT_OPS less the
# ops whose result jumps where a 1-ulp difference of a computed operand (sin(x)) moves it
INPUT_OPS = {k: v for k, v in FLOAT_OPS.items()
             if k not in ("floor", "ceil", "round", "sign", "floordiv", "mod", "stop_gradient")}


def render(t, bracket_all: bool = False) -> tuple[str, int]:
    """The tree's Python source with only the brackets Python needs to express it (with
    `bracket_all`: brackets around every operator, the unambiguous spelling of the same tree), and
    its precedence."""
    def sub(child, min_prec: int) -> str:  # a bracket where the child binds less tightly than needed
        text, prec = render(child, bracket_all)
        needed = prec < min_prec or (bracket_all and child[0] in ("bin", "neg", "gt"))
        return f"({text})" if needed else text

    kind = t[0]
    if kind == "leaf":
        return t[1], ATOM
    if kind == "call":
        return t[1].format(*(render(a, bracket_all)[0] for a in t[2:])), ATOM
    if kind == "method":
        return sub(t[1], ATOM) + t[2], ATOM
    if kind == "gt":
        return f"{sub(t[1], CMP + 1)} > {t[2]}", CMP
    if kind == "neg":
        text = sub(t[1], NEG)
        return (f"- {text}" if text.startswith("-") else f"-{text}"), NEG
    op, a, b = t[1], t[2], t[3]
    p = PREC[op]  # left-associative: a right operand of the same precedence is bracketed
    return f"{sub(a, p)} {op} {sub(b, p + 1)}", p


def text_of(t) -> str:
    return render(t)[0]


def leaves(t):
    if t[0] == "leaf":
        yield t[1]
    for a in t[1:]:
        if isinstance(a, tuple):
            yield from leaves(a)


def is_const(t) -> bool:
    return all(re.fullmatch(r"[0-9.]+", v) for v in leaves(t))


def L(text):
    return ("leaf", text)


def B(op, a, b):
    return ("bin", op, a, b)


class Gen:
    """Draws trees of per-row values ("scal"), arrays ("arr") and positive denominators."""

    def __init__(self, draw, names: list, positive: set, arrays: tuple = ()):
        self.draw, self.names, self.positive, self.arrays = draw, names, positive, list(arrays)

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def coin(self, p: float) -> bool:
        return self.draw(st.integers(0, 99)) < p * 100

    # per-row values
    def scal(self, depth: int, const_ok: bool = False):
        if depth <= 0 or self.coin(0.25):
            r = self.draw(st.integers(0, 9))
            if self.names and r < 4:
                return L(self.pick(self.names))
            if const_ok and r == 9:
                return L(self.pick(["0.5", "2.0", "1.5", "3.0"]))
            return self.red(max(depth - 1, 0))
        form = self.pick(["+", "-", "*", "/", "+", "-", "*", "/", "neg", "call", "call2"])
        if form in PREC:
            a, b = self.scal(depth - 1), self.pos(depth - 1) if form == "/" else self.scal(depth - 1, True)
            if form != "/" and self.coin(0.3):
                a, b = b, a  # a constant on either side (`2.0 - v`)
            return B(form, a, b)
        if form == "neg":
            return ("neg", self.scal(depth - 1))
        if form == "call2":
            return ("call", self.pick(SMOOTH2), self.scal(depth - 1), self.scal(depth - 1, True))
        return ("call", self.pick(SMOOTH), self.scal(depth - 1))

    def pos(self, depth: int):
        """A per-row value >= 0.25 (a denominator), often a compound one (`v * v + 0.5`)."""
        pos_names = [n for n in self.names if n in self.positive]
        forms = ["abs", "square", "meansq", "var", "sigmoid", "const"] + ["name"] * (3 * bool(pos_names))
        if depth > 0:
            forms += ["prod", "sum", "exp"]
        form = self.pick(forms)
        s = lambda: self.scal(max(depth - 1, 0))  # noqa: E731
        if form == "name":
            return L(self.pick(pos_names))
        if form == "abs":
            return B("+", ("call", "mx.abs({0})", s()), L("1.0"))
        if form == "square":
            v = s()
            return B("+", B("*", v, v), L("0.5"))
        if form == "meansq":
            a = self.arr(max(depth - 1, 0))
            return B("+", ("call", "mx.mean({0})", B("*", a, a)), L("1.0"))
        if form == "var":
            return B("+", self.red_with("mx.var({0})", max(depth - 1, 0)), L("0.5"))
        if form == "sigmoid":
            return B("+", ("call", "mx.sigmoid({0})", s()), L("0.5"))
        if form == "exp":
            return ("call", "mx.exp(mx.tanh({0}))", s())
        if form == "const":
            return L(self.pick(["2.0", "0.5"]))
        return B("*" if form == "prod" else "+", self.pos(depth - 1), self.pos(depth - 1))

    # reductions of arrays
    def red(self, depth: int):
        if self.coin(0.12):  # a count: of a comparison of the inputs only
            e = expr_text(self.draw, INPUT_OPS, BOOL_OPS, ["x", "y", "w", "0.5"], self.draw(st.integers(0, 1)), "a")
            return ("method", ("gt", L(e), self.pick(["0.25", "0.0", "-1.0"])), ".sum()")
        return self.red_with(self.pick(REDUCTIONS), depth)

    def red_with(self, template: str, depth: int):
        a = self.arr(depth)
        if not {"x", "w"} & set(leaves(a)):
            # a row that may be constant (y one per row, per-row names): var/softmax/logsumexp of a
            # constant row have derivatives that are rounding noise amplified (MLX's included)
            a = B("+", a, L("x"))
        return ("method", a, template) if template.startswith(".") else ("call", template, a)

    # arrays (one value per element of the row)
    def arr(self, depth: int):
        if depth <= 0 or self.coin(0.2):
            if self.coin(0.25):  # an elementwise expression of the inputs alone, in FLOAT_OPS' brackets
                return L(expr_text(self.draw, INPUT_OPS, BOOL_OPS, ["x", "y", "w", "0.5", "2.0"], 1, "a"))
            return L(self.pick(["x", "x", "w", "y"] + self.arrays * 3))
        form = self.pick(["+", "-", "*", "/", "+", "-", "*", "neg", "call", "call2", "softmax", "written softmax"])
        if form == "/":  # an array over a per-row denominator, or anything over a positive array
            if self.coin(0.6):
                return B("/", self.arr(depth - 1), self.pos(depth - 1))
            den = B("+", ("call", "mx.abs({0})", self.arr(depth - 1)), L("1.0"))
            return B("/", self.arr(depth - 1) if self.coin(0.6) else self.scal(depth - 1, True), den)
        if form in PREC:
            a = self.arr(depth - 1)
            b = self.arr(depth - 1) if self.coin(0.4) else self.scal(depth - 1, True)
            return B(form, *((a, b) if self.coin(0.6) else (b, a)))
        if form == "neg":
            return ("neg", self.arr(depth - 1))
        if form == "softmax":
            return ("call", "mx.softmax({0})", self.arr(depth - 1))
        if form == "written softmax":
            return ("call", WRITTEN_SOFTMAX, self.arr(depth - 1))
        if form == "call2":
            return ("call", self.pick(SMOOTH2), self.arr(depth - 1), self.scal(depth - 1, True))
        return ("call", self.pick(SMOOTH), self.arr(depth - 1))


NAMES = ["m", "r", "s", "u"]


ARRAYS = ["e", "h"]


@st.composite
def nested_bodies(draw, kind: str | None = None):
    """(kind, statements, returned text, [trees]): 2-4 per-row values v_k, each using the one
    before it (and any earlier), then the output. Between them, sometimes a named array
    (`e = mx.exp(x - m)`) that later reductions and the output both read: a value a later pass
    needs again (held in registers between passes where the row is)."""
    kind = kind or draw(st.sampled_from(["reduce", "map_reduce"]))
    n = draw(st.integers(2, 4))
    names, positive, lines, trees, arrays = [], set(), [], [], []
    for k in range(n):
        if len(arrays) < len(ARRAYS) and draw(st.integers(0, 3)) == 0:
            a = Gen(draw, names, positive, arrays).arr(draw(st.integers(1, 2)))
            if a[0] == "leaf":  # a computed array, not a copy of an input
                a = ("call", draw(st.sampled_from(SMOOTH)), B("-", a, L(names[-1]) if names else g_red(draw, names)))
            lines.append(f"{ARRAYS[len(arrays)]} = {text_of(a)}")
            trees.append(a)
            arrays.append(ARRAYS[len(arrays)])
        g = Gen(draw, names, positive, arrays)
        depth = draw(st.integers(1, 3))
        if draw(st.integers(0, 3)) == 0:  # a positive per-row value, later divided by bare
            t, is_pos = g.pos(depth), True
        else:
            t, is_pos = g.scal(depth), False
        if names and names[-1] not in set(leaves(t)):  # nest: use the previous level
            op = draw(st.sampled_from(["+", "-", "*", "/"]))
            prev = L(names[-1])
            if op == "/":
                t = B("/", t, prev) if names[-1] in positive else B("/", prev, g.pos(1))
            else:
                t = B(op, *((t, prev) if draw(st.booleans()) else (prev, t)))
            is_pos = False
        if is_const(t) or t[0] == "leaf":  # a compound value: not a copy of an earlier one
            t = B(draw(st.sampled_from(["+", "-", "*"])), t, g.red(1))
            is_pos = False
        name = NAMES[k]
        lines.append(f"{name} = {text_of(t)}")
        trees.append(t)
        names.append(name)
        if is_pos:
            positive.add(name)
    g = Gen(draw, names, positive, arrays)
    if kind == "reduce":
        out = g.scal(draw(st.integers(1, 3)))
    else:
        out = g.arr(draw(st.integers(1, 3)))
    used = set(leaves(out))
    if names[-1] not in used:
        out = B(draw(st.sampled_from(["+", "-", "*"])), out, L(names[-1]))
    trees.append(out)
    return kind, lines, text_of(out), trees


def g_red(draw, names: list):
    """A reduction of x (the shift of a first named array, before any per-row value exists)."""
    return Gen(draw, names, set()).red_with(draw(st.sampled_from([".max()", "mx.mean({0})"])), 0)


# ---- the generator itself ------------------------------------------------------------------

def subtrees(t):
    yield t
    for a in t[1:]:
        if isinstance(a, tuple):
            yield from subtrees(a)


def _reduction(u) -> bool:
    return u[0] == "method" and u[2] in (".sum()", ".max()", ".min()", ".mean()") or \
        u[0] == "call" and u[1] in REDUCTIONS + ["mx.mean({0})"]


SHAPES_REACHED = {  # what the generator must produce (checked on the sample drawn below)
    "v / w bare after a reduction (sum(x * rsqrt(v)) / v)":
        lambda u: u[0] == "bin" and u[1] == "/" and _reduction(u[2]) and u[3][0] == "leaf" and u[3][1] in NAMES,
    "a - (b + c)": lambda u: u[0] == "bin" and u[1] == "-" and u[3][0] == "bin" and u[3][1] in "+-",
    "a / (b * c)": lambda u: u[0] == "bin" and u[1] == "/" and u[3][0] == "bin" and u[3][1] == "*",
    "a * b + c": lambda u: u[0] == "bin" and u[1] in "+-" and u[2][0] == "bin" and u[2][1] in "*/",
    "a + b * c": lambda u: u[0] == "bin" and u[1] in "+-" and u[3][0] == "bin" and u[3][1] in "*/",
    "-(a + b)": lambda u: u[0] == "neg" and u[1][0] == "bin" and u[1][1] in "+-",
    "a reduction of an array using a per-row value": lambda u: _reduction(u) and any(v in NAMES for v in leaves(u)),
    "a reduction of a reduction":
        lambda u: _reduction(u) and any(_reduction(v) for v in subtrees(u) if v is not u),
    "var(ddof=1)": lambda u: u[0] == "call" and "ddof=1" in u[1],
    "a count": lambda u: u[0] == "gt",
    "softmax": lambda u: u[0] == "call" and u[1] == "mx.softmax({0})",
    "softmax and logsumexp written out (an invariant shift)": lambda u: u[0] == "call" and "({0}).max()" in u[1],
    "a reduction of a named array": lambda u: _reduction(u) and any(v in ARRAYS for v in leaves(u)),
    "a tied extremum of a computed value": lambda u: u[0] == "call" and "mx.clip({0}, -" in u[1],
}


def test_generator():
    """On a sample of bodies: the minimal-bracket text parses (Python precedence) to the tree the
    generator meant, i.e. to the same AST as the text with every operator bracketed; every shape of
    SHAPES_REACHED occurs; both kinds and 2-4 levels occur."""
    seen, levels, kinds, reused = set(), set(), set(), set()

    @settings(max_examples=examples(300), deadline=None, derandomize=True, database=None)
    @given(body=nested_bodies())
    def sample(body):
        kind, lines, _, trees = body
        kinds.add(kind)
        levels.add(len(lines))
        out = set(leaves(trees[-1]))
        if kind == "map_reduce" and any(a in out and any(_reduction(u) and a in set(leaves(u))
                                                         for t in trees for u in subtrees(t)) for a in ARRAYS):
            reused.add("a named array read by a reduction and by the output")
        for t in trees:
            text, full = render(t)[0], render(t, bracket_all=True)[0]
            assert ast.dump(ast.parse(text, mode="eval")) == ast.dump(ast.parse(full, mode="eval")), (text, full)
            seen.update(k for k, pred in SHAPES_REACHED.items() if any(pred(u) for u in subtrees(t)))

    sample()
    assert set(SHAPES_REACHED) - seen == set()
    assert reused, "no body reads a named array in a reduction and in its output"
    assert kinds == {"reduce", "map_reduce"} and {2, 3, 4} <= levels


# ---- forward, VJP and JVP against the body run per row in MLX ------------------------------

EXTREMA = re.compile(r"\.max\(\)|\.min\(\)|mx\.max\(|mx\.min\(|mx\.maximum\(|mx\.minimum\(")


def _check_nested(tmp_dir, body, seed, y_mode, rows, D, backend):
    """check_rows with gradients, except for rows past 5000 whose body takes an extremum: among
    33000 computed values two lie within a rounding of each other often enough that the kernel and
    MLX pick different arg-extrema, and the gradient goes to a different element (the values agree)."""
    kind, lines, ret, _ = body
    grads = D <= 5000 or not EXTREMA.search(ret + "".join(lines))
    check_rows(tmp_dir, ret, seed, y_mode, rows, D, backend, grads=grads, kind=kind, lines=lines, scaled=True)


@pytest.fixture(scope="module")
def nested_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop_rows_nested")


SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much])
COMPILING = dict(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
"""Tests that compile C++ per program (~0.25 s): a failure is reported as drawn (its whole source is
in the message), not shrunk (which would compile hundreds of variants)."""
Y_MODES = st.sampled_from(["per_row", "per_row", "full"])
ROWS = st.sampled_from([1, 2, 3])
DS = st.sampled_from([1, 5, 37, 256, 1000, 5000, 33000])  # 33000: past the registers (the online max-and-sum)


@settings(max_examples=examples(400), **SETTINGS)
@given(body=nested_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=Y_MODES, rows=ROWS, D=DS)
def test_nested_row_bodies_generated_gradients(nested_dir, eager_mlx, body, seed, y_mode, rows, D):
    _check_nested(nested_dir, body, seed, y_mode, rows, D, "mlx:ir")


@settings(max_examples=examples(60), **SETTINGS)
@given(body=nested_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=Y_MODES, rows=ROWS, D=DS)
def test_nested_row_bodies_mlx(nested_dir, eager_mlx, body, seed, y_mode, rows, D):
    _check_nested(nested_dir, body, seed, y_mode, rows, D, "mlx")


NESTED_CASES = [  # (kind, statements, returned): known shapes, written out
    ("reduce", ["v = mx.mean(x * x) + 1.0"], "mx.sum(x * mx.rsqrt(v)) / v"),
    ("map_reduce", ["m = mx.mean(x)"], "(x - m) * mx.rsqrt(mx.mean(x * x) + 1e-5)"),
    ("map_reduce", ["m = mx.mean(x)", "var = mx.mean(x * x) - m * m"], "(x - m) * mx.rsqrt(var + 1e-5) * w + y"),
    ("map_reduce", ["m = mx.mean(x)", "d = x - m", "r = mx.rsqrt(mx.mean(d * d) + 1e-5)"], "d * r * w - r / (m * m + 1.0)"),
    ("reduce", ["m = x.max()", "s = mx.sum(mx.exp(x - m))"], "m + mx.log(s) - mx.sum(x * w) / s / 2.0"),
    # a per-row value's adjoint through a row of one (y is (R, 1)): summed over the row it broadcast
    # along (the generated gradient of x was (1 + 1) y, not (1 + D) y)
    ("reduce", [], "mx.sum((x + mx.sum(x)) * y)"),
    ("map_reduce", ["m = mx.mean(x * y)"], "(x - m) * y + m"),
    # logaddexp of large values: its derivative is sigmoid(a - b), not exp(a - y) (y's rounding)
    ("reduce", ["m = mx.sum(x * x)"], "mx.logaddexp(m, m) - mx.logaddexp(m, 2.0 * m)"),
]
CASE_BACKENDS = ["mlx", "mlx:ir"] + (["metal-sim"] if HAVE_METAL_SIM else [])


@pytest.mark.parametrize("backend", CASE_BACKENDS)
@pytest.mark.parametrize("D", [37, 1000, 5000])
@pytest.mark.parametrize("case", NESTED_CASES, ids=[c[2] for c in NESTED_CASES])
def test_nested_row_cases(nested_dir, eager_mlx, case, D, backend):
    _check_nested(nested_dir, case + (None,), 7, "per_row", 3, D, backend)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
@settings(max_examples=examples(80), **COMPILING)
@given(body=nested_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=Y_MODES, rows=ROWS, D=DS)
def test_nested_row_bodies_metal_sim(nested_dir, eager_mlx, body, seed, y_mode, rows, D):
    _check_nested(nested_dir, body, seed, y_mode, rows, D, "metal-sim")


# ---- 16-bit rows: computed in float32 (compute_dtype), stored in their own type ----------------

def _check_nested_16(tmp_dir, body, seed, y_mode, rows, D, backend, dtype):
    """The kernel on 16-bit inputs: the dtype MLX gives the body on them, and the values of the body
    run in float32 on the same (16-bit) values (the documented compute_dtype semantics; results
    and constants take the 16-bit value, so the slack is a few 16-bit ulps of the program's largest
    intermediate). It covers what 16-bit rows add to the other classes (types, vector widths,
    widening); that compute is float32 and not 16-bit is pinned by the golden texts, not here."""
    kind, lines, ret, _ = body
    fn, src = load_body(tmp_dir, ret, lines)
    swap = next(iter(EAGER.items()))  # the eager-MLX spelling of what only kernels accept
    eager, _ = load_body(tmp_dir, ret.replace(*swap), [t.replace(*swap) for t in lines])
    rng = np.random.default_rng(seed)
    shapes = {"full": (rows, D), "per_row": (rows, 1)}
    x, y, w = (mx.array(rng.uniform(-3, 3, size=s).astype(np.float32)).astype(dtype)
               for s in ((rows, D), shapes[y_mode], (D,)))
    kernel = getattr(zmlx, kind)(fn, backend=backend)
    got = kernel(x, y, w)
    wide = [a.astype(mx.float32) for a in (x, y, w)]
    want = mx.stack([eager(wide[0][i], wide[1][i], wide[2]) for i in range(rows)])
    want = want.reshape(got.shape) if kind == "reduce" else want
    like = eager(x[0], y[0], w)  # the body in MLX on the 16-bit row: the dtype
    assert got.dtype == like.dtype and got.shape == want.shape, \
        f"{src}\n{got.dtype}{got.shape}, MLX {like.dtype}{want.shape}"
    scale = program_scale(kernel, wide, D)
    g, h = np.asarray(got.astype(mx.float32), np.float64), np.asarray(want, np.float64)
    both = np.isfinite(h) & (np.abs(h) < 6e4 if dtype == mx.float16 else True)  # float16 overflows
    ulp = 2.0 ** (-7 if dtype == mx.bfloat16 else -10)  # two units in the last place of the type
    bad = ~(np.abs(g - h) <= 2 * ulp * (np.abs(h) + scale)) & both
    assert not bad.any(), f"{src}\nseed {seed}, {dtype}, y {y_mode}, D {D} ({backend}): got {g[bad][:4]}, want {h[bad][:4]}"


@settings(max_examples=examples(60), **SETTINGS)
@given(body=nested_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=Y_MODES, rows=ROWS, D=DS,
       dtype=st.sampled_from([mx.bfloat16, mx.float16]))
def test_nested_row_bodies_16_bit(nested_dir, eager_mlx, body, seed, y_mode, rows, D, dtype):
    _check_nested_16(nested_dir, body, seed, y_mode, rows, D, "mlx", dtype)


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")
@settings(max_examples=examples(20), **COMPILING)
@given(body=nested_bodies(), seed=st.integers(0, 2**31 - 1), y_mode=Y_MODES, rows=ROWS, D=DS,
       dtype=st.sampled_from([mx.bfloat16, mx.float16]))
def test_nested_row_bodies_16_bit_metal_sim(nested_dir, eager_mlx, body, seed, y_mode, rows, D, dtype):
    _check_nested_16(nested_dir, body, seed, y_mode, rows, D, "metal-sim", dtype)


# ---- the generated CUDA of nested programs type-checks (forward and backward) -------------------

@pytest.mark.skipif(not HAVE_METAL_SIM, reason="the type check needs clang++-19 or the `ziglang` package")
@pytest.mark.parametrize("kind", ["map_reduce", "reduce"])
@settings(max_examples=examples(10), **COMPILING)
@given(data=st.data(), D=st.sampled_from([5, 256, 1000, 5000, 32768]),
       dtype=st.sampled_from([mx.float32, mx.float32, mx.float16, mx.bfloat16]))
def test_nested_row_bodies_cuda_type_check(nested_dir, eager_mlx, kind, data, D, dtype):
    """The CUDA source of the kernel (`kernel.source`) and of its backward (`kernel.grad_source`),
    as MLX's CUDA backend would compile them, type-checks against tests/cuda_stub."""
    _, lines, ret, _ = data.draw(nested_bodies(kind))
    fn, src = load_body(nested_dir, ret, lines)
    kernel = getattr(zmlx, kind)(fn)
    rng = np.random.default_rng(D)
    args = [mx.array(rng.uniform(-3, 3, size=s).astype(np.float32)).astype(dtype) for s in ((2, D), (2, 1), (D,))]
    for what, make in [("forward", kernel.source), ("backward", kernel.grad_source)]:
        cuda = make(*args, backend="cuda")
        errors = cuda_type_errors(cuda, nested_dir, "nested")
        assert not errors, f"{src}\n{kind}, D {D}, {dtype}: {what} CUDA:\n" + "\n".join(errors[:10]) + \
            f"\n--- source ---\n{cuda}"


# ---- integer rows: exact, longer than a simdgroup, values near the type's limits ----------------

INTS = {"int32": (mx.int32, -2**31, 2**31 - 1), "int64": (mx.int64, -2**63, 2**63 - 1),
        "uint32": (mx.uint32, 0, 2**32 - 1)}
INT_BODIES = ["x.sum()", "mx.sum(x)", "x.max()", "mx.max(x)", "x.min()", "mx.min(x)", "(x > {c}).sum()"]
INT_DS = [33, 257, 1000, 4096]


def _int_values(rng, dist: str, lo: int, hi: int, shape) -> np.ndarray:
    """Python ints (object array) in [lo, hi] with the named distribution."""
    n = int(np.prod(shape))
    span = lambda a, b: [int(v) for v in rng.integers(a, b, size=n, endpoint=True, dtype=np.uint64 if a >= 0 else np.int64)]  # noqa: E731
    if dist == "small":
        v = span(max(lo, -100), min(hi, 100))
    elif dist == "near_max":  # sums wrap around
        v = span(hi - 1000, hi)
    elif dist == "near_min":
        v = span(lo, lo + 1000)
    elif dist == "extremes":
        v = [int(rng.choice([lo, hi, 0, 1, hi - 1, lo + 1, -1 if lo < 0 else 2])) for _ in range(n)]
    elif dist == "uniform":  # the whole range
        v = span(lo, hi)
    elif dist == "above_f32":  # integers a float32 (or float64) partial would round: 2**24 + odd, 2**53 + odd
        base = 2**53 if hi > 2**32 else 2**24
        v = [base + 2 * int(k) + 1 for k in rng.integers(0, 1000, size=n)]
    else:  # "one_outlier": zeros and one value at a random place, near a limit or past 2**24
        v = [0] * n
        v[int(rng.integers(0, n))] = int(rng.choice([hi, hi - 1, 2**24 + 1, lo if lo < 0 else hi - 2]))
    return np.array(v, dtype=object).reshape(shape)


def _int_check(tmp_dir, text: str, dtype_name: str, values: np.ndarray, backend: str) -> None:
    """The reduce kernel of `return <text>` on integer rows = MLX's per-row result, exactly (value,
    dtype, shape); MLX's int32/uint32 sums wrap around."""
    dtype, lo, hi = INTS[dtype_name]
    body, src = load_body(tmp_dir, text)
    x = mx.array(values.astype(np.int64 if lo < 0 else np.uint64)).astype(dtype)
    assert np.array_equal(np.array(x).astype(object), values)  # the inputs are what was meant
    kernel = zmlx.reduce(body, backend=backend)
    want = mx.stack([body(x[i], x[i], x[i]) for i in range(x.shape[0])])
    got = kernel(x, x, x)
    context = f"{src}\n{dtype_name} rows {values.shape}, {backend}; row 0 starts {list(values[0, :4])}"
    assert got.dtype == want.dtype and got.shape == want.shape, \
        f"{context}\nkernel {got.dtype}{got.shape}, MLX {want.dtype}{want.shape}"
    g, w = np.array(got).astype(object).tolist(), np.array(want).astype(object).tolist()
    assert g == w, f"{context}\nkernel {g}\nMLX    {w}"


INT_BACKENDS = ["mlx"] + (["metal-sim"] if HAVE_METAL_SIM else [])


@pytest.mark.parametrize("backend", INT_BACKENDS)
@settings(max_examples=examples(60), **SETTINGS)
@given(dtype=st.sampled_from(sorted(INTS)), text=st.sampled_from(INT_BODIES), D=st.sampled_from(INT_DS),
       rows=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**31 - 1),
       dist=st.sampled_from(["small", "near_max", "near_min", "extremes", "uniform", "above_f32", "one_outlier"]),
       c=st.sampled_from([0, 7, 2**24, 2**31 - 2]))
def test_integer_rows(nested_dir, eager_mlx, backend, dtype, text, D, rows, seed, dist, c):
    _, lo, hi = INTS[dtype]
    values = _int_values(np.random.default_rng(seed), dist, lo, hi, (rows, D))
    _int_check(nested_dir, text.format(c=c), dtype, values, backend)


def _wrap(v: int, dtype_name: str) -> int:
    """v in the type's two's-complement range (how MLX's sums wrap around)."""
    _, lo, hi = INTS[dtype_name]
    return (v - lo) % (hi - lo + 1) + lo


INT_CASES = [  # (dtype, body, one row, its value computed here in Python)
    ("int32", "x.max()", [0] * 256 + [16777217], 16777217),
    ("int32", "x.sum()", [1_000_001] * 257, 257 * 1_000_001),
    ("int32", "x.min()", [0] * 999 + [-16777217], -16777217),
    ("int32", "x.sum()", [2**31 - 1] * 1000, _wrap(1000 * (2**31 - 1), "int32")),
    ("int32", "x.sum()", [2**30 + 1] * 33, _wrap(33 * (2**30 + 1), "int32")),
    ("int64", "x.sum()", [2**31 + 1] * 4096, 4096 * (2**31 + 1)),
    ("int64", "x.sum()", [3_000_000_007] * 257, 257 * 3_000_000_007),
    ("int64", "x.max()", [0] * 1000 + [2**53 + 1], 2**53 + 1),
    ("int64", "x.min()", [2**62] * 33 + [-(2**62) - 1], -(2**62) - 1),
    ("uint32", "x.sum()", [2**32 - 1] * 257, _wrap(257 * (2**32 - 1), "uint32")),
    ("uint32", "x.sum()", [4_294_967] * 1000 + [296 + 1], _wrap(4_294_967 * 1000 + 297, "uint32")),
    ("uint32", "x.max()", [0] * 4095 + [2**32 - 1], 2**32 - 1),
    ("uint32", "x.min()", [2**32 - 1] * 256 + [2**31 + 1], 2**31 + 1),
    ("int32", "(x > 16777216).sum()", [16777217] * 100 + [16777216] * 157, 100),
]


@pytest.mark.parametrize("backend", INT_BACKENDS)
@pytest.mark.parametrize("dtype,text,row,value", INT_CASES, ids=[f"{c[0]}-{c[1]}-{len(c[2])}" for c in INT_CASES])
def test_integer_rows_cases(nested_dir, eager_mlx, backend, dtype, text, row, value):
    values = np.array([row, row[::-1]], dtype=object)
    body, _ = load_body(nested_dir, text)
    x = mx.array(values.astype(np.int64 if INTS[dtype][1] < 0 else np.uint64)).astype(INTS[dtype][0])
    assert np.array(body(x[0], x[0], x[0])).item() == value  # the expected value is MLX's
    _int_check(nested_dir, text, dtype, values, backend)
    got = np.array(zmlx.reduce(body, backend=backend)(x, x, x)).astype(object).tolist()
    assert got == [value, value], f"{text} of {dtype} {row[:3]}..{row[-2:]} ({len(row)}): {got}, want {value}"


@pytest.mark.skipif(not HAVE_METAL_SIM, reason="the type check needs clang++-19 or the `ziglang` package")
@pytest.mark.parametrize("dtype", sorted(INTS))
@pytest.mark.parametrize("text", ["x.sum()", "x.max()", "x.min()", "(x > 7).sum()", "x.sum() + x.max() - x.min()"])
def test_integer_rows_cuda_type_check(nested_dir, dtype, text):
    body, src = load_body(nested_dir, text)
    for D in (33, 4096):
        x = mx.zeros((2, D), INTS[dtype][0])
        cuda = zmlx.reduce(body).source(x, x, x, backend="cuda")
        errors = cuda_type_errors(cuda, nested_dir, "ints")
        assert not errors, f"{src}\n{dtype}, D {D}:\n" + "\n".join(errors[:10]) + f"\n--- source ---\n{cuda}"
