"""The AST visitor's core: node dispatch with error locations, expressions, names, and ops on frontend values."""
from __future__ import annotations

import ast
import builtins
import math
import types
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np

from ..errors import ZMLXError, ZMLXNameError, ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir.node import Node
from ..ir.registry import CONSTANTS
from ..ir.rows import per_row, row_lengths
from . import indexing, library, ordering  # noqa: F401 (ordering registers its lowerings)
from .indexing import Stacked
from .source import Source
from .syntax import BINOPS, CMPOPS, op_text, unsupported
from .values import MISSING, Undefined, Weak, apply_op, describe, dtype_of, fold, is_python


class _BoundMethod:
    """x.name read off an array value, to be called (the class name shows in error messages)."""

    def __init__(self, value, name):
        self.value, self.name = value, name


class ExpressionParser:
    """Visits AST nodes by type (`visit_<Type>` methods, as ast.NodeVisitor) and parses expressions;
    python.Parser adds statements and calls.

    Error locations are attached in one place, `at`: raise sites raise without a location and get
    the one of the innermost node being visited (as Triton's CodeGenerator.visit does)."""

    _visitors: dict = {}  # AST node type -> visit_<Type> function; per subclass, see __init_subclass__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Index the class's visit_<Type> methods by node type: visit() dispatches with one lookup."""
        super().__init_subclass__(**kwargs)
        cls._visitors = {getattr(ast, n[len("visit_"):]): getattr(cls, n) for n in dir(cls) if n.startswith("visit_")}

    def __init__(self, mode: str, lengths: Optional[dict] = None) -> None:
        self.mode = mode          # "elementwise" or "row"
        self.input_lengths = lengths or {}  # row kernels: each array input's row length
        self.lengths: dict = {}   # memo of row_lengths over everything parsed
        self.rows: dict = {}      # memo of per_row
        self.baked: list = []     # (getter, value) of globals/closure values read
        self.stack: list = []     # helper functions being inlined (recursion check)
        self.branch_depth = 0     # > 0 inside a data-dependent `if`
        self.callers: list = []   # the current env of each frame that called into a helper
        self.stale: set = set()   # ids of arrays a helper updated in place while a caller held them
        self.src: Optional[Source] = None    # the source of the function being parsed
        self.node: Optional[ast.AST] = None  # the innermost node being parsed, in self.src

    # ---- dispatch and error locations -------------------------------------------------------------
    def at(self, node: Optional[ast.AST], fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) with `node` current: a ZMLXError raised without a location gets the location of
        the innermost current node. self.node is restored only on success, so when an error escapes
        it still names the node the error escaped from; a frame with no node (None) adds none."""
        outer, self.node = self.node, node
        try:
            result = fn(*args)
        except ZMLXError as err:
            if err.loc is None and self.node is not None:
                err.__init__(err.message, self.src.loc(self.node))  # as if raised with it
            raise
        self.node = outer
        return result

    def visit(self, node: ast.AST, ctx: Any) -> Any:
        """Parse node with its visit_<Type> method, given ctx: the env (name -> value) for an
        expression, the Block for a statement."""
        return self.at(node, self._visitors.get(type(node), ExpressionParser.generic_visit), self, node, ctx)

    def generic_visit(self, node: ast.AST, ctx: Any) -> Any:
        """Refuse a node the kernel language does not have."""
        raise ZMLXSyntaxError(unsupported(node))

    # ---- expressions -----------------------------------------------------------------------------
    def visit_Name(self, e: ast.Name, env: dict) -> Any:
        """A local, else a closure or global value (baked in), else a builtin."""
        name = e.id
        if name in env:
            v = env[name]
            if isinstance(v, Undefined):
                raise ZMLXNameError(f"'{name}' may be undefined here: {v.where}; assign it on both "
                                    "sides of the 'if' (or before it)")
            return v
        fn = self.stack[-1]
        code = fn.__code__
        if name in code.co_freevars and fn.__closure__:
            cell = fn.__closure__[code.co_freevars.index(name)]
            try:
                value = cell.cell_contents
            except ValueError:
                raise ZMLXNameError(f"'{name}' is not defined yet where the kernel is compiled") from None
            self._bake(lambda c=cell: c.cell_contents, value)
            return self.constant(value, name)
        g = fn.__globals__
        if name in g:
            value = g[name]
            self._bake(lambda g=g, n=name: g.get(n, MISSING), value)
            return self.constant(value, name)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise ZMLXNameError(f"name '{name}' is not defined")

    def _bake(self, get: Callable[[], Any], value: Any) -> None:
        """Remember an outside value the IR depends on, so a change recompiles. Modules are
        resolved once (rebinding `mx` is not a kernel change), keeping cached calls cheap."""
        if not isinstance(value, types.ModuleType):
            self.baked.append((get, value))

    def constant(self, value: Any, name: str) -> Any:
        """A value from outside the body: numbers are baked in; modules and functions resolved."""
        if isinstance(value, (bool, int, float, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                              mx.Dtype, range)) or callable(value):
            return value
        if isinstance(value, (mx.array, np.ndarray)):
            raise ZMLXTypeError(f"'{name}' is an array captured from outside the kernel; pass it as an "
                                "argument instead")
        raise ZMLXTypeError(f"'{name}' has type {type(value).__name__}, which kernels cannot use")

    def visit_Constant(self, e: ast.Constant, env: dict) -> Any:
        if isinstance(e.value, (bool, int, float)) or e.value is None or e.value is Ellipsis:
            return e.value
        what = "strings" if isinstance(e.value, str) else f"{type(e.value).__name__} constants"
        raise ZMLXSyntaxError(f"{what} are not supported in kernels")

    def visit_Tuple(self, e: ast.Tuple, env: dict) -> tuple:
        return tuple(self.visit(v, env) for v in e.elts)

    def visit_List(self, e: ast.List, env: dict) -> tuple:
        """A list of values (mx.concatenate([a, b])) is a tuple to the kernel: lists are not mutated."""
        return tuple(self.visit(v, env) for v in e.elts)

    def visit_Slice(self, e: ast.Slice, env: dict) -> slice:
        return slice(*[None if b is None else self.visit(b, env) for b in (e.lower, e.upper, e.step)])

    def visit_BinOp(self, e: ast.BinOp, env: dict) -> Any:
        op = BINOPS.get(type(e.op))
        if op is None:
            return self._bitop(e, env)
        return self.op(op, [self.visit(e.left, env), self.visit(e.right, env)])

    def _bitop(self, e: ast.BinOp, env: dict) -> Any:
        """&, | and ^ of booleans (logical and, or, not-equal); refused on other values."""
        ops = {ast.BitAnd: "logical_and", ast.BitOr: "logical_or", ast.BitXor: "ne"}
        a, b = self.visit(e.left, env), self.visit(e.right, env)
        name = ops.get(type(e.op))
        if name and all(is_python(v) or dtype_of(v) == dt.bool_ for v in (a, b)):
            if is_python(a) and is_python(b):
                return {ast.BitAnd: a & b, ast.BitOr: a | b, ast.BitXor: a ^ b}[type(e.op)]
            return self.op(name, [a, b])
        raise ZMLXSyntaxError(f"operator '{op_text(e.op)}' is only supported on booleans in kernels")

    def visit_UnaryOp(self, e: ast.UnaryOp, env: dict) -> Any:
        v = self.visit(e.operand, env)
        if isinstance(e.op, ast.UAdd):
            return v
        if isinstance(e.op, ast.USub):
            return -v if is_python(v) else self.op("neg", [v])
        if isinstance(e.op, ast.Not):
            return (not v) if is_python(v) else self.op("logical_not", [self.to_bool(v)])
        if is_python(v):
            return ~v
        if dtype_of(v) == dt.bool_:
            return self.op("logical_not", [v])
        raise ZMLXSyntaxError("bitwise '~' on non-boolean arrays is not supported")

    def visit_Compare(self, e: ast.Compare, env: dict) -> Any:
        """a < b < c as (a < b) and (b < c)."""
        result = None
        left = self.visit(e.left, env)
        for op, rnode in zip(e.ops, e.comparators):
            right = self.visit(rnode, env)
            name = CMPOPS.get(type(op))
            if name is None:
                raise ZMLXSyntaxError(f"comparison '{op_text(op)}' is not supported in kernels")
            c = self.op(name, [left, right])
            result = c if result is None else self.logical("logical_and", result, c)
            left = right
        return result

    def visit_BoolOp(self, e: ast.BoolOp, env: dict) -> Any:
        vals = [self.visit(v, env) for v in e.values]
        op = "logical_and" if isinstance(e.op, ast.And) else "logical_or"
        result = vals[0]
        for v in vals[1:]:
            result = self.logical(op, result, v)
        return result

    def visit_IfExp(self, e: ast.IfExp, env: dict) -> Any:
        """Only the taken side of a constant condition; else both sides, selected with where."""
        c = self.visit(e.test, env)
        if is_python(c):
            return self.visit(e.body if c else e.orelse, env)
        self.branch_depth += 1
        try:
            a, b = self.visit(e.body, env), self.visit(e.orelse, env)
        finally:
            self.branch_depth -= 1
        return self.select(self.at(e.test, self.to_bool, c), a, b)

    def visit_Attribute(self, e: ast.Attribute, env: dict) -> Any:
        base = self.visit(e.value, env)
        if isinstance(base, Stacked):
            return _BoundMethod(base, e.attr)
        if isinstance(base, (Node, Weak)):
            if e.attr in ("size", "shape", "ndim"):
                if self.mode != "row":
                    self._elementwise_shape_error()
                shape = self.shape(base)
                return {"shape": shape, "size": math.prod(shape), "ndim": len(shape)}[e.attr]
            if e.attr == "dtype":
                return dtype_of(base).mx
            if e.attr == "T":
                if self.mode != "row":  # a row is 1-D: its transpose is itself, as in MLX
                    raise ZMLXSyntaxError("'.T' transposes the array, which an elementwise kernel "
                                          "cannot do (the body sees one element); pass the transposed "
                                          "array instead (kernel(x.T))")
                return base
            return _BoundMethod(base, e.attr)
        if isinstance(base, types.ModuleType):
            if e.attr in CONSTANTS and base in (math, np, mx):
                return CONSTANTS[e.attr]
            if not hasattr(base, e.attr):
                raise ZMLXNameError(library.no_attribute(base, e.attr))
            return self.constant(getattr(base, e.attr), f"{base.__name__}.{e.attr}")
        if is_python(base):
            raise ZMLXSyntaxError(f"attribute '{e.attr}' of a Python number is not supported")
        try:
            return self.constant(getattr(base, e.attr), e.attr)
        except AttributeError:
            raise ZMLXNameError(f"'{type(base).__name__}' object has no attribute '{e.attr}'") from None

    def shape(self, v: Any) -> tuple:
        """The static shape of a value in a row body: (n,) for a row of n, () for a value that is
        one per row (a reduction, a scalar, an input of one value per row)."""
        if not isinstance(v, Node):
            return ()
        if per_row([v], self.rows)[v]:
            return ()
        return (row_lengths([v], self.input_lengths, memo=self.lengths)[v],)

    def row(self, v: Any, what: str) -> tuple[Node, int]:
        """v as a row and its length; a located error for a value that has no positions."""
        if self.mode != "row":
            raise ZMLXSyntaxError(f"an elementwise body sees one element: it cannot be {what}; use "
                                  "@zmlx.map_reduce for a body that sees the row")
        shape = self.shape(v)
        if not shape:
            raise ZMLXSyntaxError(f"a value that is one per row (0-d in the body) cannot be {what}; "
                                  "only rows (1-D values) have positions")
        return v, shape[0]

    def _elementwise_shape_error(self) -> None:
        """Refuse x.shape, x.size and x.ndim in an elementwise body."""
        raise ZMLXSyntaxError("shapes are not available in elementwise kernels (the body sees one "
                              "element); use @zmlx.map_reduce for row-wise code")

    def visit_Subscript(self, e: ast.Subscript, env: dict) -> Any:
        """A constant index or slice of a tuple (x.shape[-1]); in a row body, indexing the row."""
        base = self.visit(e.value, env)
        idx = self.visit(e.slice, env)
        if isinstance(base, tuple):
            if isinstance(idx, (int, slice)) and not isinstance(idx, bool):
                try:
                    return base[idx]
                except IndexError:
                    raise ZMLXSyntaxError(f"index {idx} is out of range for a tuple of {len(base)}") from None
            raise ZMLXSyntaxError("a tuple is indexed by a constant integer or slice")
        if isinstance(base, Node):
            if self.mode != "row":
                raise ZMLXSyntaxError("indexing needs a row kernel (@zmlx.map_reduce / @zmlx.reduce): an "
                                      "elementwise body sees one element")
            return indexing.subscript(self, base, idx)
        raise ZMLXSyntaxError(f"{describe(base)} cannot be indexed in a kernel")

    def call_parts(self, e: ast.Call, env: dict) -> tuple[Any, list, dict]:
        """A call's function, positional values and keyword values."""
        for a in e.args:
            if isinstance(a, ast.Starred):  # refused before anything in the call is parsed
                raise ZMLXSyntaxError(unsupported(a), self.src.loc(a))
        target = self.visit(e.func, env)
        args = [self.argument(a, env) for a in e.args]
        kwargs = {}
        for k in e.keywords:
            if k.arg is None:
                raise ZMLXSyntaxError("'**' unpacking is not supported in kernels", self.src.loc(k))
            kwargs[k.arg] = self.argument(k.value, env)
        return target, args, kwargs

    def argument(self, a: ast.AST, env: dict) -> Any:
        """A call's argument: a value, or a string constant (an option such as mode="constant")."""
        if isinstance(a, ast.Constant) and isinstance(a.value, str):
            return a.value
        return self.visit(a, env)

    def call_library(self, target: Any, args: list, kwargs: dict) -> Any:
        """A call of an array method or of a function the library lowers; MISSING for any other target."""
        if isinstance(target, _BoundMethod):
            return library.call_method(self, target.value, target.name, args, kwargs)
        special = library.SPECIAL.get(id(target))
        if special is not None:
            return library.call(self, target, special, args, kwargs)
        op = library.INTRINSIC.get(id(target))
        if op is not None:
            return library.call_intrinsic(self, target, op, args, kwargs)
        return MISSING

    # ---- ops on frontend values ------------------------------------------------------------------
    def op(self, name: str, args: list) -> Any:
        """Apply a registry op to frontend values, with MLX's weak-scalar typing (rows of a row
        body broadcast as MLX's 1-D arrays: equal lengths, or one)."""
        if self.stale:
            self.check_current(args)
        if self.mode == "row":
            lengths = {n for a in args for n in self.shape(a) if n != 1}
            if len(lengths) > 1:
                a, b = sorted(lengths)[:2]
                raise ZMLXShapeError(f"{name}: rows of lengths {a} and {b} do not broadcast (the rows of a "
                                     "body broadcast as MLX's 1-D arrays: equal lengths, or length 1); "
                                     "slice one to the other's length")
        return apply_op(name, args)

    def logical(self, name: str, a: Any, b: Any) -> Any:
        """logical_and / logical_or of two values, as booleans."""
        if is_python(a) and is_python(b):
            return fold(name, [a, b])
        return self.op(name, [self.to_bool(a), self.to_bool(b)])

    def to_bool(self, v: Any) -> Any:
        """v as a condition: a Python bool, or a bool array (v != 0)."""
        if is_python(v):
            return bool(v)
        if dtype_of(v) == dt.bool_:
            return v
        return self.op("ne", [v, 0])

    def select(self, c: Any, a: Any, b: Any) -> Any:
        """where(c, a, b), slot by slot for tuples."""
        if isinstance(a, tuple) or isinstance(b, tuple):
            if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
                raise ZMLXTypeError("both branches must produce the same number of values")
            return tuple(self.select(c, x, y) for x, y in zip(a, b))
        if a is b:
            return a
        return self.op("where", [c, a, b])

    def check_current(self, values: Sequence[Any]) -> None:
        """Raise when a value read earlier in an expression was since updated in place by a helper."""
        if self.stale and any(_nodes_with_ids(v, self.stale) for v in values):
            raise ZMLXSyntaxError("an array read in this expression was then updated in place ('+=') by "
                                  "a helper called later in it, which MLX would see but the kernel cannot; "
                                  "call the helper in its own statement first")


def _nodes_with_ids(v: Any, ids: set) -> list:
    if isinstance(v, tuple):
        return [n for x in v for n in _nodes_with_ids(x, ids)]
    return [v] if isinstance(v, Node) and id(v) in ids else []
