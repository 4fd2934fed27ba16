"""C expression text and per-render state shared by the C renderer's writers: values carry their
operator precedence, renders carry their own helpers and temporaries."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

ATOM = 9  # the precedence of a name, literal, call or subscript: never bracketed
SIMD64 = "zmlx_simd64"  # a row kernel reduces 64-bit values (see CStyle.simd64_helpers)


class Expr(str):
    """The C text of a value with the precedence of its outermost operator (ATOM when atomic), so
    every consumer brackets it by the same rule however many levels it passes through."""

    def __new__(cls, text: str, prec: float = ATOM) -> "Expr":
        e = super().__new__(cls, text)
        e.prec = prec
        return e


@dataclass
class RenderState:
    """What one render accumulates: the helper functions its ops use and its temporaries' counter
    (per render, so kernels rendered from several threads get the same text)."""

    helpers: set[str] = field(default_factory=set)
    temps: int = 0

    def temp(self, stem: str) -> str:
        """A fresh temporary name `<stem>_<n>`."""
        name = f"{stem}_{self.temps}"
        self.temps += 1
        return name


def bare_argument(template: str, i: int) -> bool:
    """Whether placeholder {i} only ever appears as a whole call argument (after `(` or `,`, before `,` or `)`)."""
    return all(template[:m.start()].rstrip().endswith(("(", ",")) and template[m.end():].lstrip().startswith((",", ")"))
               for m in re.finditer(r"\{%d\}" % i, template))


def short_name(op: str) -> str:
    """The stem of a temporary holding op's value (`sig_3`, `sel_0`)."""
    return {"sigmoid": "sig", "where": "sel", "logical_and": "and", "logical_or": "or"}.get(op, op)
