"""Python function -> IR: the kernel language is a subset of Python, parsed from the AST.

Values during parsing are IR nodes (arrays), `Weak` nodes (Python scalars passed at call time,
typed as MLX types Python scalars), plain Python constants (folded at compile time), tuples, and
resolved Python objects (modules, functions, dtypes). `if` on a non-constant condition runs both
branches and merges them with `where`; `for` over a constant `range` is unrolled; helper functions
are inlined.

This module holds the Parser's statements and calls; expressions.py its dispatch, error locations
and expressions; values.py the values' typing; library.py the lowered MLX functions; source.py
the source reading.
"""
from __future__ import annotations

import ast
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx

from ..errors import ZMLXNameError, ZMLXSyntaxError, ZMLXTypeError
from ..ir.node import Node
from . import indexing, library
from .expressions import ExpressionParser
from .source import Source, source_of
from .syntax import BINOPS, op_text
from .values import MISSING, Undefined, Weak, is_python, is_value

__all__ = ["Parser", "ParsedBody", "Weak", "source_of"]  # what kernels.py uses


@dataclass
class Block:
    """Where statements run: the env they read and assign, the condition they run under (None:
    always) and the list their function's returns go to, as (condition, value)."""

    env: dict
    cond: Any
    returns: list


@dataclass
class ParsedBody:
    """What parsing produced: the outputs, whether the body returned a tuple, and the globals and
    closure values it baked in (re-checked on each call so a change recompiles)."""

    outputs: list
    is_tuple: bool
    baked: list = field(default_factory=list)


class Parser(ExpressionParser):
    """Parses one kernel body (and the helpers it calls) into IR."""

    # ---- entry and calls ---------------------------------------------------------------------------
    def parse(self, fn: Callable, args: Sequence[Any], kwargs: Optional[dict] = None) -> ParsedBody:
        """Parse fn applied to positional values and keyword constants (baked into the IR)."""
        result = self.inline(fn, list(args), dict(kwargs or {}))
        outs = list(result) if isinstance(result, tuple) else [result]
        return ParsedBody(outs, isinstance(result, tuple), self.baked)

    def inline(self, fn: Callable, args: list, kwargs: dict) -> Any:
        """fn's body applied to args and kwargs, parsed in place: the kernel, or a helper it calls.
        Errors of the call itself point at it (the current node); fn's unreadable source and its
        keyword binding are the function's problems, and carry no location."""
        if fn in self.stack:
            chain = " -> ".join(f.__name__ for f in self.stack + [fn])
            raise ZMLXSyntaxError(f"recursive call of '{fn.__name__}' ({chain}); kernels are inlined "
                                  "and cannot recurse")
        src = self.at(None, source_of, fn)
        env = _bind_positional(src, fn, args, kwargs)
        outer_src, outer_node = self.src, self.node
        self.src, self.node = src, None  # fn's own frame: no node of its source is current yet
        self.stack.append(fn)
        try:
            _bind_keywords(src, fn, env, kwargs)
            returns: list = []
            self.block(src.fdef.body, Block(env, None, returns))
            result = self.at(src.fdef, self._merge_returns, returns)
        finally:
            self.stack.pop()
            self.src = outer_src
        self.node = outer_node
        return result

    def _merge_returns(self, returns: list) -> Any:
        """returns: [(condition or None, value)] in program order; the last must be unconditional."""
        if not returns or returns[-1][0] is not None:
            raise ZMLXSyntaxError(f"'{self.src.fdef.name}' does not return a value on every path")
        result = returns[-1][1]
        for cond, value in reversed(returns[:-1]):
            result = self.select(cond, value, result)
        return result

    def visit_Call(self, e: ast.Call, env: dict) -> Any:
        """A library function or array method, else a helper function (inlined)."""
        target, args, kwargs = self.call_parts(e, env)
        value = self.call_library(target, args, kwargs)
        if value is not MISSING:
            return value
        if isinstance(target, type) and issubclass(target, (mx.Dtype,)):
            raise ZMLXTypeError("dtype objects are not callable")
        if isinstance(target, types.FunctionType):
            if any(not is_value(a) for a in args):
                raise ZMLXTypeError(f"arguments of '{target.__name__}' must be values")
            self.callers.append(env)
            try:
                return self.inline(target, args, kwargs)
            finally:
                self.callers.pop()
        raise ZMLXNameError(library.unsupported_function(target), self.src.loc(e.func))

    # ---- statements (each returns True when it always returns: the rest is unreachable) -------
    def block(self, body: list, blk: Block) -> bool:
        """Parse statements; True if the block always returns."""
        for stmt in body:
            if self.visit(stmt, blk):
                return True
        return False

    def visit_Return(self, s: ast.Return, blk: Block) -> bool:
        if s.value is None:
            raise ZMLXSyntaxError("a kernel must return a value")
        value = self.visit(s.value, blk.env)
        self.check_current([value])
        blk.returns.append((blk.cond, value))
        return True

    def visit_Assign(self, s: ast.Assign, blk: Block) -> bool:
        value = self.visit(s.value, blk.env)
        self.check_current([value])
        for t in s.targets:
            self.assign(t, value, blk.env)
        return False

    def visit_AnnAssign(self, s: ast.AnnAssign, blk: Block) -> bool:
        if s.value is not None:
            self.assign(s.target, self.visit(s.value, blk.env), blk.env)
        return False

    def visit_AugAssign(self, s: ast.AugAssign, blk: Block) -> bool:
        op = BINOPS.get(type(s.op))
        if op is None:
            raise ZMLXSyntaxError(f"operator '{op_text(s.op)}=' is not supported")
        env = blk.env
        if not isinstance(s.target, ast.Name):
            self.assign(s.target, None, env)  # raises the located error
        cur = self.visit(s.target, env)
        new = self.op(op, [cur, self.visit(s.value, env)])
        if isinstance(cur, Node):
            self.update_in_place(cur, new, env)
        self.assign(s.target, new, env)
        return False

    def visit_Pass(self, s: ast.Pass, blk: Block) -> bool:
        return False

    def visit_Expr(self, s: ast.Expr, blk: Block) -> bool:
        """A string (a docstring) is skipped; any other expression statement is refused."""
        if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return False
        raise ZMLXSyntaxError("an expression statement has no effect in a kernel (kernels cannot "
                              "call functions for side effects); assign or return its value")

    def update_in_place(self, cur: Node, new: Node, env: dict) -> None:
        """MLX's `a += b` updates the array object in place: every name (and tuple slot) holding
        it sees the new value, in this frame and in the callers of a helper. A caller's operand
        already read for a pending expression cannot follow, so using it later is an error."""
        outer = [e for e in self.callers if any(_holds(v, cur) for v in e.values())]
        if outer and self.branch_depth:
            raise ZMLXSyntaxError("augmented assignment inside a data-dependent 'if' updates, in place, an "
                                  "array the calling function also holds; write `name = name + ...` to "
                                  "make a new array")
        for scope in [env] + outer:
            for n, v in list(scope.items()):
                scope[n] = _replaced(v, cur, new)
        if outer:
            self.stale.add(id(cur))

    def assign(self, target: ast.AST, value: Any, env: dict) -> None:
        """Bind value to an assignment target: a name, or names to unpack a tuple into."""
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
            self.at(target, self.assign_subscript, target, value, env)
            return
        if isinstance(target, ast.Attribute):
            raise ZMLXSyntaxError("attribute assignment is not supported in kernels", self.src.loc(target))
        raise ZMLXSyntaxError(f"cannot assign to '{type(target).__name__}'", self.src.loc(target))

    def assign_subscript(self, target: ast.Subscript, value: Any, env: dict) -> None:
        """name[idx] = value on a local row (MLX's eager slice assignment, in place: every name
        holding the row sees the new one)."""
        if self.mode != "row" or not isinstance(target.value, ast.Name):
            raise ZMLXSyntaxError("subscript assignment is only supported on a local row of a row body "
                                  "(y = x * 2; y[:4] = 0); an elementwise kernel computes values, it "
                                  "does not write into arrays")
        cur = self.visit(target.value, env)
        if not isinstance(cur, Node):
            raise ZMLXSyntaxError(f"'{target.value.id}' is not an array; only rows can be assigned into")
        if self.branch_depth:
            raise ZMLXSyntaxError("slice assignment inside a data-dependent 'if' is not supported; "
                                  "compute both rows and select with mx.where")
        new = indexing.assign(self, cur, self.visit(target.slice, env), value)
        self.update_in_place(cur, new, env)
        env[target.value.id] = new

    def visit_If(self, s: ast.If, blk: Block) -> bool:
        """A constant condition keeps one branch; else both run (under their conditions) and the
        names they assign merge with where."""
        env, cond = blk.env, blk.cond
        c = self.visit(s.test, env)
        if is_python(c):  # a compile-time condition: only the taken branch exists
            return self.block(s.body if c else s.orelse, blk)
        c = self.at(s.test, self.to_bool, c)
        then_env, else_env = dict(env), dict(env)
        self.branch_depth += 1
        try:
            then_cond = c if cond is None else self.logical("logical_and", cond, c)
            not_c = self.op("logical_not", [c])
            else_cond = not_c if cond is None else self.logical("logical_and", cond, not_c)
            t_ret = self.block(s.body, Block(then_env, then_cond, blk.returns))
            e_ret = self.block(s.orelse, Block(else_env, else_cond, blk.returns)) if s.orelse else False
        finally:
            self.branch_depth -= 1
        if t_ret and e_ret:
            return True
        if t_ret or e_ret:
            env.clear()
            env.update(else_env if t_ret else then_env)
            return False
        for name in set(then_env) | set(else_env):
            a, b = then_env.get(name, MISSING), else_env.get(name, MISSING)
            if a is b:
                env[name] = a
            elif a is MISSING or b is MISSING:
                side = "if" if b is MISSING else "else"
                env[name] = Undefined(name, f"line {self.src.loc(s).line} assigns it only in the '{side}' branch")
            elif isinstance(a, Undefined) or isinstance(b, Undefined):
                env[name] = a if isinstance(a, Undefined) else b  # stays an error only if read later
            else:
                env[name] = self.select(c, a, b)
        return False

    def visit_For(self, s: ast.For, blk: Block) -> bool:
        """A loop over a constant range, unrolled."""
        if s.orelse:
            raise ZMLXSyntaxError("'for ... else' is not supported")
        it = self.visit(s.iter, blk.env)
        if not isinstance(it, range):
            raise ZMLXSyntaxError("only 'for ... in range(N)' with constant bounds is supported "
                                  "(the loop is unrolled)", self.src.loc(s.iter))
        if len(it) > 4096:
            raise ZMLXSyntaxError(f"loop of {len(it)} iterations is too long to unroll (limit 4096)",
                                  self.src.loc(s.iter))
        for i in it:
            self.assign(s.target, i, blk.env)
            if self.block(s.body, blk):
                return True
        return False


def _bind_positional(src: Source, fn: Callable, args: list, kwargs: dict) -> dict:
    """fn's positional parameters bound to args, else to kwargs (taken out of it), else to defaults."""
    a = src.fdef.args
    names = [p.arg for p in a.posonlyargs + a.args]
    defaults = dict(zip(names[len(names) - len(a.defaults):], fn.__defaults__ or ()))
    if len(args) > len(names):
        raise ZMLXTypeError(f"{fn.__name__}() takes {len(names)} positional argument"
                            f"{'s' * (len(names) != 1)} but {len(args)} were given")
    env: dict = {}
    for i, n in enumerate(names):
        env[n] = args[i] if i < len(args) else kwargs.pop(n, defaults.get(n, MISSING))
        if env[n] is MISSING:
            raise ZMLXTypeError(f"{fn.__name__}() missing required argument '{n}'")
    return env


def _bind_keywords(src: Source, fn: Callable, env: dict, kwargs: dict) -> None:
    """fn's keyword-only parameters bound in env to kwargs, else to their defaults; no kwargs may be left."""
    kwdefaults = fn.__kwdefaults__ or {}
    for p in src.fdef.args.kwonlyargs:
        env[p.arg] = kwargs.pop(p.arg, kwdefaults.get(p.arg, MISSING))
        if env[p.arg] is MISSING:
            raise ZMLXTypeError(f"{fn.__name__}() missing keyword-only argument '{p.arg}'")
    if kwargs:
        raise ZMLXTypeError(f"{fn.__name__}() got an unexpected keyword argument '{next(iter(kwargs))}'")


def _holds(v: Any, node: Node) -> bool:
    """Whether value v is the array `node` or a tuple holding it."""
    return v is node or (isinstance(v, tuple) and any(_holds(x, node) for x in v))


def _replaced(v: Any, old: Node, new: Node) -> Any:
    if v is old:
        return new
    return tuple(_replaced(x, old, new) for x in v) if isinstance(v, tuple) else v
