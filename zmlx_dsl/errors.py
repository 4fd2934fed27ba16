"""Errors with a source location: `file:line:col`, the line and a caret (as Triton's CompilationError)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Location:
    """A point in user source: file, 1-based line and column, and the text of that line."""

    file: str
    line: int
    col: int
    text: str

    def render(self, width: int = 160) -> str:
        """The line and a caret under the column; a line longer than `width` is cut to the `width`
        characters around the column (marked '...')."""
        text, col = self.text.rstrip(), self.col - 1
        if len(text) > width:
            start = max(0, min(col - width // 2, len(text) - width))
            head, tail = ("..." if start > 0 else ""), ("..." if start + width < len(text) else "")
            text, col = head + text[start:start + width] + tail, col - start + len(head)
        return f"    {text}\n    {' ' * col}^"


class ZMLXError(Exception):
    """Base of zmlx_dsl errors; `loc` (when known) points at the offending source."""

    def __init__(self, message: str, loc: Optional[Location] = None) -> None:
        self.message = message
        self.loc = loc
        super().__init__(self._full())

    def _full(self) -> str:
        if self.loc is None:
            return self.message
        return f"{self.loc.file}:{self.loc.line}:{self.loc.col}: {self.message}\n{self.loc.render()}"

    def __str__(self) -> str:
        return self._full()


class ZMLXSyntaxError(ZMLXError, SyntaxError):
    """A construct the kernel language does not support."""

    def __init__(self, message: str, loc: Optional[Location] = None) -> None:
        ZMLXError.__init__(self, message, loc)
        self.msg = message
        if loc is not None:
            self.filename, self.lineno, self.offset, self.text = loc.file, loc.line, loc.col, loc.text


class ZMLXNameError(ZMLXError, NameError):
    """An unknown name or function in a kernel body."""


class ZMLXTypeError(ZMLXError, TypeError):
    """Wrong argument count or type, in the body or at call time."""


class ZMLXShapeError(ZMLXError, ValueError):
    """Shapes that do not broadcast or rows of different lengths."""


class ZMLXValueError(ZMLXError, ValueError):
    """A value out of the range of the dtype it takes (where MLX raises ValueError too)."""


class ZMLXBackendError(ZMLXError, RuntimeError):
    """A kernel that the chosen backend cannot run (e.g. raw Metal on the portable backend)."""


class ZMLXGradientError(ZMLXError, ValueError):
    """A gradient (or tangent) asked of a kernel whose body has no derivative (a serial row fold)."""
