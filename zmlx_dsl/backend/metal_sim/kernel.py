"""`metal_kernel`: the same interface as `mx.fast.metal_kernel`, executed on the CPU."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np

from ..metal_source import (MAX_CONSTANT_ARRAY_SIZE, build_metal_source, kernel_name, shape_infos,
                            type_name, used_attributes, template_value)
from . import compiler
from .worker_process import UNLOADABLE
from .errors import MetalSimError
from .worker import WORKER_PROCESS

MAX_THREADS_PER_THREADGROUP = 1024
_SIGNALS = {4: "illegal instruction (e.g. __builtin_trap or unreachable code)", 5: "trap", 7: "bus error",
            8: "arithmetic exception (integer division by zero?)", 11: "segmentation fault"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _np_dtype(dt: mx.Dtype) -> np.dtype:
    """NumPy storage dtype of an MLX dtype (bfloat16 travels as uint16 bits)."""
    return np.dtype("uint16") if dt == mx.bfloat16 else np.dtype(str(dt).rsplit(".", 1)[-1].replace("bool", "bool_"))


def _to_numpy(x: mx.array) -> np.ndarray:
    """Row-contiguous host copy of an mx array."""
    return np.ascontiguousarray(np.array(x.view(mx.uint16) if x.dtype == mx.bfloat16 else x))


def _from_bytes(data: bytes, shape: Sequence[int], dt: mx.Dtype) -> mx.array:
    arr = mx.array(np.frombuffer(data, dtype=_np_dtype(dt)).reshape(tuple(shape)))
    return arr.view(mx.bfloat16) if dt == mx.bfloat16 else arr


LAYOUTS = ("contiguous", "padded", "views", "mlx")
"""How metal-sim lays out inputs of ndim >= 1 when `ensure_row_contiguous=False` (`strided_inputs`):
contiguous: a row-contiguous copy. padded: rows with a padded pitch (3 poison elements per row).
mlx: exactly the view MLX passes (its strides, which may be negative or 0, the pointer at the
view's first element). views (the default): the launch runs with MLX's own views and again with
every input laid out as a strided view whose axes are alternately stored reversed and padded
(see `_view_strides`); all runs must give the same outputs. A layout in which a view reaches below
its pointer runs twice, each storage once against its trailing and once against its leading guard
page (see `MetalSimKernel._runs`)."""
_PAD = 3  # poison elements after each padded row
VIEWS_TEXT = ("axes stored alternately reversed, i.e. with negative strides, and padded; the pointer at each "
              "view's first element")


def _layout_option(value: bool | str | None) -> str:
    """The input layout named by `strided_inputs` (None: $ZMLX_METAL_SIM_STRIDED, default views)."""
    what = "strided_inputs"
    if value is None:
        value, what = os.environ.get("ZMLX_METAL_SIM_STRIDED", "").strip().lower() or "views", \
            "$ZMLX_METAL_SIM_STRIDED"
    if value is True or value in ("1", "true", "yes", "on"):
        return "padded"
    if value is False or value in ("0", "false", "no", "off"):
        return "contiguous"
    if value not in LAYOUTS:
        raise ValueError(f"metal-sim: {what} must be True, False or one of {', '.join(LAYOUTS)}; got {value!r}")
    return value


def _host(x: mx.array) -> np.ndarray:
    """A NumPy view of x's memory with MLX's own strides (bfloat16 as uint16 bits)."""
    return np.asarray(x.view(mx.uint16) if x.dtype == mx.bfloat16 else x)


def _mlx_strides(a: np.ndarray) -> list[int]:
    """Element strides of the host view of an MLX array: MLX's strides (negative for x[::-1], 0
    on the broadcast axes of mx.broadcast_to)."""
    return [s // a.itemsize for s in a.strides] if a.itemsize else [0] * a.ndim


def _view_strides(shape: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Element strides of a strided view holding an array of this shape whose MLX strides are
    `strides`: the stored axes (all but the broadcast ones, which keep stride 0) in the array's
    own memory order (innermost = smallest |stride|; a transpose stays column-major), the
    innermost stored reversed (stride -1), each further one padded (_PAD poison elements after
    each of its rows) and alternately forward and reversed; size-1 axes get the pitch they would
    have. A (5, 7, 3) array gets strides (-45, 6, -1): its first element, where the kernel's
    pointer points, lies 2 + 4 * 45 elements into a storage of 219 elements.
    """
    order = sorted(range(len(shape)), key=lambda d: (-abs(strides[d]), d))
    out = [0] * len(shape)
    pitch, j = 1, 0
    for d in reversed(order):
        if shape[d] > 1 and strides[d] == 0:
            continue  # broadcast: MLX passes stride 0
        if shape[d] <= 1:
            out[d] = pitch
            continue
        out[d] = -pitch if j % 2 == 0 else pitch
        pitch = pitch * shape[d] + _PAD
        j += 1
    return out


def _storage(a: np.ndarray, strides: Sequence[int]) -> tuple[bytes, int]:
    """The storage of a view of `a` with these element strides (signed; 0 only on axes along which
    `a` is constant) as (bytes, byte offset of element (0, ..., 0), the kernel's pointer): it spans
    exactly the elements the view reaches, bytes between them hold 0xFF poison."""
    if a.size == 0:
        return b"", 0
    lo = sum(min(0, (n - 1) * s) for n, s in zip(a.shape, strides))
    hi = sum(max(0, (n - 1) * s) for n, s in zip(a.shape, strides))
    storage = np.empty(hi - lo + 1, dtype=a.dtype)
    storage.view(np.uint8).fill(0xFF)
    view = np.ndarray(a.shape, a.dtype, buffer=storage, offset=-lo * a.itemsize,
                      strides=[s * a.itemsize for s in strides])
    view[...] = a
    return storage.tobytes(), -lo * a.itemsize


def _strided_layout(a: np.ndarray) -> tuple[bytes, list[int]]:
    """Bytes and element strides of `a` laid out with a padded (non-contiguous) row pitch."""
    padded = np.empty(a.shape[:-1] + (a.shape[-1] + _PAD,), dtype=a.dtype)
    padded.view(np.uint8).fill(0xFF)
    padded[..., : a.shape[-1]] = a
    strides = [s // a.itemsize for s in padded.strides]
    return padded.tobytes(), strides


def _layout(x: mx.array, layout: str) -> tuple[bytes, int, list[int]]:
    """(storage bytes, byte offset of the kernel's pointer into them, element strides) of input x."""
    if x.ndim == 0 or layout == "contiguous" or (layout == "padded" and x.ndim < 2):
        a = _to_numpy(x)
        return a.tobytes(), 0, [s // max(1, a.itemsize) for s in a.strides]
    if layout == "padded":
        data, strides = _strided_layout(_to_numpy(x))
        return data, 0, strides
    a = _host(x)
    strides = _mlx_strides(a)
    if layout == "views":
        strides = _view_strides(a.shape, strides)
    data, offset = _storage(a, strides)
    return data, offset, strides


def _entry_point(kname: str, template: Sequence[tuple[str, Any]] | None, input_names: Sequence[str],
                 inputs: Sequence[mx.array], output_names: Sequence[str], output_dtypes: Sequence[mx.Dtype],
                 source: str, atomic_outputs: bool) -> str:
    """C++ glue calling the kernel with buffer pointers and one thread's attribute values."""
    args: list[str] = []
    k = 0
    for n, x, (sh, st, nd) in zip(input_names, inputs, shape_infos(input_names, source)):
        space = "constant" if x.size < MAX_CONSTANT_ARRAY_SIZE else "device"
        t = type_name(x.dtype)
        args.append(f"*(const {space} {t}*)b[{k}]" if x.ndim == 0 else f"(const {space} {t}*)b[{k}]")
        k += 1
        if x.ndim > 0:
            for used, cast in ((sh, "(const constant int*)b[{}]"), (st, "(const constant int64_t*)b[{}]"),
                               (nd, "*(const constant int*)b[{}]")):
                if used:
                    args.append(cast.format(k))
                    k += 1
    for dt in output_dtypes:
        t = type_name(dt)
        args.append(f"(device {'atomic<' + t + '>' if atomic_outputs else t}*)b[{k}]")
        k += 1
    args += [compiler.ATTRIBUTE_VALUES[a] for a in used_attributes(source)]
    inst = kname
    if template:
        inst += "<" + ", ".join(template_value(v)[1] for _, v in template) + ">"
    joined = ",\n    ".join(args)
    return (f'extern "C" void zsim_entry(void** b, const zsim_attrs* a) {{\n'
            f"  (void)a;\n  {inst}(\n    {joined});\n}}\n")


class MetalSimKernel:
    """A kernel built by `metal_kernel`; calling it compiles (cached) and runs it in the worker."""

    def __init__(self, name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str, ensure_row_contiguous: bool, atomic_outputs: bool,
                 race_check: bool | None, strided_inputs: bool | str | None, timeout: float | None) -> None:
        if not output_names:
            raise ValueError("[metal_kernel] Must specify at least one output.")
        self.name, self.input_names, self.output_names = name, list(input_names), list(output_names)
        self.source, self.header = source, header
        self.ensure_row_contiguous, self.atomic_outputs = ensure_row_contiguous, atomic_outputs
        self.race_check = _env_flag("ZMLX_METAL_SIM_RACE_CHECK") if race_check is None else race_check
        self.layout = "contiguous" if ensure_row_contiguous else _layout_option(strided_inputs)
        self.timeout = timeout or float(os.environ.get("ZMLX_METAL_SIM_TIMEOUT", "60"))
        self._compiled: dict[tuple, tuple[str, str, int]] = {}

    def __call__(self, *, inputs: Sequence[Any], output_shapes: Sequence[Sequence[int]],
                 output_dtypes: Sequence[mx.Dtype], grid: tuple[int, int, int],
                 threadgroup: tuple[int, int, int], template: Sequence[tuple[str, Any]] | None = None,
                 init_value: float | None = None, verbose: bool = False, stream: Any = None) -> list[mx.array]:
        """Run the kernel over `grid` threads (Metal's dispatchThreads) and return its outputs."""
        del stream
        for got, want, what in ((len(inputs), len(self.input_names), "inputs"),
                                (len(output_shapes), len(self.output_names), "output_shapes"),
                                (len(output_dtypes), len(self.output_names), "output_dtypes")):
            if got != want:
                raise ValueError(f"[metal_kernel] Expected `{what}` to have size {want} but got size {got}.")
        arrays = [x if isinstance(x, mx.array) else mx.array(x) for x in inputs]
        metal, so, body_line = self._compile(arrays, list(output_dtypes), template, verbose)
        tg = tuple(min(int(t), int(g)) for t, g in zip(threadgroup, grid))
        if any(int(g) <= 0 for g in grid):
            return [self._initial_output(s, d, init_value)[1] for s, d in zip(output_shapes, output_dtypes)]
        if np.prod(tg) > MAX_THREADS_PER_THREADGROUP:
            raise ValueError(f"Thread group size ({int(np.prod(tg))}) is greater than  the maximum allowed "
                             f"threads per threadgroup ({MAX_THREADS_PER_THREADGROUP}).")
        outputs = [(n, self._initial_output(s, d, init_value)[0], 0, _np_dtype(d).itemsize, False)
                   for n, s, d in zip(self.output_names, output_shapes, output_dtypes)]
        runs = self._runs(arrays, outputs)
        request = {"runtime": compiler.runtime_library(), "kernel": so, "runs": runs,
                   "outputs": list(range(len(runs[0]["buffers"]) - len(outputs), len(runs[0]["buffers"]))),
                   "grid": [int(g) for g in grid], "threadgroup": list(tg)}
        reply = self._launch(request)
        if not reply["ok"]:
            raise MetalSimError(self._describe_failure(reply, metal, body_line, runs))
        outs = reply["outputs"]
        for run, got in zip(runs[1:], outs[1:]):
            self._compare(outs[0], got, output_shapes, output_dtypes, run["why"])
        return [_from_bytes(b, s, d) for b, s, d in zip(outs[0], output_shapes, output_dtypes)]

    def _runs(self, arrays: list[mx.array], outputs: list[tuple]) -> list[dict[str, Any]]:
        """The launches of one call, threads in order: the inputs in the kernel's layout (in the
        views layout: as MLX passes them, then as reversed and padded strided views), each
        storage against its trailing guard page, and for a layout in which an input's view reaches
        below its pointer (a negative stride) once more with each storage against its leading
        guard page (a guard page catches accesses exactly at one end of a storage only); with
        the race check, last the first run's buffers with threads and threadgroups in reverse
        order. Every run's outputs must equal the first run's."""
        layouts = [("mlx", ""), ("views", "views")] if self.layout == "views" else [(self.layout, "")]
        runs: list[dict[str, Any]] = []
        for layout, why in layouts:
            if why and not any(x.ndim > 0 and x.size > 0 for x in arrays):
                continue  # no strided views to pass
            bufs = self._input_buffers(arrays, layout)
            runs.append({"reverse": 0, "buffers": bufs + outputs, "why": why})
            if any(spec[2] for spec in bufs):
                runs.append({"reverse": 0, "buffers": [spec[:4] + (True,) for spec in bufs] + outputs,
                             "why": why})
        if self.race_check:
            runs.append({"reverse": 1, "buffers": runs[0]["buffers"], "why": "race"})
        return runs

    def _launch(self, request: dict[str, Any]) -> dict[str, Any]:
        """The worker's reply; a cached library it cannot load is rebuilt once (see compiler.rebuild)."""
        rebuilt: set[str] = set()
        while True:
            reply = WORKER_PROCESS.call(request, self.timeout)
            if reply["ok"] or reply["code"] != UNLOADABLE:
                return reply
            if reply["path"] in rebuilt:
                raise MetalSimError(f"metal-sim: kernel `{self.name}`: {reply['path']} cannot be loaded even "
                                    f"after rebuilding it from source: {reply['msg']}")
            rebuilt.add(reply["path"])
            compiler.rebuild(reply["path"], reply["msg"])

    def _compile(self, arrays: list[mx.array], output_dtypes: list[mx.Dtype],
                 template: Sequence[tuple[str, Any]] | None, verbose: bool) -> tuple[str, str, int]:
        key = (tuple((x.dtype, x.ndim == 0, x.size < MAX_CONSTANT_ARRAY_SIZE) for x in arrays),
               tuple(output_dtypes), tuple((n, str(v), type(v)) for n, v in (template or ())))
        hit = self._compiled.get(key)
        if hit is None:
            metal = build_metal_source(self.name, self.input_names, self.output_names, self.source,
                                       self.header, arrays, template=template,
                                       atomic_outputs=self.atomic_outputs, output_dtypes=output_dtypes)
            kname = kernel_name(self.name, arrays, output_dtypes, template)
            entry = _entry_point(kname, template, self.input_names, arrays, self.output_names,
                                 output_dtypes, self.source, self.atomic_outputs)
            end = metal.rfind(self.source + "\n}\n")
            body_line = metal[:end].count("\n") + 1
            so = compiler.compile_kernel(metal, entry, self.source, body_line, self.name)
            hit = self._compiled[key] = (metal, so, body_line)
        if verbose:
            print(f"Generated source code for `{self.name}`:\n```\n{hit[0]}\n```", flush=True)
        return hit

    def _input_buffers(self, arrays: list[mx.array], layout: str) -> list[tuple]:
        """Buffers in MLX's binding order: each input, then its shape/strides/ndim when used, as
        the worker's (name, bytes, pointer offset, itemsize, front=False) (see worker_process.Guarded)."""
        buffers: list[tuple] = []
        for n, x, (sh, st, nd) in zip(self.input_names, arrays, shape_infos(self.input_names, self.source)):
            data, offset, strides = _layout(x, layout)
            buffers.append((n, data, offset, _np_dtype(x.dtype).itemsize, False))
            if x.ndim > 0:
                for used, name, value in ((sh, "shape", np.array(x.shape, np.int32)),
                                          (st, "strides", np.array(strides, np.int64)),
                                          (nd, "ndim", np.array(x.ndim, np.int32))):
                    if used:
                        buffers.append((f"{n}_{name}", value.tobytes(), 0, value.itemsize, False))
        return buffers

    @staticmethod
    def _initial_output(shape: Sequence[int], dt: mx.Dtype, init: float | None) -> tuple[bytes, mx.array]:
        """Output bytes before the launch: `init_value`, else 0xFF poison (NaN for floats)."""
        n = int(np.prod(shape)) * _np_dtype(dt).itemsize
        if init is None:
            data = b"\xff" * n
        else:
            data = _to_numpy(mx.full(tuple(shape), init, dtype=dt)).tobytes()
        return data, _from_bytes(data, shape, dt)

    def _compare(self, first: list[bytes], other: list[bytes], shapes: Sequence[Sequence[int]],
                 dtypes: Sequence[mx.Dtype], why: str) -> None:
        """MetalSimError unless another run's outputs equal the first run's (floats within rounding:
        atomics accumulating floats in another order, or a vector path rounding once less)."""
        for n, a, b, s, d in zip(self.output_names, first, other, shapes, dtypes):
            if a == b:
                continue
            x, y = np.frombuffer(a, _np_dtype(d)), np.frombuffer(b, _np_dtype(d))
            if d in (mx.float32, mx.float16, mx.bfloat16):
                if d == mx.bfloat16:  # bits -> float32
                    x, y = ((v.astype(np.uint32) << 16).view(np.float32) for v in (x, y))
                x, y = x.astype(np.float64), y.astype(np.float64)
                if np.allclose(x, y, rtol=1e-4 if why == "race" else 1e-5, atol=1e-6, equal_nan=True):
                    continue
                i = int(np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))[0])
            else:
                i = int(np.flatnonzero(x != y)[0])
            idx = tuple(int(v) for v in np.unravel_index(i, tuple(s))) if len(s) else ()
            if why == "race":
                raise MetalSimError(f"metal-sim race check: output `{n}` differs between two thread schedules "
                                    f"(forward and reversed order of threads and threadgroups) at index "
                                    f"{idx}: {x[i]} vs {y[i]}; threads read data written by other threads "
                                    f"without a barrier, or write the same element")
            raise MetalSimError(
                f"metal-sim: kernel `{self.name}`: output `{n}` at index {idx} is {x[i]} for the inputs as "
                f"given but {y[i]} for the same inputs passed as other strided views ({VIEWS_TEXT}): with "
                f"ensure_row_contiguous=False, MLX passes each input as its view; read input elements at "
                f"offsets computed from <name>_shape and <name>_strides in signed 64-bit arithmetic "
                f"(elem_to_loc), or set ensure_row_contiguous=True")

    def _describe_failure(self, r: dict[str, Any], metal: str, body_line: int,
                          runs: list[dict[str, Any]]) -> str:
        code = r["code"]
        where = f"thread_position_in_grid {tuple(r['thread'])}" if "thread" in r else ""
        run = runs[r.get("run", 0)]
        sched = " (race-check schedule: reversed order)" if r.get("reverse") else ""
        if run["why"] == "views":
            sched += f" (inputs passed as strided views: {VIEWS_TEXT})"
        if code == 2:  # synchronisation error with @L<line> markers
            msg = r["msg"]
            for line in sorted({int(m) for m in re.findall(r"@L(\d+)", msg)}, reverse=True):
                msg = msg.replace(f"@L{line}", compiler.describe_line(metal, line, body_line))
            return f"metal-sim: kernel `{self.name}`: {msg} (threadgroup {tuple(r['group'])}){sched}"
        if code == 3:
            return (f"metal-sim: kernel `{self.name}`: threadgroup memory exceeds 32 KiB "
                    f"({r['tg_bytes']} bytes requested)")
        if code == 5:
            return f"metal-sim: kernel `{self.name}`: stack overflow in {where} (deep recursion or huge local arrays)"
        if code == 1:
            fault = r["fault"]
            what = _SIGNALS.get(r["sig"], f"signal {r['sig']}")
            if isinstance(fault, tuple):
                i, off, lo, hi, wrap = fault
                name = run["buffers"][i][0]
                access = "write" if r["write"] else "read"
                head = f"metal-sim: kernel `{self.name}`: out-of-bounds {access} of buffer `{name}` at byte offset"
                if wrap:
                    unit = "2**32 elements" if wrap > 2**32 else "2**32 bytes"
                    return (f"{head} {off} from its pointer, {unit} past byte offset {off - wrap}, which is "
                            f"inside its storage: a negative offset (a negative stride: a reversed axis) "
                            f"computed in 32-bit unsigned arithmetic wrapped around; compute offsets from "
                            f"`{name}_strides` in signed 64-bit (int64_t) by {where}{sched}")
                if lo == 0:
                    return f"{head} {off} (the buffer has {hi} bytes) by {where}{sched}"
                return (f"{head} {off} from its pointer (`{name}` is a strided view: its storage spans byte "
                        f"offsets {lo} to {hi} of the pointer, which points at the view's first element) by "
                        f"{where}{sched}")
            return f"metal-sim: kernel `{self.name}`: {what} at address {fault:#x} in {where}{sched}"
        return f"metal-sim: kernel `{self.name}`: worker error: {r['msg']}"


def metal_kernel(name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str = "", ensure_row_contiguous: bool = True, atomic_outputs: bool = False,
                 compile_options: Any = None, *, race_check: bool | None = None,
                 strided_inputs: bool | str | None = None,
                 timeout: float | None = None) -> Callable[..., list[mx.array]]:
    """Drop-in for `mx.fast.metal_kernel` that runs the Metal kernel on the CPU (metal-sim).

    Extra options (None = environment): `race_check` (ZMLX_METAL_SIM_RACE_CHECK) runs every launch in
    two thread schedules and compares outputs; `strided_inputs` (ZMLX_METAL_SIM_STRIDED) is how inputs
    are laid out when `ensure_row_contiguous=False` (see LAYOUTS): "views" (the default: as MLX passes
    them, then as reversed and padded strided views, outputs compared), "mlx" (only as MLX passes
    them), "padded" (or True / 1: a padded row pitch for ndim >= 2) or "contiguous" (or False / 0: a
    row-contiguous copy, as with ensure_row_contiguous=True); `timeout` in seconds
    (ZMLX_METAL_SIM_TIMEOUT, default 60).
    """
    del compile_options
    return MetalSimKernel(name, input_names, output_names, source, header, ensure_row_contiguous,
                          atomic_outputs, race_check, strided_inputs, timeout)
