"""Python syntax as the kernel language sees it: the operators that map to registry ops, the constructs it refuses."""
from __future__ import annotations

import ast

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
