"""Python syntax as the kernel language sees it: the operators that map to registry ops, the constructs it refuses."""
from __future__ import annotations

import ast

from ..errors import ZMLXSyntaxError, ZMLXTypeError

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.FloorDiv: "floordiv",
          ast.Mod: "mod", ast.Pow: "power"}
CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
UNSUPPORTED = {  # node type -> why it is refused
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


def unsupported(node: ast.AST) -> str:
    """Why node (a statement or expression with no visit_ method) is refused."""
    kind = "statements" if isinstance(node, ast.stmt) else "expressions"
    return UNSUPPORTED.get(type(node), f"'{type(node).__name__}' {kind} are not supported in kernels")


def op_text(op: ast.AST) -> str:
    """How an operator the kernel language refuses is written, for its error message."""
    return {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
            ast.MatMult: "@", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}.get(type(op), type(op).__name__)


def check_axis(kind: str, name: str, axis: object) -> None:
    """Refuse a decorator axis= that is not one axis: a row kernel's rows run along one axis (an int);
    a body over two axes (a norm over D then a mean over S) is two kernels, and the message says how."""
    if type(axis) is int:
        return
    if isinstance(axis, (tuple, list)) and all(type(a) is int for a in axis) and len(axis) > 1:
        first, second = axis[-1], axis[-2]
        raise ZMLXSyntaxError(
            f"{name}: {kind}(axis={tuple(axis)}): the rows of a kernel run along one axis; split the body in two "
            f"kernels, one per axis: the part over axis {first} as @zmlx.{kind}(axis={first}) (its body sees "
            f"one row of that axis), then what reduces over axis {second} as a second kernel on its output, "
            f"e.g. @zmlx.reduce(axis={second}) def pool(y): return y.mean(), called as pool(norm(x, w)); or, "
            f"for one reduction over both axes together, flatten them into one row: "
            f"kernel(x.reshape(*x.shape[:-2], -1))")
    raise ZMLXTypeError(f"{name}: axis must be one axis (an int such as -1), got {axis!r}")
