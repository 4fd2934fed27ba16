"""C-like expressions of ZMLX strings (an MSL expression subset) -> IR.

Grammar: C precedence for `?: || && == != < <= > >= + - * /`, unary `- + !`, casts `(T)x` and
`T(x)`, literals with suffixes (`1e-8f`, `2u`), named constants (`INFINITY`, `M_PI_F`), and calls
resolved through the op registry (`metal::`, `precise::`, `fast::` prefixes are dropped) plus a
small alias table for C and MSL spellings (`fmax`, `clamp`, `select`, `kk_silu` …). A prelude is
a list of declarations `T s = kk_sigmoid(x);`.

Text using Metal constructs outside the subset (statements, `;`, braces, indexing, members,
bitwise operators, functions from a user header) raises `RawMetal`: the API passes such text
to Metal only. Malformed expressions raise `ZMLXSyntaxError` with the column marked.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Union

import numpy as np

from ..ir import dtypes as dt
from ..ir.build import apply, cast, const
from ..ir.node import Node
from ..ir.registry import BY_PY_NAME, OPS
from ..errors import Location, ZMLXError, ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError, ZMLXValueError

Value = Union[Node, bool, int, float]


class RawMetal(ZMLXSyntaxError):
    """The text is Metal code outside the expression subset; it can run on Metal backends only."""


@dataclass(frozen=True)
class Token:
    kind: str   # "num", "name", "op", "end"
    text: str
    pos: int


_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fFhHuUlL]*)
  | (?P<name>[A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)*)
  | (?P<op>\+\+|--|->|<<=?|>>=?|[-+*/%&|^<>=!]=|&&|\|\||[-+*/%<>!?:(),;{}\[\].=&|^~\#])
""", re.VERBOSE | re.DOTALL)

# Tokens that only Metal statements or operators outside the subset use.
_METAL_ONLY = {";": "a statement", "{": "a block", "}": "a block", "[": "indexing", "]": "indexing",
               ".": "member access", "->": "member access", "=": "an assignment", "++": "an increment",
               "--": "a decrement", "&": "a bitwise operator", "|": "a bitwise operator",
               "^": "a bitwise operator", "~": "a bitwise operator", "<<": "a shift", ">>": "a shift",
               "%": "the remainder operator", "#": "a preprocessor directive"}
_METAL_ONLY.update({op: "an assignment" for op in ("+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=")})

# Binary operators: precedence (higher binds tighter) and registry op.
_BINARY = {"||": (1, "logical_or"), "&&": (2, "logical_and"), "==": (3, "eq"), "!=": (3, "ne"),
           "<": (4, "lt"), "<=": (4, "le"), ">": (4, "gt"), ">=": (4, "ge"),
           "+": (5, "add"), "-": (5, "sub"), "*": (6, "mul"), "/": (6, "div")}

# Scalar type names; "T" (the compute type) is supplied by the caller.
TYPES = {"float": dt.float32, "float32_t": dt.float32, "half": dt.float16, "float16_t": dt.float16,
         "bfloat": dt.bfloat16, "bfloat16_t": dt.bfloat16, "int": dt.int32, "int32_t": dt.int32,
         "uint": dt.uint32, "uint32_t": dt.uint32, "unsigned": dt.uint32, "int64_t": dt.int64,
         "long": dt.int64, "bool": dt.bool_}

CONSTANTS = {"INFINITY": math.inf, "HUGE_VALF": math.inf, "MAXFLOAT": 3.4028234663852886e38,
             "FLT_MAX": 3.4028234663852886e38, "FLT_MIN": 1.1754943508222875e-38,
             "FLT_EPSILON": 1.1920928955078125e-07, "NAN": math.nan, "M_PI_F": math.pi, "M_PI": math.pi,
             "M_E_F": math.e, "M_LN2_F": math.log(2.0), "M_LN10_F": math.log(10.0),
             "M_SQRT2_F": math.sqrt(2.0), "M_2_SQRTPI_F": 2.0 / math.sqrt(math.pi),
             "M_1_PI_F": 1.0 / math.pi, "M_PI_2_F": math.pi / 2, "true": True, "false": False}

MAX_DEPTH = 100  # nesting levels of one expression (Python's own parser allows 200 parentheses)

_PREFIXES = ("metal::", "precise::", "fast::", "native::", "std::")

# C/MSL spellings whose registry name differs (max/min are binary in C, row reductions in Python).
_ALIASES = {"max": "maximum", "min": "minimum", "fmax": "maximum", "fmin": "minimum", "fabs": "abs",
            "powr": "power", "pow": "power", "rint": "round", "atan2": "arctan2"}

_GELU_K0, _GELU_K1 = math.sqrt(2.0 / math.pi), 0.044715


def _kk_silu(x: Value) -> Value:
    return _op("mul", x, _op("sigmoid", x))


def _kk_gelu_tanh(x: Value) -> Value:
    inner = _op("mul", _GELU_K0, _op("add", x, _op("mul", _GELU_K1, _op("mul", x, _op("mul", x, x)))))
    return _op("mul", _op("mul", 0.5, x), _op("add", 1.0, _op("tanh", inner)))


# Functions built from registry ops: name -> (arity, builder).
COMPOSITE: dict[str, tuple[int, Callable[..., Value]]] = {
    "kk_sigmoid": (1, lambda x: _op("sigmoid", x)),
    "kk_silu": (1, _kk_silu),
    "kk_gelu_tanh": (1, _kk_gelu_tanh),
    "clamp": (3, lambda x, lo, hi: _op("minimum", _op("maximum", x, lo), hi)),
    "saturate": (1, lambda x: _op("minimum", _op("maximum", x, 0.0), 1.0)),
    "select": (3, lambda a, b, c: _select(c, b, a)),          # MSL: select(a, b, c) = c ? b : a
    "mix": (3, lambda a, b, t: _op("add", a, _op("mul", _op("sub", b, a), t))),
    "fma": (3, lambda a, b, c: _op("add", _op("mul", a, b), c)),
}


def function_names() -> list[str]:
    """Every function name the subset accepts (for error messages and documentation)."""
    return sorted({n for n in BY_PY_NAME if resolve(n)} | set(_ALIASES) | set(COMPOSITE))


# registry ops that C writes as operators, not calls (their names are not functions in a string)
_C_OPERATORS = frozenset({"add", "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
                          "logical_or", "logical_not", "where", "neg", "square", "reciprocal", "stop_gradient"})


def resolve(name: str) -> Optional[str]:
    """The registry op of a call: aliases first; registry names of C operators and of row
    reductions are not functions in C."""
    if name in _ALIASES:
        return _ALIASES[name]
    op = BY_PY_NAME.get(name)
    if op is None or "." in name or OPS[op].reduction or op in _C_OPERATORS:
        return None
    return op


# ---- typed construction: Python scalars stay weak (as MLX treats literals) -------------------

def _op(name: str, *args: Value) -> Value:
    if any(isinstance(a, Node) for a in args):
        return apply(name, *args)
    with np.errstate(all="ignore"):
        value = OPS[name].np(*[np.float64(a) if not isinstance(a, bool) else a for a in args])
    value = value.item() if hasattr(value, "item") else value
    if all(isinstance(a, int) for a in args) and not isinstance(value, bool) and name != "div":
        return int(value)
    return value


def _truthy(v: Value) -> Value:
    if isinstance(v, Node):
        return v if v.dtype == dt.bool_ else apply("ne", v, 0)
    return bool(v)


def _select(c: Value, a: Value, b: Value) -> Value:
    c = _truthy(c)
    if not isinstance(c, Node):
        return a if c else b
    if not isinstance(a, Node) and not isinstance(b, Node):
        a = const(a, dt.weak_kind(a))
    return apply("where", c, a, b)


def _cast(v: Value, d: dt.DType) -> Value:
    if isinstance(v, Node):
        return cast(v, d)
    return const(v, d)


def _c_div(a: Value, b: Value) -> Value:
    """C division: integer operands truncate toward zero."""
    if not all(v.dtype.is_int if isinstance(v, Node) else type(v) is int for v in (a, b)):
        return _op("div", a, b)
    nodes = [v.dtype for v in (a, b) if isinstance(v, Node)]
    if not nodes:
        if b == 0:
            raise ZeroDivisionError
        return int(a / b)
    return cast(apply("div", a, b), nodes[0] if len(nodes) == 1 else dt.promote(*nodes))


# ---- the parser -------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str, env: Mapping[str, Value], types: Mapping[str, dt.DType],
                 file: str, header: str) -> None:
        self.text = text
        self.env = dict(env)
        self.types = {**TYPES, **types}
        self.file = file
        self.header = header
        self.tokens = self._tokenize()
        self.i = 0
        self.depth = 0  # nesting of expressions being parsed (parentheses, calls, prefix operators)

    # errors
    def loc(self, pos: int) -> Location:
        line = self.text.count("\n", 0, pos) + 1
        start = self.text.rfind("\n", 0, pos) + 1
        end = self.text.find("\n", pos)
        return Location(self.file, line, pos - start + 1, self.text[start: end if end >= 0 else len(self.text)])

    def error(self, message: str, pos: int, kind: type = ZMLXSyntaxError) -> Exception:
        return kind(message, self.loc(pos))

    def raw(self, what: str, pos: int) -> RawMetal:
        e = RawMetal(f"{what} is Metal code outside the portable expression subset; it runs on the "
                     "'metal' and 'metal-sim' backends only", self.loc(pos))
        e.what = what
        return e

    def scan_metal(self, allowed: tuple[str, ...] = ()) -> None:
        """Raise RawMetal at the first token only Metal code uses (before any name is resolved)."""
        for t in self.tokens:
            if t.kind == "op" and t.text in _METAL_ONLY and t.text not in allowed:
                raise self.raw(f"'{t.text}' ({_METAL_ONLY[t.text]})", t.pos)

    def _tokenize(self) -> list[Token]:
        out, pos = [], 0
        while pos < len(self.text):
            m = _TOKEN.match(self.text, pos)
            if m is None:
                raise self.error(f"unexpected character {self.text[pos]!r}", pos)
            kind = m.lastgroup
            if kind != "space":
                text = re.sub(r"\s+", "", m.group()) if kind == "name" else m.group()
                out.append(Token(kind, text, pos))
            pos = m.end()
        out.append(Token("end", "", len(self.text.rstrip())))
        return out

    # token helpers
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def next(self) -> Token:
        t = self.peek()
        self.i += 1
        return t

    def expect(self, text: str, opened: Optional[Token] = None) -> Token:
        t = self.peek()
        if t.text != text or t.kind != "op":
            found = "the end of the expression" if t.kind == "end" else repr(t.text)
            extra = f" to close the '(' at column {self.loc(opened.pos).col}" if opened else ""
            raise self.error(f"expected '{text}'{extra}, found {found}", t.pos)
        return self.next()

    # grammar
    def nested(self, parse: Callable[[], Value]) -> Value:
        """parse() one level deeper; past MAX_DEPTH levels a located error (not Python's RecursionError)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression nests more than {MAX_DEPTH} levels deep (parentheses, calls and "
                             "prefix operators); name its parts in a prelude (T a = ...;) or simplify it",
                             self.peek().pos)
        try:
            return parse()
        finally:
            self.depth -= 1

    def expression(self) -> Value:
        return self.nested(self._expression)

    def _expression(self) -> Value:
        cond = self.binary(1)
        t = self.peek()
        if t.text == "?" and t.kind == "op":
            self.next()
            a = self.expression()
            self.expect(":")
            b = self.expression()
            try:
                return _select(cond, a, b)
            except (TypeError, ValueError, OverflowError) as e:
                raise self.error(f"'?:': {e}", t.pos, ZMLXValueError) from None
        return cond

    def binary(self, level: int) -> Value:
        left = self.unary()
        while True:
            t = self.peek()
            spec = _BINARY.get(t.text) if t.kind == "op" else None
            if spec is None or spec[0] < level:
                return left
            self.next()
            right = self.binary(spec[0] + 1)
            left = self.combine(spec[1], left, right, t)

    def combine(self, op: str, a: Value, b: Value, t: Token) -> Value:
        try:
            if op == "div":
                return _c_div(a, b)
            if op in ("logical_and", "logical_or"):
                return _op(op, _truthy(a), _truthy(b))
            return _op(op, a, b)
        except ZeroDivisionError:
            raise self.error("integer division by zero in a constant expression", t.pos) from None
        except (TypeError, ValueError) as e:
            raise self.error(f"'{t.text}': {e}", t.pos, ZMLXTypeError) from None

    def unary(self) -> Value:
        t = self.peek()
        if t.kind == "op" and t.text in ("-", "+", "!"):
            self.next()
            v = self.nested(self.unary)
            if t.text == "-":
                return _op("neg", v) if isinstance(v, Node) else -v
            if t.text == "!":
                return _op("logical_not", _truthy(v))
            return v
        if t.kind == "op" and t.text == "(" and self.peek(1).text in self.types and self.peek(2).text == ")":
            target = self.types[self.peek(1).text]
            self.i += 3
            return self.cast(self.nested(self.unary), target, t)
        return self.primary()

    def cast(self, v: Value, d: dt.DType, t: Token) -> Value:
        """(T)v: a constant converts as C converts it (an integer wraps into an integer type); a
        constant no value of the type holds is a located error."""
        try:
            if d.is_int and type(v) is int:  # modulo 2**bits, into the type's range
                lo, _ = d.limits
                v = (v - lo) % (1 << d.bits) + lo
            return _cast(v, d)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error(f"cannot convert {v!r} to {d.name}: {e}", t.pos, ZMLXValueError) from None

    def primary(self) -> Value:
        t = self.next()
        if t.kind == "num":
            return self.number(t)
        if t.kind == "name":
            if self.peek().text == "(":
                return self.call(t)
            return self.name(t)
        if t.text == "(":
            v = self.expression()
            self.expect(")", t)
            return v
        found = "the end of the expression" if t.kind == "end" else repr(t.text)
        raise self.error(f"expected an expression, found {found}", t.pos)

    def number(self, t: Token) -> Value:
        body = t.text.rstrip("fFhHuUlL")
        suffix = t.text[len(body):].lower()
        is_float = any(c in body for c in ".eE") or "f" in suffix or "h" in suffix
        if is_float:
            return float(body)  # beyond the type it takes: inf, as MLX's conversion gives
        value = int(body) if len(body.lstrip("0")) <= 20 else None  # (Python refuses 4300+ digit strings)
        if value is None or value >= 1 << 64:
            what = t.text if len(t.text) <= 30 else f"of {len(body)} digits"
            raise self.error(f"the integer literal {what} is too large for any integer type (the largest, 64 "
                             "bits, holds 18446744073709551615); write a floating-point literal (1.5e21f) "
                             "instead", t.pos, ZMLXValueError)
        if "u" in suffix:
            try:
                return const(value, dt.uint32)
            except (ValueError, OverflowError) as e:
                raise self.error(f"the literal {t.text}: {e}", t.pos, ZMLXValueError) from None
        return value

    def name(self, t: Token) -> Value:
        name = _strip(t.text)
        if name in self.env:
            return self.env[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        known = ", ".join(sorted(self.env)) or "none"
        raise self.error(f"unknown name '{name}' (names available here: {known})", t.pos, ZMLXNameError)

    def call(self, t: Token) -> Value:
        name = _strip(t.text)
        opened = self.next()
        args: list[Value] = []
        if self.peek().text != ")":
            args.append(self.expression())
            while self.peek().text == ",":
                self.next()
                args.append(self.expression())
        self.expect(")", opened)
        if name in self.types:
            if len(args) != 1:
                raise self.error(f"the cast {name}(...) takes one value ({len(args)} given)", t.pos, ZMLXTypeError)
            return self.cast(args[0], self.types[name], t)
        if name in COMPOSITE:
            arity, build = COMPOSITE[name]
            self.arity(name, arity, args, t)
            try:
                return build(*args)
            except (TypeError, ValueError, OverflowError) as e:
                raise self.error(f"'{name}': {e}", t.pos, ZMLXTypeError) from None
        op = resolve(name)
        if op is None:
            if re.search(rf"\b{re.escape(name)}\s*\(", self.header):
                raise self.raw(f"A call of '{name}' (defined in the header)", t.pos)
            raise self.error(f"unknown function '{name}'; the expression subset knows "
                             f"{', '.join(function_names())}", t.pos, ZMLXNameError)
        self.arity(name, OPS[op].arity, args, t)
        if op == "where":
            try:
                return _select(*args)
            except (TypeError, ValueError, OverflowError) as e:
                raise self.error(f"'{name}': {e}", t.pos, ZMLXTypeError) from None
        if len(args) == 2:
            return self.combine(op, *args, t)
        try:
            return _op(op, *args)
        except (TypeError, ValueError, OverflowError) as e:
            raise self.error(f"'{name}': {e}", t.pos, ZMLXTypeError) from None

    def arity(self, name: str, n: int, args: list, t: Token) -> None:
        if len(args) != n:
            raise self.error(f"{name}() takes {n} argument{'s' * (n != 1)} ({len(args)} given)",
                             t.pos, ZMLXTypeError)

    def finish(self) -> None:
        t = self.peek()
        if t.kind != "end":
            raise self.error(f"unexpected {t.text!r} after the end of the expression", t.pos)

    def declaration(self) -> None:
        """`[const] TYPE name = expr;`"""
        start = self.peek()
        if start.text == "const":
            self.next()
        tt = self.next()
        if tt.kind != "name" or (tt.text not in self.types and tt.text != "auto"):
            raise self.raw(f"The statement starting with {start.text!r} (not a declaration 'T name = expr;')",
                           start.pos)
        var = self.next()
        if var.kind != "name":
            raise self.error(f"expected a variable name after '{tt.text}', found {var.text!r}", var.pos)
        eq = self.next()
        if eq.text != "=":
            raise self.raw(f"The declaration of '{var.text}' without '= value'", eq.pos)
        value = self.expression()
        end = self.next()
        if end.text != ";":
            found = "the end of the text" if end.kind == "end" else repr(end.text)
            raise self.error(f"expected ';' after the declaration of '{var.text}', found {found}", end.pos)
        self.env[var.text] = value if tt.text == "auto" else _cast(value, self.types[tt.text])


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    return name


def parse(text: str, env: Mapping[str, Value], *, types: Optional[Mapping[str, dt.DType]] = None,
          file: str = "<expr>", header: str = "") -> Value:
    """The IR value (or Python constant) of one expression over the names in env."""
    if not text.strip():
        raise ZMLXSyntaxError("empty expression", Location(file, 1, 1, text))
    p = _Parser(text, env, types or {}, file, header)
    p.scan_metal()
    v = p.expression()
    p.finish()
    return v


def parse_prelude(text: str, env: Mapping[str, Value], *, types: Optional[Mapping[str, dt.DType]] = None,
                  file: str = "<prelude>", header: str = "") -> dict[str, Value]:
    """env extended by the declarations `T name = expr;` of a prelude."""
    p = _Parser(text, env, types or {}, file, header)
    p.scan_metal(allowed=(";", "="))
    while p.peek().kind != "end":
        p.declaration()
    return p.env
