"""Reading a kernel's source (a def or a lambda, from a file or an IPython cell): its lines and AST,
cached per function, and error locations in the file."""
from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from typing import Callable

from ..errors import Location, ZMLXSyntaxError

SOURCE_CACHE: dict = {}  # function -> its Source (benchmarks clear it to time a fresh parse)


class Source:
    """A function's parsed source with the offsets needed to report original file positions."""

    def __init__(self, fn: Callable) -> None:
        self.file = inspect.getsourcefile(fn) or "<unknown>"
        self.fn = fn
        if fn.__name__ == "<lambda>":
            self.lines, self.first, self.indent = _file_lines(fn), 1, 0
            self.fdef = _lambda_def(self, fn)
        else:
            lines, first, tree = _function_lines(fn)
            self.indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
            self.lines = lines
            self.first = first
            fdefs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            if not fdefs:
                raise ZMLXSyntaxError(f"the source of {fn.__qualname__!r} at {self.file}:{first} is not its 'def' "
                                      "(a function made another way); write the kernel as a def or a lambda")
            self.fdef = fdefs[0]
        a = self.fdef.args
        for star, p in (("*", a.vararg), ("**", a.kwarg)):
            if p is not None:
                example = ("lambda x, y: ..." if fn.__name__ == "<lambda>" else
                           f"def {fn.__name__}(x, y, *, eps=1e-5)")
                raise ZMLXSyntaxError(f"'{star}{p.arg}' parameters are not supported in kernels (the kernel is "
                                      "compiled for each argument's shape and type): name each parameter, "
                                      f"e.g. {example}", self.loc(p))

    def loc(self, node: ast.AST) -> Location:
        """Where node is in the file (1-based line and column, as the dedented parse shifted them)."""
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return Location(self.file, self.first + line - 1, col + self.indent + 1, text.rstrip("\n"))


def _no_source(fn: Callable, why: str) -> ZMLXSyntaxError:
    """The error for a function whose source Python did not keep: where it came from, and the fix."""
    file = fn.__code__.co_filename
    name = repr(getattr(fn, "__qualname__", fn))
    if file == "<stdin>":
        return ZMLXSyntaxError(f"cannot read the source of {name}: it was typed into the Python REPL, which "
                               "keeps no source; define kernels in a file (and import it) or in an "
                               "IPython/Jupyter cell, which keep theirs")
    if file.startswith("<"):
        return ZMLXSyntaxError(f"cannot read the source of {name}: it was compiled from a string (exec or "
                               f"compile(), file name {file!r}), which keeps no source; write it to a file and "
                               "import it, or put the text in linecache.cache under the file name given to "
                               "compile() (as IPython does)")
    return ZMLXSyntaxError(f"cannot read the source of {name} ({why}): kernels must be defined in a file "
                           "(or an IPython/Jupyter cell) whose source can be read")


def _file_lines(fn: Callable) -> list[str]:
    """All the lines of the file (or IPython cell) that defines fn."""
    file = inspect.getsourcefile(fn)
    lines = linecache.getlines(file) if file else []
    if not lines:
        raise _no_source(fn, "no file holds it")
    return lines


def _lambda_def(src: Source, fn: Callable) -> ast.FunctionDef:
    """fn's lambda, found in its whole file (its own lines may not parse alone: `[k(lambda x: x)]`),
    as the function `def <lambda>(args): return body` located where the lambda is."""
    code = fn.__code__
    try:
        tree = ast.parse("".join(src.lines))
    except SyntaxError as err:
        raise _no_source(fn, f"its file does not parse: {err.msg}") from None
    names = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda) and n.lineno == code.co_firstlineno and
             [a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs] == names]
    spans = [q for q in getattr(code, "co_positions", lambda: ())() if q[2] is not None and q[2:] != (0, 0)]
    if len(found) > 1 and spans:  # several alike on the line: the one whose body holds fn's code
        found = [n for n in found if all((n.body.lineno, n.body.col_offset) <= (q[0], q[2]) and
                                         (q[1], q[3]) <= (n.body.end_lineno, n.body.end_col_offset) for q in spans)]
    if len(found) != 1:
        raise ZMLXSyntaxError(f"cannot tell which lambda on line {code.co_firstlineno} of {src.file} is the "
                              "kernel; give it a line of its own, or write it as a def")
    lam = found[0]
    fdef = ast.FunctionDef(name="<lambda>", args=lam.args, body=[ast.copy_location(ast.Return(lam.body), lam.body)],
                           decorator_list=[])
    return ast.copy_location(fdef, lam)


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
        raise _no_source(fn, str(e)) from None
    return lines, first, ast.parse(textwrap.dedent("".join(lines)))


def source_of(fn: Callable) -> Source:
    """fn's Source, read and parsed once per function."""
    src = SOURCE_CACHE.get(fn)
    if src is None:
        src = SOURCE_CACHE[fn] = Source(fn)
    return src
