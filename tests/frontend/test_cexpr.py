"""The C-like expression parser of ZMLX strings: precedence, casts, literals, every helper,
raw-Metal detection and located syntax errors (exact text)."""
import math

import numpy as np
import pytest

from zmlx_dsl.frontend import cexpr
from zmlx_dsl.errors import ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError
from zmlx_dsl.ir import dtypes as dt
from zmlx_dsl.ir.interpret import interpret
from zmlx_dsl.ir.node import Node
from zmlx_dsl.ir.registry import OPS

X = Node("input", (), dt.float32, "x")
Y = Node("input", (), dt.float32, "y")
H = Node("input", (), dt.float16, "h")
TYPES = {"T": dt.float32}


def p(text, **env):
    return cexpr.parse(text, {"x": X, "y": Y, "h": H, **env}, types=TYPES)


def ev(text, x, y=None):
    """The expression evaluated by the IR interpreter on NumPy inputs."""
    v = p(text)
    if not isinstance(v, Node):
        return np.full(np.shape(x), v)
    return interpret([v], {"x": np.asarray(x, np.float32), "y": np.asarray(y if y is not None else x, np.float32)})[0]


@pytest.mark.parametrize("text,value", [
    ("1+2*3", 7), ("(1+2)*3", 9), ("10-4-3", 3), ("2*3-4/2", 4), ("-2*3", -6), ("1 < 2 == 1", True),
    ("1 || 0 && 0", True), ("(1 || 0) && 0", False), ("0 ? 1 : 0 ? 2 : 3", 3), ("1 ? 2 : 3 + 10", 2),
    ("7/2", 3), ("-7/2", -3), ("7/2.0", 3.5), ("!0", True), ("1e-8f", 1e-8), ("0.5f * 4", 2.0),
    ("2.5e1", 25.0), (".5", 0.5), ("INFINITY", math.inf), ("-INFINITY", -math.inf), ("M_PI_F", math.pi),
])
def test_constant_folding_follows_c_precedence(text, value):
    assert p(text) == value


def test_operators_build_registry_nodes_with_c_precedence():
    v = p("x + y * 2 > 1 ? x - y - 1 : -x")
    assert v.op == "where" and v.args[0].op == "gt"
    assert v.args[0].args[0].op == "add" and v.args[0].args[0].args[1].op == "mul"
    assert v.args[1].op == "sub" and v.args[1].args[0].op == "sub"   # left-associative
    assert v.args[2].op == "neg"
    np.testing.assert_allclose(ev("x + y * 2 > 1 ? x - y - 1 : -x", [1.0, -1.0], [1.0, 0.0]), [-1.0, 1.0])


def test_casts():
    one = p("(T)1")
    assert one.op == "const" and one.dtype == dt.float32 and one.arg == 1.0
    assert p("T(2)").arg == 2.0 and p("T(2)").dtype == dt.float32
    assert p("(float)h").op == "cast" and p("(float)h").dtype == dt.float32
    assert p("half(x)").dtype == dt.float16 and p("(bfloat16_t)x").dtype == dt.bfloat16
    assert p("(int)2.7").arg == 2 and p("(int)2.7").dtype == dt.int32
    assert p("2u").dtype == dt.uint32
    # a cast binds tighter than binary operators: ((T)1) - x
    assert p("(T)1 - x").op == "sub"


def test_literals_are_weak_like_mlx_scalars():
    assert p("h * 2.0f").dtype == dt.float16          # a float literal keeps the array's float type
    assert p("h * (T)2").dtype == dt.float32          # a cast to T is a float32 value


@pytest.mark.parametrize("prefix", ["", "metal::", "metal::precise::", "precise::", "fast::", "metal::fast::"])
def test_namespace_prefixes_are_dropped(prefix):
    assert p(f"{prefix}exp(x)").op == "exp"


XS = np.linspace(-2.5, 2.5, 11).astype(np.float32)


def _sig(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("text,ref", [
    ("kk_sigmoid(x)", _sig),
    ("kk_silu(x)", lambda x: x * _sig(x)),
    ("kk_gelu_tanh(x)", lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    ("clamp(x, -1.0f, 0.5f)", lambda x: np.clip(x, -1, 0.5)),
    ("saturate(x)", lambda x: np.clip(x, 0, 1)),
    ("select(x, -x, x > 0)", lambda x: np.where(x > 0, -x, x)),
    ("mix(x, 2.0f, 0.25f)", lambda x: x + (2 - x) * 0.25),
    ("fma(x, x, 1.0f)", lambda x: x * x + 1),
    ("max(x, 0.5f)", lambda x: np.maximum(x, 0.5)), ("min(x, 0.5f)", lambda x: np.minimum(x, 0.5)),
    ("fmax(x, 0.5f)", lambda x: np.maximum(x, 0.5)), ("fmin(x, 0.5f)", lambda x: np.minimum(x, 0.5)),
    ("fabs(x)", np.abs), ("abs(x)", np.abs), ("exp(x)", np.exp), ("log(x * x + 1)", lambda x: np.log(x * x + 1)),
    ("sqrt(x * x)", np.abs), ("rsqrt(x * x + 1)", lambda x: 1 / np.sqrt(x * x + 1)), ("tanh(x)", np.tanh),
    ("pow(x * x, 1.5f)", lambda x: (x * x) ** 1.5), ("powr(x * x, 0.5f)", np.abs),
    ("rint(x)", np.round), ("floor(x)", np.floor), ("ceil(x)", np.ceil), ("sign(x)", np.sign),
    ("atan2(x, 2.0f)", lambda x: np.arctan2(x, 2)), ("sigmoid(x)", _sig), ("erf(x)", np.vectorize(math.erf)),
    ("log1p(x * x)", lambda x: np.log1p(x * x)), ("expm1(x)", np.expm1),
    ("sin(x) + cos(x)", lambda x: np.sin(x) + np.cos(x)),
])
def test_helpers_compute_what_c_and_metal_do(text, ref):
    np.testing.assert_allclose(ev(text, XS), ref(XS.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_every_listed_function_resolves_to_a_node():
    for name in cexpr.function_names():
        arity = cexpr.COMPOSITE[name][0] if name in cexpr.COMPOSITE else OPS[cexpr.resolve(name)].arity
        args = ", ".join(["x", "y", "x > y"][:arity]) if name in ("select",) else ", ".join(["x"] * arity)
        assert isinstance(p(f"{name}({args})"), Node), name


def test_prelude_declarations_bind_names():
    env = cexpr.parse_prelude("T s = kk_sigmoid(x);\nconst float t = s * 2; auto u = t + s;",
                              {"x": X}, types=TYPES)
    assert env["s"].op == "sigmoid" and env["t"].op == "mul" and env["u"].op == "add"
    assert cexpr.parse_prelude("", {"x": X}) == {"x": X}


def _err(text, kind=ZMLXSyntaxError, prelude=False, header=""):
    with pytest.raises(kind) as info:
        if prelude:
            cexpr.parse_prelude(text, {"x": X}, types=TYPES, header=header)
        else:
            cexpr.parse(text, {"x": X}, types=TYPES, header=header)
    return str(info.value)


def test_syntax_errors_are_located_exactly():
    assert _err("x * (1 +") == ("<expr>:1:9: expected an expression, found the end of the expression\n"
                                "    x * (1 +\n            ^")
    assert _err("x +* 2") == "<expr>:1:4: expected an expression, found '*'\n    x +* 2\n       ^"
    assert _err("(x + 1") == ("<expr>:1:7: expected ')' to close the '(' at column 1, found the end of the "
                              "expression\n    (x + 1\n          ^")
    assert _err("x 1") == "<expr>:1:3: unexpected '1' after the end of the expression\n    x 1\n      ^"
    assert _err("x @ 2") == "<expr>:1:3: unexpected character '@'\n    x @ 2\n      ^"
    assert _err("x +\n  * 2") == "<expr>:2:3: expected an expression, found '*'\n      * 2\n      ^"
    assert _err("T s = x", prelude=True) == ("<prelude>:1:8: expected ';' after the declaration of 's', found "
                                                "the end of the text\n    T s = x\n           ^")


def test_name_and_arity_errors_are_located():
    assert _err("y + 1", ZMLXNameError) == ("<expr>:1:1: unknown name 'y' (names available here: x)\n"
                                            "    y + 1\n    ^")
    msg = _err("2 * foo(x)", ZMLXNameError)
    assert msg.startswith("<expr>:1:5: unknown function 'foo'; the expression subset knows abs, ")
    assert msg.endswith("\n    2 * foo(x)\n        ^")
    assert _err("exp(x, 2)", ZMLXTypeError) == "<expr>:1:1: exp() takes 1 argument (2 given)\n    exp(x, 2)\n    ^"


@pytest.mark.parametrize("text,col,what", [
    ("out[elem] = x;", 4, "'[' (indexing)"), ("x & 1", 3, "'&' (a bitwise operator)"),
    ("x << 2", 3, "'<<' (a shift)"), ("x % 2", 3, "'%' (the remainder operator)"),
    ("v.x", 2, "'.' (member access)"), ("x; y", 2, "';' (a statement)"),
])
def test_metal_only_text_is_detected(text, col, what):
    with pytest.raises(cexpr.RawMetal) as info:
        cexpr.parse(text, {"x": X}, types=TYPES)
    assert info.value.loc.col == col and info.value.what == what
    assert "runs on the 'metal' and 'metal-sim' backends only" in str(info.value)


def test_header_functions_are_raw_metal_and_prelude_statements_too():
    with pytest.raises(cexpr.RawMetal):
        cexpr.parse("my_fn(x)", {"x": X}, header="inline float my_fn(float v) { return v; }")
    with pytest.raises(cexpr.RawMetal):
        cexpr.parse_prelude("if (x > 0) { x = 1; }", {"x": X})
    with pytest.raises(cexpr.RawMetal):
        cexpr.parse_prelude("x = 2;", {"x": X})


# ---- pathological strings: each a located ZMLX error, never Python's or MLX's own -----------------

def _api_err(expr, kind, x=None):
    import mlx.core as mx
    from zmlx_dsl import api
    with pytest.raises(kind) as info:
        k = api.elementwise(expr, name="odd", backend="mlx")
        mx.eval(k(mx.ones((4,)) if x is None else x))
    assert info.value.__cause__ is None
    return str(info.value)


def test_300_nested_parentheses():
    text = "(" * 300 + "x" + ")" * 300
    shown = "..." + "(" * 160 + "..."
    assert _api_err(text, ZMLXSyntaxError) == (
        "<odd expr>:1:101: the expression nests more than 100 levels deep (parentheses, calls and prefix "
        "operators); name its parts in a prelude (T a = ...;) or simplify it\n"
        f"    {shown}\n    {' ' * 83}^")
    assert ev("(" * 99 + "x" + ")" * 99, [2.0]).tolist() == [2.0]  # 99 levels parse
    assert ev("-(" * 40 + "x" + ")" * 40, [2.0]).tolist() == [2.0]


def test_a_5000_digit_literal():
    from zmlx_dsl.errors import ZMLXValueError
    msg = _api_err("x + " + "9" * 5000, ZMLXValueError)
    assert msg.split("\n")[0] == ("<odd expr>:1:5: the integer literal of 5000 digits is too large for any integer "
                                  "type (the largest, 64 bits, holds 18446744073709551615); write a floating-point "
                                  "literal (1.5e21f) instead")
    assert msg.split("\n")[1:] == ["    x + " + "9" * 156 + "...", "        ^"]
    assert ev("x + " + "9" * 5000 + ".0", [1.0]).tolist() == [math.inf]  # a float literal: inf, as MLX's float32


def test_integer_literals_past_64_bits():
    from zmlx_dsl.errors import ZMLXValueError
    for text, col in [("pow(x, 1180591620717411303424)", 8), ("x > 0 ? 1180591620717411303424 : x", 9),
                      ("clamp(x, 0, 1180591620717411303424)", 13)]:
        assert _api_err(text, ZMLXValueError) == (
            f"<odd expr>:1:{col}: the integer literal 1180591620717411303424 is too large for any integer type "
            "(the largest, 64 bits, holds 18446744073709551615); write a floating-point literal (1.5e21f) instead"
            f"\n    {text}\n    {' ' * (col - 1)}^")
    assert ev("x + 18446744073709551615.0", [0.0]).tolist() == [float(np.float32(2.0 ** 64))]


def test_constants_that_do_not_fit_their_type():
    import mlx.core as mx
    from zmlx_dsl.errors import ZMLXValueError
    xi = mx.ones((4,), dtype=mx.int32)
    assert _api_err("x + (int)1e21", ZMLXValueError) == (
        "<odd expr>:1:5: cannot convert 1e+21 to int32: Converting 1000000000000000000000 to int32 would result "
        "in overflow.\n    x + (int)1e21\n        ^")
    assert _api_err("x > 0 ? 4294967296 : x", ZMLXValueError, xi) == (
        "<odd expr>:1:7: '?:': Converting 4294967296 to int32 would result in overflow.\n"
        "    x > 0 ? 4294967296 : x\n          ^")
    assert _api_err("clamp(x, 0, 4294967296)", ZMLXTypeError, xi) == (
        "<odd expr>:1:1: 'clamp': Converting 4294967296 to int32 would result in overflow.\n"
        "    clamp(x, 0, 4294967296)\n    ^")
    assert _api_err("x + 4294967296u", ZMLXValueError).startswith(
        "<odd expr>:1:5: the literal 4294967296u: ")


def test_integer_casts_of_constants_wrap_as_in_c():
    assert p("(uint)(-1)").arg == 4294967295 and p("(uint)(-1)").dtype == dt.uint32
    assert p("(int)4294967295").arg == -1 and p("(long)(-1)").arg == -1
    assert p("int(2147483648)").arg == -2147483648
