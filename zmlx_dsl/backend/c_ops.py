"""How the C renderer spells each registry op (one table for Metal and CUDA; a renderer
overrides entries, as tinygrad's code_for_op), and the C helper functions spellings call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Spelling:
    """C text of an op: {0}, {1}... are the operands; a dict keys the text by the operands' dtype
    kind ('f', 'i', 'u', 'b'; '*' for the rest). `prec` is the C precedence of its outermost
    operator (higher binds tighter), 0 for a call, which never needs brackets around it.
    Reductions combine an accumulator {0} with a value {1}."""

    text: Union[str, dict]
    prec: float = 0

    def template(self, kind: str) -> str:
        return self.text.get(kind, self.text.get("*")) if isinstance(self.text, dict) else self.text


@dataclass(frozen=True)
class Helper:
    """A C function a spelling calls, emitted only when used; `code` has {q} for the qualifier."""

    name: str
    code: str


SPELLINGS: dict[str, Spelling] = {
    "add": Spelling("{0} + {1}", prec=4),
    "sub": Spelling("{0} - {1}", prec=4),
    "mul": Spelling("{0} * {1}", prec=5),
    "div": Spelling("{0} / {1}", prec=5),
    "floordiv": Spelling({"f": "floor({0} / {1})", "*": "zmlx_floordiv({0}, {1})"}),
    "mod": Spelling({"f": "zmlx_fmod({0}, {1})", "*": "zmlx_mod({0}, {1})"}),
    "power": Spelling({"f": "pow({0}, {1})", "*": "zmlx_ipow({0}, {1})"}),
    "maximum": Spelling({"f": "zmlx_fmax({0}, {1})", "*": "max({0}, {1})"}),
    "minimum": Spelling({"f": "zmlx_fmin({0}, {1})", "*": "min({0}, {1})"}),
    "arctan2": Spelling("atan2({0}, {1})"),
    "logaddexp": Spelling("zmlx_logaddexp({0}, {1})"),
    "eq": Spelling("{0} == {1}", prec=2),
    "ne": Spelling("{0} != {1}", prec=2),
    "lt": Spelling("{0} < {1}", prec=3),
    "le": Spelling("{0} <= {1}", prec=3),
    "gt": Spelling("{0} > {1}", prec=3),
    "ge": Spelling("{0} >= {1}", prec=3),
    "logical_and": Spelling("{0} && {1}", prec=1),
    "logical_or": Spelling("{0} || {1}", prec=0.5),
    "logical_not": Spelling("!{0}", prec=6),
    "where": Spelling("{0} ? {1} : {2}", prec=0.25),
    "neg": Spelling("-{0}", prec=6),
    "abs": Spelling("abs({0})"),
    "sign": Spelling({"f": "({0} > 0.0f ? 1.0f : ({0} < 0.0f ? -1.0f : 0.0f))",
                      "*": "(({0} > 0) - ({0} < 0))"}),
    "square": Spelling("{0} * {0}", prec=5),
    "reciprocal": Spelling("1.0f / {0}", prec=5),
    "sqrt": Spelling("sqrt({0})"),
    "rsqrt": Spelling("rsqrt({0})"),
    "floor": Spelling({"f": "floor({0})", "*": "{0}"}),
    "ceil": Spelling({"f": "ceil({0})", "*": "{0}"}),
    "round": Spelling({"f": "rint({0})", "*": "{0}"}),
    "exp": Spelling("exp({0})"),
    "exp2": Spelling("exp2({0})"),
    "expm1": Spelling("zmlx_expm1({0})"),
    "log": Spelling("log({0})"),
    "log2": Spelling("log2({0})"),
    "log10": Spelling("log10({0})"),
    "log1p": Spelling("zmlx_log1p({0})"),
    "sigmoid": Spelling("zmlx_sigmoid({0})"),
    "erf": Spelling("zmlx_erf({0})"),
    "erfinv": Spelling("zmlx_erfinv({0})"),
    "sin": Spelling("sin({0})"),
    "cos": Spelling("cos({0})"),
    "tan": Spelling("tan({0})"),
    "arcsin": Spelling("asin({0})"),
    "arccos": Spelling("acos({0})"),
    "arctan": Spelling("atan({0})"),
    "sinh": Spelling("sinh({0})"),
    "cosh": Spelling("cosh({0})"),
    "tanh": Spelling("tanh({0})"),
    "arcsinh": Spelling("asinh({0})"),
    "arccosh": Spelling("acosh({0})"),
    "arctanh": Spelling("atanh({0})"),
    "isnan": Spelling({"f": "isnan({0})", "*": "false"}),
    "isinf": Spelling({"f": "isinf({0})", "*": "false"}),
    "isfinite": Spelling({"f": "isfinite({0})", "*": "true"}),
    "stop_gradient": Spelling("{0}"),  # the identity: the renderer passes its operand through
    "sum": Spelling("{0} + {1}"),
    "max": Spelling({"f": "zmlx_fmax({0}, {1})", "*": "max({0}, {1})"}),
    "min": Spelling({"f": "zmlx_fmin({0}, {1})", "*": "min({0}, {1})"}),
}

# ---- helpers (plain C, valid Metal and CUDA; {q} is the backend's function qualifier) -------

ERF = Helper("zmlx_erf", """\
{q} float zmlx_erf(float x) {{
  // Abramowitz-Stegun 7.1.26 is too coarse; this is the rational fit used by XLA (|err| < 1e-7).
  if (isnan(x)) return x;  // the clamp below (fmin/fmax drop a NaN operand) would give -1
  const float clamped = fmin(fmax(x, -4.0f), 4.0f);
  const float x2 = clamped * clamped;
  float p = -2.72614225801306e-10f;
  p = fma(p, x2, 2.77068142495902e-08f);
  p = fma(p, x2, -2.10102402082508e-06f);
  p = fma(p, x2, -5.69250639462346e-05f);
  p = fma(p, x2, -7.34990630326855e-04f);
  p = fma(p, x2, -2.95459980854025e-03f);
  p = fma(p, x2, -1.60960333262415e-02f);
  float q = -1.45660718464996e-05f;
  q = fma(q, x2, -2.13374055278905e-04f);
  q = fma(q, x2, -1.68282697438203e-03f);
  q = fma(q, x2, -7.37332916720468e-03f);
  q = fma(q, x2, -1.42647390514189e-02f);
  return clamped * p / q;
}}
""")

ERFINV = Helper("zmlx_erfinv", """\
{q} float zmlx_erfinv(float y) {{
  // Giles, "Approximating the erfinv function" (single precision branch-per-region form).
  float w = -log((1.0f - y) * (1.0f + y));
  float p;
  if (w < 5.0f) {{
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = fma(p, w, 3.43273939e-07f);
    p = fma(p, w, -3.5233877e-06f);
    p = fma(p, w, -4.39150654e-06f);
    p = fma(p, w, 0.00021858087f);
    p = fma(p, w, -0.00125372503f);
    p = fma(p, w, -0.00417768164f);
    p = fma(p, w, 0.246640727f);
    p = fma(p, w, 1.50140941f);
  }} else {{
    w = sqrt(w) - 3.0f;
    p = -0.000200214257f;
    p = fma(p, w, 0.000100950558f);
    p = fma(p, w, 0.00134934322f);
    p = fma(p, w, -0.00367342844f);
    p = fma(p, w, 0.00573950773f);
    p = fma(p, w, -0.0076224613f);
    p = fma(p, w, 0.00943887047f);
    p = fma(p, w, 1.00167406f);
    p = fma(p, w, 2.83297682f);
  }}
  return fabs(y) == 1.0f ? copysign(INFINITY, y) : p * y;
}}
""")

SIGMOID = Helper("zmlx_sigmoid", """\
{q} float zmlx_sigmoid(float x) {{
  // exp of a non-positive argument only, so neither tail overflows.
  const float e = exp(-fabs(x));
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}}
""")

LOG1P = Helper("zmlx_log1p", """\
{q} float zmlx_log1p(float x) {{
  // Kahan's trick: exact where 1 + x rounds, accurate for tiny x.
  const float u = 1.0f + x;
  if (u == INFINITY) return u;  // x = inf: log(u) * (inf / inf) would be NaN
  return u == 1.0f ? x : log(u) * (x / (u - 1.0f));
}}
""")

EXPM1 = Helper("zmlx_expm1", """\
{q} float zmlx_expm1(float x) {{
  // Kahan's trick: (e^x - 1) corrected by x / log(e^x).
  const float u = exp(x);
  if (u == 1.0f) return x;
  if (isinf(u)) return u;  // overflow (x > ~88.7, inf): the correction inf * x / inf would be NaN
  const float um1 = u - 1.0f;
  return um1 == -1.0f ? -1.0f : um1 * x / log(u);
}}
""")

LOGADDEXP = Helper("zmlx_logaddexp", """\
{q} float zmlx_logaddexp(float a, float b) {{
  // max + log1p(exp(-|a - b|)): never overflows; infinities of equal sign stay exact.
  if (isnan(a) || isnan(b)) return a + b;  // fmax/fmin below drop a NaN operand
  const float hi = fmax(a, b);
  const float lo = fmin(a, b);
  if (isinf(hi) && hi == lo) return hi;
  return hi + zmlx_log1p(exp(lo - hi));
}}
""")

FLOORDIV_INT = Helper("zmlx_floordiv", """\
template <typename I> {q} I zmlx_floordiv(I a, I b) {{
  // Python/MLX floor division (C's / truncates toward zero). By zero: 0, as MLX; by -1: the
  // negation, wrapping for the most negative value (C's division would fault or be undefined).
  if (b == I(0)) return I(0);
  if (I(-1) < I(0) && b == I(-1)) return I(0) - a;
  const I q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}}
""")

MOD_INT = Helper("zmlx_mod", """\
template <typename I> {q} I zmlx_mod(I a, I b) {{
  // Python/MLX remainder: the sign of the divisor. By zero: a, as MLX; by -1: 0.
  if (b == I(0)) return a;
  if (I(-1) < I(0) && b == I(-1)) return I(0);
  const I r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}
""")

FMAX = Helper("zmlx_fmax", """\
{q} float zmlx_fmax(float a, float b) {{
  // MLX's maximum: a NaN operand gives NaN (Metal's and CUDA's max/fmax return the other operand).
  return isnan(a) || a > b ? a : b;
}}
""")

FMIN = Helper("zmlx_fmin", """\
{q} float zmlx_fmin(float a, float b) {{
  // MLX's minimum: a NaN operand gives NaN (Metal's and CUDA's min/fmin return the other operand).
  return isnan(a) || a < b ? a : b;
}}
""")

POW_INT = Helper("zmlx_ipow", """\
template <typename I> {q} I zmlx_ipow(I base, I e) {{
  // Integer power by squaring, as MLX (pow is floating-point only); a negative exponent gives 0.
  if (e < 0) return I(0);
  I r = I(1);
  for (; e != I(0); e >>= 1) {{
    if (e & I(1)) r *= base;
    base *= base;
  }}
  return r;
}}
""")

FMOD_FLOAT = Helper("zmlx_fmod", """\
{q} float zmlx_fmod(float a, float b) {{
  // Python/MLX remainder for floats: the sign of the divisor.
  const float r = fmod(a, b);
  return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
}}
""")

# ---- the fast path (fast_math): cheaper float transcendentals, accurate well within 16-bit outputs ----
# Measured against float64 in benchmarks/accuracy.py (RESULTS.md); {exp2} is the backend's fast
# exp2 (Metal `fast::exp2`, CUDA `exp2f`), {fdiv} its fast division of a by b.

FAST_DIV = Helper("zmlx_fast_div", """\
{q} float zmlx_fast_div(float a, float b) {{
  // a / b within 2 ulp for |b| < 2^126: the rational fits' last step (CUDA's IEEE division is a
  // Newton iteration with a slow path: 4-5% of a 16-bit gelu on an H200, benchmarks/variants.py)
  return {fdiv};
}}
""")

FAST_EXP = Helper("zmlx_fast_exp", """\
{q} float zmlx_fast_exp(float x) {{
  // e^x as 2^(x log2(e)): the product's rounding costs ~|x| * 6e-8 relative (88 * 6e-8 at the
  // overflow bound; a float16 ulp is 1e-3), as MLX's fast::exp and CUDA's __expf
  return {exp2}(x * 1.44269504f);
}}
""")

FAST_SIGMOID = Helper("zmlx_fast_sigmoid", """\
{q} float zmlx_fast_sigmoid(float x) {{
  // as zmlx_sigmoid (exp of a non-positive argument only) through the fast exp2
  const float e = {exp2}(fabs(x) * -1.44269504f);
  const float s = 1.0f / (1.0f + e);
  return x >= 0.0f ? s : e * s;
}}
""")

FAST_TANH = Helper("zmlx_fast_tanh", """\
{q} float zmlx_fast_tanh(float x) {{
  // Eigen's and XLA's rational fit x * p(x^2) / q(x^2) on [-7.905, 7.905] (|err| < 4e-7), exactly
  // +-1 beyond (so 1 + tanh(x) is 0 there, as in float); no exp, no branch, a NaN stays NaN
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = fma(p, x2, 2.00018790482477e-13f);
  p = fma(p, x2, -8.60467152213735e-11f);
  p = fma(p, x2, 5.12229709037114e-08f);
  p = fma(p, x2, 1.48572235717979e-05f);
  p = fma(p, x2, 6.37261928875436e-04f);
  p = fma(p, x2, 4.89352455891786e-03f);
  float q = 1.19825839466702e-06f;
  q = fma(q, x2, 1.18534705686654e-04f);
  q = fma(q, x2, 2.26843463243900e-03f);
  q = fma(q, x2, 4.89352518554385e-03f);
  return fabs(x) > 7.90531110f ? copysign(1.0f, x) : zmlx_fast_div(x * p, q);
}}
""")

FAST_ERF = Helper("zmlx_fast_erf", """\
{q} float zmlx_fast_erf(float x) {{
  // a minimax rational x * p(x^2) / q(x^2) of degree 4/3 in x^2 on [-3.9, 3.9] (relative error
  // < 4.6e-6; zmlx_erf's is 6/4); exactly +-1 beyond 3.9 and where the fit overshoots 1, so that
  // 1 + erf(x) is never negative (gelu's tail); a NaN stays NaN
  const float x2 = x * x;
  float p = -4.23248184e-06f;
  p = fma(p, x2, 1.05108437e-03f);
  p = fma(p, x2, 4.69289087e-02f);
  p = fma(p, x2, 1.62926137e-01f);
  p = fma(p, x2, 1.12838399f);
  float q = 1.09188706e-02f;
  q = fma(q, x2, 1.00537091e-01f);
  q = fma(q, x2, 4.77815539e-01f);
  q = fma(q, x2, 1.0f);
  const float r = zmlx_fast_div(x * p, q);
  return fabs(x) > 3.9f || fabs(r) > 1.0f ? copysign(1.0f, x) : r;
}}
""")

FAST_SPELLINGS: dict[str, Spelling] = {
    "exp": Spelling("zmlx_fast_exp({0})"),
    "sigmoid": Spelling("zmlx_fast_sigmoid({0})"),
    "tanh": Spelling("zmlx_fast_tanh({0})"),
    "erf": Spelling("zmlx_fast_erf({0})"),
}
"""The spellings a renderer uses instead under fast_math (every other op is spelled as usual)."""

_HELPER_DEPS = {"zmlx_logaddexp": ("zmlx_log1p",), "zmlx_fast_tanh": ("zmlx_fast_div",),
                "zmlx_fast_erf": ("zmlx_fast_div",)}


def helper_deps(name: str) -> tuple[str, ...]:
    """Helpers a helper calls (emitted before it)."""
    return _HELPER_DEPS.get(name, ())


HELPERS: dict[str, Helper] = {h.name: h for h in (ERF, ERFINV, SIGMOID, LOG1P, EXPM1, LOGADDEXP, FLOORDIV_INT,
                                                   MOD_INT, FMOD_FLOAT, FMAX, FMIN, POW_INT, FAST_DIV, FAST_EXP,
                                                   FAST_SIGMOID, FAST_TANH, FAST_ERF)}
