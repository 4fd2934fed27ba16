"""Python function -> IR: the kernel language is a subset of Python, parsed from the AST.

Values during parsing are IR nodes (arrays), `Weak` nodes (Python scalars passed at call time,
typed as MLX types Python scalars), plain Python constants (folded at compile time), tuples, and
resolved Python objects (modules, functions, dtypes). `if` on a non-constant condition runs both
branches and merges them with `where`; `for` over a constant `range` is unrolled; helper functions
are inlined.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import math
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np

from ..ir import dtypes as dt
from ..ir.passes import per_row
from ..ir.build import apply, cast, const
from ..ir.node import Node
from ..ir.registry import BY_PY_NAME, CONSTANTS, OPS
from ..errors import Location, ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError, ZMLXValueError


@dataclass(frozen=True)
class Weak:
    """A runtime Python scalar (or a value computed only from such): typed weakly, as MLX does."""

    node: Node


@dataclass(frozen=True)
class Undefined:
    """A variable assigned on only one side of an `if`: an error if it is read afterwards."""

    name: str
    where: str


@dataclass
class ParsedBody:
    """What parsing produced: the outputs, whether the body returned a tuple, and the globals and
    closure values it baked in (re-checked on each call so a change recompiles)."""

    outputs: list
    is_tuple: bool
    baked: list = field(default_factory=list)


_MODULES = (mx, math, np)
_SOURCE_CACHE: dict = {}


def _intrinsics() -> dict[int, str]:
    """id(python function object) -> registry op name, for mx.*, math.*, np.* and builtins."""
    table: dict[int, str] = {}
    for py_name, op in BY_PY_NAME.items():
        base = py_name.split(".")[-1]
        for mod in _MODULES:
            obj = getattr(mod, base, None)
            if callable(obj) and not isinstance(obj, type):
                table.setdefault(id(obj), op)
    for name, op in (("abs", "abs"), ("pow", "power"), ("round", "round")):
        table[id(getattr(builtins, name))] = op
    return table


_INTRINSIC = _intrinsics()
_SPECIAL = {  # python callables handled by the frontend itself, by id
    id(builtins.min): "min", id(builtins.max): "max", id(mx.clip): "clip", id(np.clip): "clip",
    id(mx.mean): "mean", id(np.mean): "mean", id(mx.logsumexp): "logsumexp", id(range): "range",
    id(mx.sum): "sum", id(np.sum): "sum", id(mx.max): "max", id(np.max): "max", id(mx.min): "min",
    id(np.min): "min", id(mx.where): "where", id(np.where): "where", id(builtins.float): "float",
    id(builtins.int): "int", id(builtins.bool): "bool", id(mx.var): "var", id(mx.array): "array",
    id(mx.softmax): "softmax",
}
_METHODS = {"astype", "sum", "max", "min", "mean", "logsumexp", "var"}
_MX_DTYPES = {d.mx: d for d in dt.ALL}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.FloorDiv: "floordiv",
           ast.Mod: "mod", ast.Pow: "power"}
_CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
_PYOPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
          "power": lambda a, b: a ** b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
          "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
          "ge": lambda a, b: a >= b}
_UNSUPPORTED_STMT = {
    ast.While: "'while' loops are not supported; use 'for i in range(N)' with a constant N",
    ast.Try: "'try' is not supported in kernels",
    ast.With: "'with' is not supported in kernels",
    ast.FunctionDef: "nested function definitions are not supported; define the helper at module level",
    ast.AsyncFunctionDef: "nested function definitions are not supported; define the helper at module level",
    ast.ClassDef: "class definitions are not supported in kernels",
    ast.Global: "'global' is not supported; kernels cannot write module state",
    ast.Nonlocal: "'nonlocal' is not supported; kernels cannot write enclosing state",
    ast.Delete: "'del' is not supported in kernels",
    ast.Raise: "'raise' is not supported in kernels",
    ast.Assert: "'assert' is not supported in kernels",
    ast.Import: "imports are not supported inside kernels; import at module level",
    ast.ImportFrom: "imports are not supported inside kernels; import at module level",
    ast.Break: "'break' is not supported; loops are unrolled over a constant range",
    ast.Continue: "'continue' is not supported; loops are unrolled over a constant range",
}
_UNSUPPORTED_EXPR = {
    ast.Lambda: "lambda expressions are not supported; define a helper function at module level",
    ast.ListComp: "list comprehensions are not supported in kernels",
    ast.SetComp: "set comprehensions are not supported in kernels",
    ast.DictComp: "dict comprehensions are not supported in kernels",
    ast.GeneratorExp: "generator expressions are not supported in kernels",
    ast.List: "lists are not supported in kernels; use a tuple of values",
    ast.Dict: "dicts are not supported in kernels",
    ast.Set: "sets are not supported in kernels",
    ast.JoinedStr: "strings are not supported in kernels",
    ast.NamedExpr: "':=' is not supported in kernels; use an assignment",
    ast.Await: "'await' is not supported in kernels",
    ast.Yield: "'yield' is not supported in kernels",
    ast.YieldFrom: "'yield' is not supported in kernels",
    ast.Starred: "'*' unpacking is not supported in kernels",
}


class _Source:
    """A function's parsed source with the offsets needed to report original file positions."""

    def __init__(self, fn: Callable) -> None:
        lines, first, tree = _function_lines(fn)
        self.indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
        self.lines = lines
        self.first = first
        self.file = inspect.getsourcefile(fn) or "<unknown>"
        fdefs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if not fdefs:
            raise ZMLXSyntaxError(f"{fn!r} is not a 'def' function (lambdas are not supported)")
        self.fdef = fdefs[0]
        self.fn = fn

    def loc(self, node: ast.AST) -> Location:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return Location(self.file, self.first + line - 1, col + self.indent + 1, text.rstrip("\n"))


def _function_lines(fn: Callable) -> tuple[list[str], int, ast.Module]:
    """The function's source lines, first line number and parsed (dedented) tree. Fast path: the
    lines from the code object's first line to the first line indented no deeper than it
    (inspect's tokenizer-based search is the fallback, e.g. for dedented string literals)."""
    code = getattr(fn, "__code__", None)
    file = inspect.getsourcefile(fn) if code is not None else None
    if file:
        all_lines = linecache.getlines(file)
        start = code.co_firstlineno - 1
        if 0 <= start < len(all_lines):
            head = all_lines[start]
            indent = len(head) - len(head.lstrip())
            end = start + 1
            while end < len(all_lines):
                line = all_lines[end]
                if line.strip() and len(line) - len(line.lstrip()) <= indent and not line.lstrip().startswith((")", "]")):
                    break
                end += 1
            lines = all_lines[start:end]
            try:
                return lines, start + 1, ast.parse(textwrap.dedent("".join(lines)))
            except SyntaxError:
                pass
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise ZMLXSyntaxError(f"cannot read the source of {getattr(fn, '__qualname__', fn)!r}: {e}; "
                              "kernels must be defined in a file (not typed into a REPL or exec'd)") from None
    return lines, first, ast.parse(textwrap.dedent("".join(lines)))


def source_of(fn: Callable) -> _Source:
    src = _SOURCE_CACHE.get(fn)
    if src is None:
        src = _SOURCE_CACHE[fn] = _Source(fn)
    return src


def _divide(total: Node, count: Node) -> Node:
    """total / count for a row mean. A half-precision total is scaled by 1/count computed in float32
    and rounded to its type, as MLX's mean does; promoting the row length itself to float16
    overflows past 65504 (and bfloat16 rounds most lengths). The rounding sits on the row-length
    path only, so gradients through `total` are unaffected."""
    if total.dtype.is_float and total.dtype.bits < 32:
        inverse = apply("div", const(1.0, dt.float32), cast(count, dt.float32))
        return apply("mul", total, cast(inverse, total.dtype))
    return apply("div", total, count)


class Parser:
    """Parses one kernel body (and the helpers it calls) into IR."""

    def __init__(self, mode: str) -> None:
        self.mode = mode          # "elementwise" or "row"
        self.baked: list = []     # (getter, value) of globals/closure values read
        self.stack: list = []     # helper functions being inlined (recursion check)
        self.branch_depth = 0     # > 0 inside a data-dependent `if`
        self.callers: list = []   # the current env of each frame that called into a helper
        self.stale: set = set()   # ids of arrays a helper updated in place while a caller held them
        self.src: _Source

    # ---- entry -----------------------------------------------------------------------------
    def parse(self, fn: Callable, args: Sequence[Any], kwargs: Optional[dict] = None) -> ParsedBody:
        """Parse fn applied to positional values and keyword constants (baked into the IR)."""
        result = self.inline(fn, list(args), dict(kwargs or {}), None)
        outs = list(result) if isinstance(result, tuple) else [result]
        return ParsedBody(outs, isinstance(result, tuple), self.baked)

    def inline(self, fn: Callable, args: list, kwargs: dict, call_node: Optional[ast.AST]) -> Any:
        if fn in self.stack:
            chain = " -> ".join(f.__name__ for f in self.stack + [fn])
            raise ZMLXSyntaxError(f"recursive call of '{fn.__name__}' ({chain}); kernels are inlined "
                                  "and cannot recurse", self.src.loc(call_node) if call_node else None)
        outer = getattr(self, "src", None)
        self.src = source_of(fn)
        self.stack.append(fn)
        try:
            env = self._bind(fn, args, kwargs, call_node, outer)
            returns: list = []
            self.block(self.src.fdef.body, env, None, returns)
            return self._merge_returns(returns)
        finally:
            self.stack.pop()
            if outer is not None:
                self.src = outer

    def _bind(self, fn, args, kwargs, call_node, outer) -> dict:
        fdef = self.src.fdef
        a = fdef.args
        if a.vararg or a.kwarg:
            raise ZMLXSyntaxError("*args and **kwargs are not supported in kernels", self.src.loc(fdef))
        names = [p.arg for p in a.posonlyargs + a.args]
        defaults = dict(zip(names[len(names) - len(a.defaults):], fn.__defaults__ or ()))
        kwdefaults = fn.__kwdefaults__ or {}
        env: dict = {}
        if len(args) > len(names):
            where = outer.loc(call_node) if call_node is not None and outer else None
            raise ZMLXTypeError(f"{fn.__name__}() takes {len(names)} positional argument"
                                f"{'s' * (len(names) != 1)} but {len(args)} were given", where)
        for i, n in enumerate(names):
            if i < len(args):
                env[n] = args[i]
            elif n in kwargs:
                env[n] = kwargs.pop(n)
            elif n in defaults:
                env[n] = defaults[n]
            else:
                where = outer.loc(call_node) if call_node is not None and outer else None
                raise ZMLXTypeError(f"{fn.__name__}() missing required argument '{n}'", where)
        for p in a.kwonlyargs:
            n = p.arg
            if n in kwargs:
                env[n] = kwargs.pop(n)
            elif n in kwdefaults:
                env[n] = kwdefaults[n]
            else:
                raise ZMLXTypeError(f"{fn.__name__}() missing keyword-only argument '{n}'")
        if kwargs:
            raise ZMLXTypeError(f"{fn.__name__}() got an unexpected keyword argument '{next(iter(kwargs))}'")
        return env

    def _merge_returns(self, returns: list) -> Any:
        """returns: [(condition or None, value)] in program order; the last must be unconditional."""
        if not returns or returns[-1][0] is not None:
            raise ZMLXSyntaxError(f"'{self.src.fdef.name}' does not return a value on every path",
                                  self.src.loc(self.src.fdef))
        result = returns[-1][1]
        for cond, value in reversed(returns[:-1]):
            result = self._select(cond, value, result, self.src.fdef)
        return result

    # ---- statements ------------------------------------------------------------------------
    def block(self, body: list, env: dict, cond: Any, returns: list) -> bool:
        """Run statements; returns True if the block always returns (the rest is unreachable)."""
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # docstring
            if self.stmt(stmt, env, cond, returns):
                return True
        return False

    def stmt(self, s: ast.stmt, env: dict, cond: Any, returns: list) -> bool:
        for kind, msg in _UNSUPPORTED_STMT.items():
            if isinstance(s, kind):
                raise ZMLXSyntaxError(msg, self.src.loc(s))
        if isinstance(s, ast.Return):
            if s.value is None:
                raise ZMLXSyntaxError("a kernel must return a value", self.src.loc(s))
            value = self.expr(s.value, env)
            self.check_current([value], s)
            returns.append((cond, value))
            return True
        if isinstance(s, ast.Assign):
            value = self.expr(s.value, env)
            self.check_current([value], s)
            for t in s.targets:
                self.assign(t, value, env)
            return False
        if isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self.assign(s.target, self.expr(s.value, env), env)
            return False
        if isinstance(s, ast.AugAssign):
            op = _BINOPS.get(type(s.op))
            if op is None:
                raise ZMLXSyntaxError(f"operator '{_op_text(s.op)}=' is not supported", self.src.loc(s))
            if not isinstance(s.target, ast.Name):
                self.assign(s.target, None, env)  # raises the located error
            cur = self.name(s.target.id, s.target, env)
            new = self.binop(op, cur, self.expr(s.value, env), s)
            if isinstance(cur, Node):
                self.update_in_place(cur, new, env, s)
            self.assign(s.target, new, env)
            return False
        if isinstance(s, ast.If):
            return self.if_stmt(s, env, cond, returns)
        if isinstance(s, ast.For):
            return self.for_stmt(s, env, cond, returns)
        if isinstance(s, ast.Pass):
            return False
        if isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
                return False
            raise ZMLXSyntaxError("an expression statement has no effect in a kernel (kernels cannot "
                                  "call functions for side effects); assign or return its value",
                                  self.src.loc(s))
        raise ZMLXSyntaxError(f"'{type(s).__name__}' statements are not supported in kernels", self.src.loc(s))

    def update_in_place(self, cur: Node, new: Node, env: dict, s: ast.stmt) -> None:
        """MLX's `a += b` updates the array object in place: every name (and tuple slot) holding
        it sees the new value, in this frame and in the callers of a helper. A caller's operand
        already read for a pending expression cannot follow, so using it later is an error."""
        outer = [e for e in self.callers if any(_holds(v, cur) for v in e.values())]
        if outer and self.branch_depth:
            raise ZMLXSyntaxError("augmented assignment inside a data-dependent 'if' updates, in place, an "
                                  "array the calling function also holds; write `name = name + ...` to "
                                  "make a new array", self.src.loc(s))
        for scope in [env] + outer:
            for n, v in list(scope.items()):
                scope[n] = _replaced(v, cur, new)
        if outer:
            self.stale.add(id(cur))

    def check_current(self, values: Sequence[Any], e: ast.AST) -> None:
        """Raise when a value read earlier in an expression was since updated in place by a helper."""
        if self.stale and any(_nodes_with_ids(v, self.stale) for v in values):
            raise ZMLXSyntaxError("an array read in this expression was then updated in place ('+=') by "
                                  "a helper called later in it, which MLX would see but the kernel cannot; "
                                  "call the helper in its own statement first", self.src.loc(e))

    def assign(self, target: ast.AST, value: Any, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, tuple) or len(value) != len(target.elts):
                n = len(value) if isinstance(value, tuple) else 1
                raise ZMLXTypeError(f"cannot unpack {n} value(s) into {len(target.elts)} names", self.src.loc(target))
            for t, v in zip(target.elts, value):
                self.assign(t, v, env)
            return
        if isinstance(target, ast.Subscript):
            raise ZMLXSyntaxError("subscript assignment is not supported; kernels compute values, "
                                  "they do not write into arrays", self.src.loc(target))
        if isinstance(target, ast.Attribute):
            raise ZMLXSyntaxError("attribute assignment is not supported in kernels", self.src.loc(target))
        raise ZMLXSyntaxError(f"cannot assign to '{type(target).__name__}'", self.src.loc(target))

    def if_stmt(self, s: ast.If, env: dict, cond: Any, returns: list) -> bool:
        c = self.expr(s.test, env)
        if _is_python(c):  # a compile-time condition: only the taken branch exists
            return self.block(s.body if c else s.orelse, env, cond, returns)
        c = self.to_bool(c, s.test)
        then_env, else_env = dict(env), dict(env)
        self.branch_depth += 1
        try:
            then_cond = c if cond is None else self.logical("logical_and", cond, c, s)
            not_c = self.unary("logical_not", c, s)
            else_cond = not_c if cond is None else self.logical("logical_and", cond, not_c, s)
            t_ret = self.block(s.body, then_env, then_cond, returns)
            e_ret = self.block(s.orelse, else_env, else_cond, returns) if s.orelse else False
        finally:
            self.branch_depth -= 1
        if t_ret and e_ret:
            return True
        if t_ret or e_ret:
            env.clear()
            env.update(else_env if t_ret else then_env)
            return False
        for name in set(then_env) | set(else_env):
            a, b = then_env.get(name, _MISSING), else_env.get(name, _MISSING)
            if a is b:
                env[name] = a
            elif a is _MISSING or b is _MISSING:
                side = "if" if b is _MISSING else "else"
                env[name] = Undefined(name, f"line {self.src.loc(s).line} assigns it only in the '{side}' branch")
            elif isinstance(a, Undefined) or isinstance(b, Undefined):
                env[name] = a if isinstance(a, Undefined) else b  # stays an error only if read later
            else:
                env[name] = self._select(c, a, b, s)
        return False

    def for_stmt(self, s: ast.For, env: dict, cond: Any, returns: list) -> bool:
        if s.orelse:
            raise ZMLXSyntaxError("'for ... else' is not supported", self.src.loc(s))
        it = self.expr(s.iter, env)
        if not isinstance(it, range):
            raise ZMLXSyntaxError("only 'for ... in range(N)' with constant bounds is supported "
                                  "(the loop is unrolled)", self.src.loc(s.iter))
        if len(it) > 4096:
            raise ZMLXSyntaxError(f"loop of {len(it)} iterations is too long to unroll (limit 4096)",
                                  self.src.loc(s.iter))
        for i in it:
            self.assign(s.target, i, env)
            if self.block(s.body, env, cond, returns):
                return True
        return False

    # ---- expressions -----------------------------------------------------------------------
    def expr(self, e: ast.expr, env: dict) -> Any:
        # the most frequent node kinds first
        if isinstance(e, ast.Name):
            return self.name(e.id, e, env)
        if isinstance(e, ast.BinOp):
            op = _BINOPS.get(type(e.op))
            if op is None:
                return self.bitop(e, env)
            return self.binop(op, self.expr(e.left, env), self.expr(e.right, env), e)
        if isinstance(e, ast.Call):
            return self.call(e, env)
        if isinstance(e, ast.Constant):
            if isinstance(e.value, (bool, int, float)):
                return e.value
            what = "strings" if isinstance(e.value, str) else f"{type(e.value).__name__} constants"
            raise ZMLXSyntaxError(f"{what} are not supported in kernels", self.src.loc(e))
        if isinstance(e, ast.Attribute):
            return self.attribute(e, env)
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand, env)
            if isinstance(e.op, ast.UAdd):
                return v
            if isinstance(e.op, ast.USub):
                return -v if _is_python(v) else self.unary("neg", v, e)
            if isinstance(e.op, ast.Not):
                return (not v) if _is_python(v) else self.unary("logical_not", self.to_bool(v, e), e)
            if _is_python(v):
                return ~v
            if _dtype(v) == dt.bool_:
                return self.unary("logical_not", v, e)
            raise ZMLXSyntaxError("bitwise '~' on non-boolean arrays is not supported", self.src.loc(e))
        if isinstance(e, ast.Compare):
            result = None
            left = self.expr(e.left, env)
            for op, rnode in zip(e.ops, e.comparators):
                right = self.expr(rnode, env)
                name = _CMPOPS.get(type(op))
                if name is None:
                    raise ZMLXSyntaxError(f"comparison '{_op_text(op)}' is not supported in kernels", self.src.loc(e))
                c = self.binop(name, left, right, e)
                result = c if result is None else self.logical("logical_and", result, c, e)
                left = right
            return result
        if isinstance(e, ast.Subscript):
            return self.subscript(e, env)
        if isinstance(e, ast.IfExp):
            c = self.expr(e.test, env)
            if _is_python(c):
                return self.expr(e.body if c else e.orelse, env)
            self.branch_depth += 1
            try:
                a, b = self.expr(e.body, env), self.expr(e.orelse, env)
            finally:
                self.branch_depth -= 1
            return self._select(self.to_bool(c, e.test), a, b, e)
        if isinstance(e, ast.BoolOp):
            vals = [self.expr(v, env) for v in e.values]
            op = "logical_and" if isinstance(e.op, ast.And) else "logical_or"
            result = vals[0]
            for v in vals[1:]:
                result = self.logical(op, result, v, e)
            return result
        if isinstance(e, ast.Tuple):
            return tuple(self.expr(v, env) for v in e.elts)
        for kind, msg in _UNSUPPORTED_EXPR.items():
            if isinstance(e, kind):
                raise ZMLXSyntaxError(msg, self.src.loc(e))
        raise ZMLXSyntaxError(f"'{type(e).__name__}' expressions are not supported in kernels", self.src.loc(e))

    def name(self, name: str, e: ast.AST, env: dict) -> Any:
        if name in env:
            v = env[name]
            if isinstance(v, Undefined):
                raise ZMLXNameError(f"'{name}' may be undefined here: {v.where}; assign it on both "
                                    "sides of the 'if' (or before it)", self.src.loc(e))
            return v
        fn = self.stack[-1]
        code = fn.__code__
        if name in code.co_freevars and fn.__closure__:
            cell = fn.__closure__[code.co_freevars.index(name)]
            try:
                value = cell.cell_contents
            except ValueError:
                raise ZMLXNameError(f"'{name}' is not defined yet where the kernel is compiled", self.src.loc(e)) from None
            self._bake(lambda c=cell: c.cell_contents, value)
            return self.constant(value, name, e)
        g = fn.__globals__
        if name in g:
            value = g[name]
            self._bake(lambda g=g, n=name: g.get(n, _MISSING), value)
            return self.constant(value, name, e)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise ZMLXNameError(f"name '{name}' is not defined", self.src.loc(e))

    def _bake(self, get: Callable[[], Any], value: Any) -> None:
        """Remember an outside value the IR depends on, so a change recompiles. Modules are
        resolved once (rebinding `mx` is not a kernel change), keeping cached calls cheap."""
        if not isinstance(value, types.ModuleType):
            self.baked.append((get, value))

    def constant(self, value: Any, name: str, e: ast.AST) -> Any:
        """A value from outside the body: numbers are baked in; modules and functions resolved."""
        if isinstance(value, (bool, int, float, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                              mx.Dtype, range)) or callable(value):
            return value
        if isinstance(value, (mx.array, np.ndarray)):
            raise ZMLXTypeError(f"'{name}' is an array captured from outside the kernel; pass it as an "
                                "argument instead", self.src.loc(e))
        raise ZMLXTypeError(f"'{name}' has type {type(value).__name__}, which kernels cannot use",
                            self.src.loc(e))

    def attribute(self, e: ast.Attribute, env: dict) -> Any:
        base = self.expr(e.value, env)
        if isinstance(base, (Node, Weak)):
            if e.attr == "size" or e.attr == "shape":
                return self.row_shape(e.attr, e)
            if e.attr == "dtype":
                return _dtype(base).mx
            if e.attr == "ndim":
                return 1 if self.mode == "row" else self._elementwise_shape_error(e)
            if e.attr == "T":
                if self.mode != "row":  # a row is 1-D: its transpose is itself, as in MLX
                    raise ZMLXSyntaxError("'.T' transposes the array, which an elementwise kernel "
                                          "cannot do (the body sees one element); pass the transposed "
                                          "array instead (kernel(x.T))", self.src.loc(e))
                return base
            return _BoundMethod(base, e.attr)
        if isinstance(base, types.ModuleType):
            if e.attr in CONSTANTS and base in (math, np, mx):
                return CONSTANTS[e.attr]
            if not hasattr(base, e.attr):
                raise ZMLXNameError(f"module '{base.__name__}' has no attribute '{e.attr}'", self.src.loc(e))
            return self.constant(getattr(base, e.attr), f"{base.__name__}.{e.attr}", e)
        if _is_python(base):
            raise ZMLXSyntaxError(f"attribute '{e.attr}' of a Python number is not supported", self.src.loc(e))
        try:
            return self.constant(getattr(base, e.attr), e.attr, e)
        except AttributeError:
            raise ZMLXNameError(f"'{type(base).__name__}' object has no attribute '{e.attr}'", self.src.loc(e)) from None

    def row_shape(self, attr: str, e: ast.AST) -> Any:
        if self.mode != "row":
            self._elementwise_shape_error(e)
        n = Node("rowsize", (), dt.int32)
        return Weak(n) if attr == "size" else _RowShape(n)

    def _elementwise_shape_error(self, e: ast.AST):
        raise ZMLXSyntaxError("shapes are not available in elementwise kernels (the body sees one "
                              "element); use @zmlx.map_reduce for row-wise code", self.src.loc(e))

    def subscript(self, e: ast.Subscript, env: dict) -> Any:
        base = self.expr(e.value, env)
        if isinstance(base, _RowShape):
            idx = self.expr(e.slice, env)
            if idx in (0, -1):
                return Weak(base.node)
            raise ZMLXSyntaxError(f"a row is 1-D: shape[{idx}] does not exist (use shape[-1])", self.src.loc(e))
        if isinstance(base, tuple):
            idx = self.expr(e.slice, env)
            if isinstance(idx, int):
                return base[idx]
        raise ZMLXSyntaxError("indexing is not supported in kernels (the body sees one element or one row)",
                              self.src.loc(e))

    def call(self, e: ast.Call, env: dict) -> Any:
        for a in e.args:
            if isinstance(a, ast.Starred):
                raise ZMLXSyntaxError("'*' unpacking is not supported in kernels", self.src.loc(a))
        target = self.expr(e.func, env)
        args = [self.expr(a, env) for a in e.args]
        kwargs = {}
        for k in e.keywords:
            if k.arg is None:
                raise ZMLXSyntaxError("'**' unpacking is not supported in kernels", self.src.loc(k))
            kwargs[k.arg] = self.expr(k.value, env)
        if isinstance(target, _BoundMethod):
            return self.method(target, args, kwargs, e)
        special = _SPECIAL.get(id(target))
        if special is not None:
            value = self.special(special, args, kwargs, e)
            # an MLX (or NumPy) function returns an array, typed strongly even from Python scalars
            return _strong(value) if _from_array_library(target) else value
        op = _INTRINSIC.get(id(target))
        if op is not None:
            if args and all(_is_python(a) for a in args) and _from_array_library(target, numpy=False):
                # mx.f(3) is an int32 array in MLX (strongly typed), not a weak Python number
                args = [const(a, dt.weak_kind(a)) for a in args]
            return self.intrinsic(op, args, kwargs, e)
        if isinstance(target, type) and issubclass(target, (mx.Dtype,)):
            raise ZMLXTypeError("dtype objects are not callable", self.src.loc(e))
        if isinstance(target, types.FunctionType):
            if any(not _is_value(a) for a in args):
                raise ZMLXTypeError(f"arguments of '{target.__name__}' must be values", self.src.loc(e))
            self.callers.append(env)
            try:
                return self.inline(target, args, kwargs, e)
            finally:
                self.callers.pop()
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
        module = getattr(target, "__module__", None)
        full = f"{module}.{name}" if module and module not in ("builtins",) else name
        raise ZMLXNameError(f"function '{full}' is not supported in kernels (the supported "
                            "operations are listed in zmlx_dsl.ir.registry.OPS)", self.src.loc(e.func))

    def method(self, m: "_BoundMethod", args: list, kwargs: dict, e: ast.AST) -> Any:
        if m.name == "astype":
            if len(args) != 1:
                raise ZMLXTypeError("astype() takes exactly one dtype", self.src.loc(e))
            return self.astype(m.value, args[0], e)
        if m.name in _METHODS:
            return self.special(m.name, [m.value] + args, kwargs, e)
        op = BY_PY_NAME.get(m.name)
        if op is not None and OPS[op].arity == 1 + len(args):
            return self.intrinsic(op, [m.value] + args, kwargs, e)
        raise ZMLXNameError(f"array method '{m.name}' is not supported in kernels", self.src.loc(e))

    def astype(self, v: Any, d: Any, e: ast.AST) -> Any:
        if isinstance(d, type) and d in (float, int, bool):
            d = {float: mx.float32, int: mx.int32, bool: mx.bool_}[d]
        if d not in _MX_DTYPES:
            raise ZMLXTypeError(f"astype() needs an MLX dtype such as mx.float16, got {d!r}", self.src.loc(e))
        target = _MX_DTYPES[d]
        if _is_python(v):
            v = self.node_of(v, target)
        return cast(_node(v), target)

    def special(self, name: str, args: list, kwargs: dict, e: ast.AST) -> Any:
        loc = self.src.loc(e)
        if name == "range":
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or kwargs:
                raise ZMLXSyntaxError("range() bounds must be constant integers (the loop is unrolled)", loc)
            return range(*args)
        if name in ("float", "int", "bool"):
            if len(args) != 1 or not _is_python(args[0]):
                raise ZMLXSyntaxError(f"{name}() of an array is not supported; use .astype(...)", loc)
            return {"float": float, "int": int, "bool": bool}[name](args[0])
        if name == "array":
            if len(args) < 1 or not _is_python(args[0]):
                raise ZMLXSyntaxError("mx.array() in a kernel takes one Python scalar", loc)
            d = _MX_DTYPES.get(args[1] if len(args) > 1 else kwargs.get("dtype"), None)
            return self.node_of(args[0], d or dt.weak_kind(args[0]))
        if name == "where":
            if len(args) != 3 or kwargs:
                raise ZMLXTypeError(f"where() takes 3 arguments ({len(args)} given)", loc)
            c = args[0]
            if _is_python(c):
                return args[1] if c else args[2]
            if isinstance(args[1], tuple) or isinstance(args[2], tuple):
                return self._select(self.to_bool(c, e), args[1], args[2], e)
            return self.op("where", [self.to_bool(c, e), args[1], args[2]], e)  # broadcasts all three
        if name == "clip":
            if len(args) != 3:
                raise ZMLXTypeError(f"clip() takes 3 arguments (x, a_min, a_max), {len(args)} given", loc)
            x = args[0]
            if args[1] is not None:
                x = self.binop("maximum", x, args[1], e)
            if args[2] is not None:
                x = self.binop("minimum", x, args[2], e)
            return x
        if name in ("min", "max") and len(args) >= 2:
            if kwargs:
                raise ZMLXTypeError(f"{name}() of several values takes no keyword arguments", loc)
            result = args[0]
            for a in args[1:]:
                result = self.binop("minimum" if name == "min" else "maximum", result, a, e)
            return result
        if name in ("sum", "max", "min", "mean", "logsumexp", "var", "softmax"):
            return self.reduction(name, args, kwargs, e)
        raise ZMLXNameError(f"'{name}' is not supported in kernels", loc)

    def reduction(self, name: str, args: list, kwargs: dict, e: ast.AST) -> Any:
        loc = self.src.loc(e)
        if self.mode != "row":
            raise ZMLXSyntaxError(f"reduction '{name}' is only allowed in row kernels (@zmlx.reduce / "
                                  "@zmlx.map_reduce); an elementwise body sees one element", loc)
        if self.branch_depth:
            raise ZMLXSyntaxError(f"reduction '{name}' inside a data-dependent branch is not supported; "
                                  "compute it before the 'if' and select afterwards", loc)
        if len(args) != 1:
            raise ZMLXTypeError(f"{name}() takes one array in a row kernel ({len(args)} given)", loc)
        axis = kwargs.pop("axis", None)
        kwargs.pop("keepdims", None)
        ddof = kwargs.pop("ddof", 0)
        if kwargs:
            raise ZMLXTypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'", loc)
        if axis not in (None, 0, -1, (0,), (-1,)):
            raise ZMLXSyntaxError(f"{name}(axis={axis}) reduces over something that is not the row; "
                                  "the body sees one row (1-D), so only axis=-1 (or 0, or None) exists", loc)
        x = args[0]
        if _is_python(x) or isinstance(x, Weak):
            raise ZMLXTypeError(f"{name}() needs a row (an array value), not a scalar", loc)
        self.check_current([x], e)
        n = Node("rowsize", (), dt.int32)
        reduce = apply
        if per_row([x])[x]:  # already one value per row (a 0-d array in the body): a row of one
            n = const(1, dt.int32)

            def reduce(op: str, v: Node) -> Node:
                return cast(v, dt.int32) if op == "sum" and v.dtype == dt.bool_ else v
        if name in ("sum", "max", "min"):
            return reduce(name, x)
        if name == "mean":
            return _divide(reduce("sum", x), n)
        if name == "var":
            mean = _divide(reduce("sum", x), n)
            d = apply("sub", x, mean)
            return _divide(reduce("sum", apply("mul", d, d)), apply("sub", n, ddof) if ddof else n)
        if name == "softmax":
            ex = apply("exp", apply("sub", x, reduce("max", x)))
            return apply("div", ex, reduce("sum", ex))
        m = reduce("max", x)  # logsumexp, exact for rows of -inf/+inf as MLX's
        safe = apply("where", apply("isinf", m), 0.0, m)
        return apply("add", safe, apply("log", reduce("sum", apply("exp", apply("sub", x, safe)))))

    def intrinsic(self, op: str, args: list, kwargs: dict, e: ast.AST) -> Any:
        spec = OPS[op]
        if kwargs:
            raise ZMLXTypeError(f"{op}() got an unexpected keyword argument '{next(iter(kwargs))}'", self.src.loc(e))
        if len(args) != spec.arity:
            raise ZMLXTypeError(f"{op}() takes {spec.arity} argument{'s' * (spec.arity != 1)} "
                                f"({len(args)} given)", self.src.loc(e))
        if spec.reduction:
            return self.reduction(op, args, {}, e)
        return self.op(op, args, e)

    # ---- typed op construction ---------------------------------------------------------------
    def op(self, name: str, args: list, e: ast.AST) -> Any:
        """Apply a registry op to frontend values, with MLX's weak-scalar typing."""
        if self.stale:
            self.check_current(args, e)
        if all(type(a) is Node for a in args):  # arrays only: apply() promotes them (MLX rules)
            return self._apply(name, args, e)
        for a in args:
            if not _is_value(a):
                raise ZMLXTypeError(f"{name}(): {_describe(a)} is not a number or array", self.src.loc(e))
        if all(_is_python(a) for a in args):
            return self.fold(name, args, e)
        strong = [a for a in args if isinstance(a, Node)]
        if not strong:  # runtime scalars only: computed in their own kinds, the result stays weak
            return Weak(self._apply(name, [_node(a) for a in args], e))
        common = strong[0].dtype
        for s_ in strong[1:]:
            common = dt.promote(common, s_.dtype)
        for w in args:
            if not isinstance(w, Node):
                common = dt.promote_weak(common, _weak_dtype(w))
        try:
            nodes = [a if isinstance(a, Node) else self.node_of(a, common) for a in args]
        except ValueError:
            value = next(a for a in args if _is_python(a) and not _fits(a, common))
            raise ZMLXValueError(
                f"the constant {value} does not fit {common.name}, the type it takes beside an "
                f"array of {common.name} (MLX raises 'Converting {value} to {common.name} would result in "
                "overflow'); write it as a float, or cast the array (e.g. .astype(mx.int64))",
                self.src.loc(e)) from None
        return self._apply(name, nodes, e)

    def _apply(self, name, nodes, e):
        try:
            return apply(name, *nodes)
        except (TypeError, ValueError) as err:
            raise ZMLXTypeError(f"{name}: {err}", self.src.loc(e)) from None

    def node_of(self, v: Any, d: dt.DType) -> Node:
        if isinstance(v, Weak):
            return cast(v.node, d)
        if isinstance(v, Node):
            return v
        return const(v, d)

    def fold(self, name: str, args: list, e: ast.AST) -> Any:
        """Python constants combine in Python, as they would in the body run eagerly."""
        try:
            if name in _PYOPS:
                return _PYOPS[name](*args)
            if name in ("logical_and", "logical_or"):
                return (args[0] and args[1]) if name == "logical_and" else (args[0] or args[1])
            if name == "logical_not":
                return not args[0]
            if name in ("maximum", "minimum"):
                return max(args) if name == "maximum" else min(args)
            if name == "neg":
                return -args[0]
            value = OPS[name].np(*[np.float64(a) for a in args])
            return value.item() if hasattr(value, "item") else value
        except ZeroDivisionError:
            raise ZMLXTypeError("division by zero in constant expression", self.src.loc(e)) from None

    def binop(self, name: str, a: Any, b: Any, e: ast.AST) -> Any:
        return self.op(name, [a, b], e)

    def unary(self, name: str, a: Any, e: ast.AST) -> Any:
        return self.op(name, [a], e)

    def logical(self, name: str, a: Any, b: Any, e: ast.AST) -> Any:
        if _is_python(a) and _is_python(b):
            return self.fold(name, [a, b], e)
        return self.op(name, [self.to_bool(a, e), self.to_bool(b, e)], e)

    def to_bool(self, v: Any, e: ast.AST) -> Any:
        if _is_python(v):
            return bool(v)
        if _dtype(v) == dt.bool_:
            return v
        return self.binop("ne", v, 0, e)

    def bitop(self, e: ast.BinOp, env: dict) -> Any:
        ops = {ast.BitAnd: "logical_and", ast.BitOr: "logical_or", ast.BitXor: "ne"}
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        name = ops.get(type(e.op))
        if name and all(_is_python(v) or _dtype(v) == dt.bool_ for v in (a, b)):
            if _is_python(a) and _is_python(b):
                return {ast.BitAnd: a & b, ast.BitOr: a | b, ast.BitXor: a ^ b}[type(e.op)]
            return self.op(name, [a, b], e)
        raise ZMLXSyntaxError(f"operator '{_op_text(e.op)}' is only supported on booleans in kernels",
                              self.src.loc(e))

    def _select(self, c: Any, a: Any, b: Any, e: ast.AST) -> Any:
        if isinstance(a, tuple) or isinstance(b, tuple):
            if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
                raise ZMLXTypeError("both branches must produce the same number of values", self.src.loc(e))
            return tuple(self._select(c, x, y, e) for x, y in zip(a, b))
        if a is b:
            return a
        return self.op("where", [c, a, b], e)


class _BoundMethod:
    def __init__(self, value, name):
        self.value, self.name = value, name


class _RowShape:
    def __init__(self, node):
        self.node = node


_MISSING = object()


def _holds(v: Any, node: Node) -> bool:
    """Whether value v is the array `node` or a tuple holding it."""
    return v is node or (isinstance(v, tuple) and any(_holds(x, node) for x in v))


def _replaced(v: Any, old: Node, new: Node) -> Any:
    if v is old:
        return new
    return tuple(_replaced(x, old, new) for x in v) if isinstance(v, tuple) else v


def _nodes_with_ids(v: Any, ids: set) -> list:
    if isinstance(v, tuple):
        return [n for x in v for n in _nodes_with_ids(x, ids)]
    return [v] if isinstance(v, Node) and id(v) in ids else []


def _from_array_library(fn: Any, numpy: bool = True) -> bool:
    """Whether fn is MLX's (or NumPy's) own function, whose results are arrays."""
    module = getattr(fn, "__module__", None) or ""
    return module.startswith("mlx") or (numpy and module.split(".")[0] == "numpy")


def _strong(v: Any) -> Any:
    """v as an array value: a Python number becomes a constant of its own kind, a weak runtime
    scalar its node (MLX's functions return arrays, which promote strongly)."""
    if isinstance(v, tuple):
        return tuple(_strong(x) for x in v)
    if isinstance(v, Weak):
        return v.node
    return const(v, dt.weak_kind(v)) if _is_python(v) else v


def _fits(v: Any, d: dt.DType) -> bool:
    """Whether Python number v converts to dtype d without overflow."""
    return not (d.is_int and isinstance(v, int)) or d.limits[0] <= v <= d.limits[1]


def _is_python(v: Any) -> bool:
    return isinstance(v, (bool, int, float)) and not isinstance(v, Node)


def _is_value(v: Any) -> bool:
    return _is_python(v) or isinstance(v, (Node, Weak))


def _weak_dtype(v: Any) -> dt.DType:
    """The kind a weak value promotes as: a Weak node's own dtype, else the Python scalar's."""
    return v.node.dtype if isinstance(v, Weak) else dt.weak_kind(v)


def _dtype(v: Any) -> dt.DType:
    return v.node.dtype if isinstance(v, Weak) else v.dtype


def _node(v: Any) -> Node:
    return v.node if isinstance(v, Weak) else v


def _describe(v: Any) -> str:
    if isinstance(v, tuple):
        return "a tuple"
    return getattr(v, "__name__", type(v).__name__)


def _op_text(op: ast.AST) -> str:
    return {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
            ast.MatMult: "@", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}.get(type(op), type(op).__name__)
