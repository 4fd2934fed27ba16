"""Kernels: a body (a Python function, or built otherwise by a subclass) called like a function.

A kernel is compiled once per (argument dtypes and kinds, keyword constants, backend); fast_math
is fixed at decoration and shows in the kernel text, so in the kernel's name (MLX's cache key). A cached
call costs a tuple build and a dictionary lookup, plus re-reading the globals it baked in.
"""
from __future__ import annotations

import functools
import inspect
import operator
from typing import Any, Callable, Optional, Sequence

import mlx.core as mx
import numpy as np

from . import backend as backends
from .errors import ZMLXBackendError, ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError, ZMLXValueError
from .frontend.python import Parser, Weak, source_of
from .frontend.syntax import check_axis
from .ir import dtypes as dt
from .ir.build import const
from .ir.node import Node, toposort
from .ir.positions import gather
from .ir.passes import optimize, widen
from .ir.rows import per_row, row_lengths
from .ir.program import Program
from .runtime import Compiled, GivenVJP

_SCALARS = (bool, int, float)
_DTYPE = operator.attrgetter("dtype")


def _param_ranges(p: Program) -> dict:
    """Per integer parameter, the values it can take without wrapping: those of its own type and
    of every integer type the program converts it to (MLX raises an overflow error there)."""
    ranges = {q: q.dtype.limits for q in p.params if q.dtype.is_int}
    for n in toposort(p.outputs):
        if n.op == "cast" and n.args[0] in ranges and n.dtype.is_int:
            lo, hi = ranges[n.args[0]]
            ranges[n.args[0]] = (max(lo, n.dtype.limits[0]), min(hi, n.dtype.limits[1]))
    return ranges


class Entry:
    """One compiled signature: the program, its compiled forms per backend, and how to call it."""

    def __init__(self, program: Program, slots: list, is_tuple: bool, row_flags: list, baked: list,
                 given: Optional[tuple[Program, list]] = None) -> None:
        self.program = program
        self.slots = slots              # per positional argument: ("array", i) or
        #                                 ("param", dtype, (lo, hi) of an integer, else None)
        self.is_tuple = is_tuple
        self.row_flags = row_flags      # per output: True when it is one value per row, 0-d in the body
        #                                 (the row axis dropped; a (1,) keeps it, as MLX's keepdims)
        self.baked = baked
        self.given = given              # a user-given VJP: (its program, its input roles), see GivenVJP
        self.arrays_only = all(s[0] == "array" for s in slots)
        self.compiled: dict[str, Compiled] = {}

    def stale(self) -> bool:
        """Whether a global or closure value the kernel baked in has changed since."""
        for get, v in self.baked:
            now = get()
            if now is not v and now != v:
                return True
        return False


def row_inputs(arrays: Sequence[mx.array], name: str) -> list[mx.array]:
    """A row kernel's array arguments as rows on their last axis: a 0-d array is a row of one, and
    an array of the row grid's shape (the highest-rank arguments' shape without the row: labels
    (R,) beside logits (R, V)) holds one value per row, (R, 1). In a 2-D call an (R,) array that
    could also be a row shared by all (R equal to the row length) stays that, as before, unless
    it is integer-typed (an index), which must say which it is."""
    n = max(a.ndim for a in arrays)
    tops = [a for a in arrays if a.ndim == n]
    try:
        grid = tuple(mx.broadcast_shapes(*[a.shape[:-1] for a in tops])) if n >= 2 else None
    except ValueError:
        grid = None
    widths = {a.shape[-1] for a in tops}
    out = []
    for a in arrays:
        if a.ndim == 0:
            a = a.reshape((1,))
        elif grid is not None and a.ndim == n - 1 and tuple(a.shape) == grid:
            if n == 2 and a.shape[-1] in widths:
                if not dt.from_mx(a.dtype).is_float:
                    raise ZMLXShapeError(
                        f"{name}: an integer array of shape {tuple(a.shape)} beside rows of shape "
                        f"{tuple(tops[0].shape)} is either one value per row or one row shared by all; "
                        f"say which: pass it as ({a.shape[0]}, 1) for one value per row, or as "
                        f"(1, {a.shape[0]}) for a shared row")
            else:
                a = a[..., None]
        out.append(a)
    return out


class Kernel:
    """A kernel built from a Python function; call it like the function.

    A subclass building its body otherwise (api.ExprKernel) passes fn=None, its `name` and its
    `arg_names`, and overrides `build`."""

    def __init__(self, fn: Optional[Callable], *, kind: str, name: Optional[str] = None,
                 compute_dtype: Any = mx.float32, backend: Optional[str] = None, axis: int = -1,
                 autodiff: Optional[str] = None, arg_names: Optional[Sequence[str]] = None,
                 fast_math: Optional[bool] = None) -> None:
        if arg_names is None:
            if not inspect.isfunction(fn):
                raise ZMLXTypeError(f"{kind} expects a Python function, got {type(fn).__name__}")
            functools.update_wrapper(self, fn)
            code = fn.__code__  # positional parameters (inspect.signature costs ~10x more)
            arg_names = code.co_varnames[:code.co_argcount]
            name = name or fn.__name__
        else:
            self.__name__ = self.__qualname__ = name
        self.kind = kind
        self.name = name
        self.compute = dt.from_mx(compute_dtype)
        self.backend = backends.check(backend) if backend else None
        check_axis(kind, name, axis)
        self.axis = axis
        if autodiff not in (None, "mlx", "ir"):
            raise ZMLXTypeError(f"{self.name}: autodiff must be 'mlx' or 'ir', got {autodiff!r}")
        self.autodiff = autodiff
        if fast_math not in (None, True, False):
            raise ZMLXTypeError(f"{self.name}: fast_math must be True, False or None (per output dtype), "
                                f"got {fast_math!r}")
        self.fast_math = fast_math  # None: fast transcendentals when every float output is 16-bit
        self.positional = list(arg_names)
        self.entries: dict = {}  # (argument dtypes and kinds, keyword constants) -> Entry
        self._fast: dict = {}  # (backend, argument dtypes...) -> (compiled, entry) for array-only calls
        if fn is not None:
            source_of(fn)  # fail early (at decoration) when the source cannot be read

    # ---- calling -------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self.backend or backends.default()
        if not kwargs:  # the fast path: all arguments arrays, nothing baked in that could change
            try:
                fast = (target, *map(self._signature, args))
                hit = self._fast.get(fast)
            except AttributeError:  # a Python scalar argument
                hit = None
            if hit is not None:
                return self._run(hit[0], hit[1], list(args), [])
        entry = self._entry(args, kwargs)
        compiled = self._compiled(entry, target)
        if entry.arrays_only and not entry.baked and not kwargs:
            self._fast[fast] = (compiled, entry)
        arrays, params = (list(args), []) if entry.arrays_only else self._split(entry, args)
        return self._run(compiled, entry, arrays, params)

    def _run(self, compiled: Compiled, entry: Entry, arrays: list, params: list) -> Any:
        if self.kind == "elementwise":
            try:
                outs = compiled(arrays + params)
            except ValueError:
                self._check_shapes(arrays)
                raise
        else:
            outs = self._call_rows(compiled, entry, arrays, params)
        return tuple(outs) if entry.is_tuple else outs[0]

    def _signature(self, a: mx.array) -> Any:
        """What a compiled entry is specialised for, of an array argument: its dtype, and in a row
        kernel from a Python body its shape too (the body sees its rows' static lengths)."""
        return a.dtype if self.kind == "elementwise" else (a.dtype, tuple(a.shape))

    def _entry(self, args: tuple, kwargs: dict) -> Entry:
        key = [self._signature(a) if isinstance(a, mx.array) else type(a) for a in args]
        if kwargs:
            key.append(tuple(sorted((k, type(v), v) for k, v in kwargs.items())))
        key = tuple(key)
        entry = self.entries.get(key)
        if entry is None or (entry.baked and entry.stale()):
            entry = self.entries[key] = self.build(args, kwargs)
        return entry

    def _compile(self, entry: Entry, target: str) -> Compiled:
        """autodiff "mlx" (the portable backend's default) lets MLX differentiate the program's
        MLX ops; "ir" (the only choice for C backends, whose kernels MLX cannot see into)
        attaches the generated derivative programs, or the entry's given VJP."""
        autodiff = self.autodiff or ("mlx" if target == "mlx" else "ir")
        if autodiff == "mlx" and target != "mlx":
            raise ZMLXBackendError(f"{self.name}: autodiff='mlx' needs backend='mlx' (MLX cannot "
                                   f"differentiate a {target} kernel); use autodiff='ir'")
        c = entry.compiled[target] = GivenVJP(entry.program, target, *entry.given, fast_math=self.fast_math) \
            if entry.given else Compiled(entry.program, target, autodiff, fast_math=self.fast_math)
        return c

    def _split(self, entry: Entry, args: tuple) -> tuple[list, list]:
        arrays, params = [], []
        for a, slot in zip(args, entry.slots):
            if slot[0] == "array":
                arrays.append(a)
            else:
                if slot[2] is not None and not slot[2][0] <= a <= slot[2][1]:
                    self._overflow(a, slot, entry)
                params.append(mx.array(a, dtype=slot[1].mx))
        return arrays, params

    def _overflow(self, value: int, slot: tuple, entry: Entry) -> None:
        pname = self.positional[entry.slots.index(slot)]
        lo, hi = slot[2]
        raise ZMLXValueError(f"{self.name}(): argument '{pname}' = {value} does not fit the integer type "
                             f"it takes in the kernel ({lo} to {hi}; MLX raises 'Converting {value} ... "
                             "would result in overflow'); pass a value in that range, or an mx.array of the type you mean")

    def _check_shapes(self, arrays: list) -> None:
        """Raise ZMLXShapeError when the array arguments do not broadcast together (checked only
        after the launch failed, so a successful call pays nothing for it)."""
        shapes = [tuple(a.shape) for a in arrays]
        try:
            mx.broadcast_shapes(*shapes)
        except ValueError:
            raise ZMLXShapeError(f"{self.name}: input shapes {', '.join(map(str, shapes))} do not "
                                 "broadcast together") from None

    def _call_rows(self, compiled: Compiled, entry: Entry, arrays: list, params: list) -> list:
        if entry.program.lengths:
            return self._call_own_rows(compiled, entry, arrays, params)
        shapes = [a.shape for a in arrays]
        try:
            shape = tuple(mx.broadcast_shapes(*shapes)) if shapes else ()
        except ValueError:
            raise ZMLXShapeError(f"{self.name}: input shapes {', '.join(map(str, shapes))} do not "
                                 "broadcast together (row kernels broadcast their inputs first)") from None
        if not shape:
            raise ZMLXShapeError(f"{self.name}: row kernels need at least 1-D inputs (got 0-d)")
        axis = self.axis % len(shape) if -len(shape) <= self.axis < len(shape) else None
        if axis is None:
            raise ZMLXShapeError(f"{self.name}: axis {self.axis} is out of range for inputs of shape {shape}")
        rows = []
        for a in arrays:  # on the last axis, backends broadcast (without copies) themselves
            if axis != len(shape) - 1:
                a = mx.moveaxis(mx.broadcast_to(a, shape) if a.shape != shape else a, axis, -1)
            rows.append(a)
        outs = compiled(rows + params)
        result = []
        for o, flag in zip(outs, entry.row_flags):
            if flag:
                o = o.reshape(o.shape[:-1]) if o.ndim and o.shape[-1] == 1 else o
            elif axis != len(shape) - 1:
                o = mx.moveaxis(o, -1, axis)
            result.append(o)
        return result

    def _call_own_rows(self, compiled: Compiled, entry: Entry, arrays: list, params: list) -> list:
        """A row kernel whose inputs keep their own row lengths (a Python body): the rows are the
        inputs' last axes, broadcast over their leading axes; per-row outputs lose the row axis."""
        rows, axis = self._rows(arrays)
        outs = compiled(rows + params)
        return [o.reshape(o.shape[:-1]) if flag else o if axis is None else mx.moveaxis(o, -1, axis)
                for o, flag in zip(outs, entry.row_flags)]

    def _rows(self, arrays: list) -> tuple[list, Optional[int]]:
        """The array arguments as the program's rows (row_inputs), and the axis moved last when the
        kernel reduces another one (the arguments are then broadcast together first)."""
        n = max(a.ndim for a in arrays)
        if n and self.axis not in (-1, n - 1):
            self._check_shapes(arrays)
            shape = tuple(mx.broadcast_shapes(*[a.shape for a in arrays]))
            if not -len(shape) <= self.axis < len(shape):
                raise ZMLXShapeError(f"{self.name}: axis {self.axis} is out of range for inputs of shape {shape}")
            axis = self.axis % len(shape)
            return [mx.moveaxis(mx.broadcast_to(a, shape), axis, -1) for a in arrays], axis
        rows = row_inputs(arrays, self.name)
        try:
            mx.broadcast_shapes(*[a.shape[:-1] for a in rows])
        except ValueError:
            raise ZMLXShapeError(f"{self.name}: the inputs' leading axes (all but the rows) "
                                 f"{', '.join(str(tuple(a.shape[:-1])) for a in rows)} do not broadcast "
                                 "together") from None
        return rows, None

    # ---- building ------------------------------------------------------------------------
    def build(self, args: tuple, kwargs: dict) -> Entry:
        """The program and calling convention for these arguments (compiled per backend on use)."""
        if len(args) > len(self.positional):
            raise ZMLXTypeError(f"{self.name}() takes {len(self.positional)} positional argument"
                                f"{'s' * (len(self.positional) != 1)} but {len(args)} were given")
        values, slots, inputs, params = [], [], [], []
        for pname, a in zip(self.positional, args):
            if isinstance(a, np.ndarray):
                raise ZMLXTypeError(f"{self.name}(): argument '{pname}' is a NumPy array; pass mx.array({pname})")
            if isinstance(a, mx.array):
                n = Node("input", (), dt.from_mx(a.dtype), pname)
                slots.append(("array", len(inputs)))
                inputs.append(n)
                values.append(n)
            elif isinstance(a, _SCALARS):
                n = Node("param", (), dt.weak_kind(a), pname)
                slots.append(("param", n.dtype, n))
                params.append(n)
                values.append(Weak(n))
            else:
                raise ZMLXTypeError(f"{self.name}(): argument '{pname}' must be an mx.array or a Python "
                                    f"scalar, got {type(a).__name__}")
        if not inputs:
            raise ZMLXTypeError(f"{self.name}(): at least one argument must be an mx.array")
        lengths = ()
        if self.kind != "elementwise":
            arrays = [a for a in args if isinstance(a, mx.array)]
            rows, moved = self._rows(arrays)
            lengths = tuple(a.shape[-1] for a in rows)
            for x, a, r in zip(inputs, arrays, rows):  # one value per row ((R,) or 0-d): 0-d in the body
                if moved is None and r.ndim != a.ndim:
                    values[values.index(x)] = gather(x, const(0, dt.int32), 1)
        parser = Parser("row" if self.kind != "elementwise" else "elementwise", dict(zip(inputs, lengths)))
        body = parser.parse(self.__wrapped__, values, kwargs)
        outputs = []
        src = source_of(self.__wrapped__)
        for k, o in enumerate(body.outputs):
            if isinstance(o, Node):
                outputs.append(o)
                continue
            what = "a Python constant" if isinstance(o, _SCALARS) else \
                "only scalar arguments" if isinstance(o, Weak) else type(o).__name__
            raise ZMLXTypeError(f"output {k} of '{self.name}' depends on {what}; a kernel output must be "
                                "computed from at least one array argument", src.loc(src.fdef))
        outs = optimize(widen(outputs, self.compute))
        kept = [False] * len(outs)  # a reduce output the body returns with shape (1,): MLX's keepdims
        if self.kind == "reduce":  # a row of one (MLX's shape (1,) of a per-row value) is one value per row
            length = row_lengths(outs, dict(zip(inputs, lengths)))
            kept = [length[o] == 1 and not per_row([o])[o] for o in outs]
            outs = [gather(o, const(0, dt.int32), 1) if k else o for o, k in zip(outs, kept)]
        flags = [per_row(outs)[o] for o in outs] if self.kind != "elementwise" else [False] * len(outs)
        if self.kind == "reduce" and not all(flags):
            k = flags.index(False)
            raise ZMLXSyntaxError(f"output {k} of reduce kernel '{self.name}' is not one value per row; "
                                  "reduce it (e.g. .sum()) or use @zmlx.map_reduce to return rows",
                                  src.loc(src.fdef))
        kind = "elementwise" if self.kind == "elementwise" else "row"
        program = Program(self.name, kind, tuple(inputs), tuple(params), tuple(outs), lengths)
        ranges = _param_ranges(program)
        slots = [s if s[0] == "array" else s[:2] + (ranges.get(s[2]),) for s in slots]
        return Entry(program, slots, body.is_tuple, [f and not k for f, k in zip(flags, kept)], body.baked)

    # ---- inspection ----------------------------------------------------------------------
    def program(self, *args: Any, **kwargs: Any) -> Program:
        return self._entry(args, kwargs).program

    def ir(self, *args: Any, **kwargs: Any) -> str:
        """The kernel's IR for these argument types, as readable text."""
        return self.program(*args, **kwargs).text()

    def grad_ir(self, *args: Any, **kwargs: Any) -> str:
        """The backward program's IR: the given VJP where the kernel has one (grad_expr), else the
        generated one (cotangents are inputs cotan0, cotan1, …)."""
        entry = self._entry(args, kwargs)
        if entry.given:
            return entry.given[0].text()
        return self._compiled(entry, "mlx").backward[0].program.text()

    def source(self, *args: Any, backend: Optional[str] = None, **kwargs: Any) -> str:
        """The source the backend compiles for these arguments (full kernel text for C backends)."""
        target = backend or self.backend or backends.default()
        return backends.get(target).source(self.program(*args, **kwargs), target, self._launch_arrays(args),
                                           self.fast_math)

    def grad_source(self, *args: Any, backend: Optional[str] = None, **kwargs: Any) -> str:
        """The backward kernel's source on a backend."""
        target = backend or self.backend or backends.default()
        entry = self._entry(args, kwargs)
        compiled = self._compiled(entry, target)
        bwd, roles = compiled.backward[:2]
        arrays = self._launch_arrays(args)
        outs = self(*args, **kwargs)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        # the backward reads per-row outputs (and their cotangents) as (rows, 1), before the squeeze
        outs = [o[..., None] if flag else o for o, flag in zip(outs, entry.row_flags)]
        pick = {"x": arrays, "g": outs, "y": outs}
        return backends.get(target).source(bwd.program, target, [pick[r][k] for r, k in roles], self.fast_math,
                                           summed=compiled.row_sums(arrays))

    def compiled_for(self, args: tuple, kwargs: dict, target: str) -> Compiled:
        """The kernel compiled for these arguments on a backend."""
        return self._compiled(self._entry(args, kwargs), target)

    def _compiled(self, entry: Entry, target: str) -> Compiled:
        return entry.compiled.get(target) or self._compile(entry, target)

    def _launch_arrays(self, args) -> list:
        arrays = [a for a in args if isinstance(a, mx.array)]
        return self._rows(arrays)[0] if self.program(*args).lengths else arrays

    def __repr__(self) -> str:
        return f"<zmlx_dsl {self.kind} kernel '{self.name}'>"

    def __get__(self, obj, objtype=None):
        return self if obj is None else functools.partial(self, obj)
