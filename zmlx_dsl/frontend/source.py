"""Reading a kernel's source: its lines and AST, cached per function, and error locations in the file."""
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
        """Where node is in the file (1-based line and column, as the dedented parse shifted them)."""
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


def source_of(fn: Callable) -> Source:
    """fn's Source, read and parsed once per function."""
    src = SOURCE_CACHE.get(fn)
    if src is None:
        src = SOURCE_CACHE[fn] = Source(fn)
    return src
