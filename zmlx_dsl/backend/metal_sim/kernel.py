"""`metal_kernel`: the same interface as `mx.fast.metal_kernel`, executed on the CPU."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np

from ..metal_source import (MAX_CONSTANT_ARRAY_SIZE, build_metal_source, kernel_name, shape_infos,
                            type_name, used_attributes, _template_value)
from . import compiler
from ._worker import UNLOADABLE
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


def _strided_layout(a: np.ndarray) -> tuple[bytes, list[int]]:
    """Bytes and element strides of `a` laid out with a padded (non-contiguous) row pitch."""
    pad = 3
    padded = np.empty(a.shape[:-1] + (a.shape[-1] + pad,), dtype=a.dtype)
    padded.view(np.uint8).fill(0xFF)
    padded[..., : a.shape[-1]] = a
    strides = [s // a.itemsize for s in padded.strides]
    return padded.tobytes(), strides


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
        inst += "<" + ", ".join(_template_value(v)[1] for _, v in template) + ">"
    joined = ",\n    ".join(args)
    return (f'extern "C" void zsim_entry(void** b, const zsim_attrs* a) {{\n'
            f"  (void)a;\n  {inst}(\n    {joined});\n}}\n")


class MetalSimKernel:
    """A kernel built by `metal_kernel`; calling it compiles (cached) and runs it in the worker."""

    def __init__(self, name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str, ensure_row_contiguous: bool, atomic_outputs: bool,
                 race_check: bool | None, strided_inputs: bool | None, timeout: float | None) -> None:
        if not output_names:
            raise ValueError("[metal_kernel] Must specify at least one output.")
        self.name, self.input_names, self.output_names = name, list(input_names), list(output_names)
        self.source, self.header = source, header
        self.ensure_row_contiguous, self.atomic_outputs = ensure_row_contiguous, atomic_outputs
        self.race_check = _env_flag("ZMLX_METAL_SIM_RACE_CHECK") if race_check is None else race_check
        self.strided_inputs = (_env_flag("ZMLX_METAL_SIM_STRIDED") if strided_inputs is None
                               else strided_inputs) and not ensure_row_contiguous
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
        buffers = self._input_buffers(arrays)
        out_index = []
        for n, s, d in zip(self.output_names, output_shapes, output_dtypes):
            out_index.append(len(buffers))
            buffers.append((n, self._initial_output(s, d, init_value)[0]))
        request = {"runtime": compiler.runtime_library(), "kernel": so, "buffers": buffers,
                   "outputs": out_index, "grid": [int(g) for g in grid], "threadgroup": list(tg),
                   "schedules": [0, 1] if self.race_check else [0]}
        reply = self._launch(request)
        if not reply["ok"]:
            raise MetalSimError(self._describe_failure(reply, metal, body_line))
        outs = reply["outputs"]
        if self.race_check:
            self._compare_schedules(outs, output_shapes, output_dtypes)
        return [_from_bytes(b, s, d) for b, s, d in zip(outs[0], output_shapes, output_dtypes)]

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

    def _input_buffers(self, arrays: list[mx.array]) -> list[tuple[str, bytes]]:
        """Buffers in MLX's binding order: each input, then its shape/strides/ndim when used."""
        buffers: list[tuple[str, bytes]] = []
        for n, x, (sh, st, nd) in zip(self.input_names, arrays, shape_infos(self.input_names, self.source)):
            a = _to_numpy(x)
            if self.strided_inputs and a.ndim >= 2:
                data, strides = _strided_layout(a)
            else:
                data, strides = a.tobytes(), [s // max(1, a.itemsize) for s in a.strides]
            buffers.append((n, data))
            if a.ndim > 0:
                if sh:
                    buffers.append((f"{n}_shape", np.array(a.shape, np.int32).tobytes()))
                if st:
                    buffers.append((f"{n}_strides", np.array(strides, np.int64).tobytes()))
                if nd:
                    buffers.append((f"{n}_ndim", np.array(a.ndim, np.int32).tobytes()))
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

    def _compare_schedules(self, outs: list[list[bytes]], shapes: Sequence[Sequence[int]],
                           dtypes: Sequence[mx.Dtype]) -> None:
        for n, a, b, s, d in zip(self.output_names, outs[0], outs[1], shapes, dtypes):
            if a == b:
                continue
            x = np.frombuffer(a, _np_dtype(d)).astype(np.float64 if d != mx.bfloat16 else np.uint16)
            y = np.frombuffer(b, _np_dtype(d)).astype(np.float64 if d != mx.bfloat16 else np.uint16)
            if d in (mx.float32, mx.float16) and np.allclose(x, y, rtol=1e-4, atol=1e-6, equal_nan=True):
                continue  # atomics accumulating floats in another order round differently
            i = int(np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))))[0])
            idx = tuple(int(v) for v in np.unravel_index(i, tuple(s))) if len(s) else ()
            raise MetalSimError(f"metal-sim race check: output `{n}` differs between two thread schedules "
                                f"(forward and reversed order of threads and threadgroups) at index "
                                f"{idx}: {x[i]} vs {y[i]}; threads read data written by other threads "
                                f"without a barrier, or write the same element")

    def _describe_failure(self, r: dict[str, Any], metal: str, body_line: int) -> str:
        code = r["code"]
        where = f"thread_position_in_grid {tuple(r['thread'])}" if "thread" in r else ""
        sched = " (race-check schedule: reversed order)" if r.get("reverse") else ""
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
                name, off, size = fault
                access = "write" if r["write"] else "read"
                return (f"metal-sim: kernel `{self.name}`: out-of-bounds {access} of buffer `{name}` at byte "
                        f"offset {off} (the buffer has {size} bytes) by {where}{sched}")
            return f"metal-sim: kernel `{self.name}`: {what} at address {fault:#x} in {where}{sched}"
        return f"metal-sim: kernel `{self.name}`: worker error: {r['msg']}"


def metal_kernel(name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str = "", ensure_row_contiguous: bool = True, atomic_outputs: bool = False,
                 compile_options: Any = None, *, race_check: bool | None = None,
                 strided_inputs: bool | None = None, timeout: float | None = None) -> Callable[..., list[mx.array]]:
    """Drop-in for `mx.fast.metal_kernel` that runs the Metal kernel on the CPU (metal-sim).

    Extra options (None = environment): `race_check` (ZMLX_METAL_SIM_RACE_CHECK) runs every launch in
    two thread schedules and compares outputs; `strided_inputs` (ZMLX_METAL_SIM_STRIDED) lays inputs
    of ndim >= 2 out with a padded row pitch when `ensure_row_contiguous=False`; `timeout` in seconds
    (ZMLX_METAL_SIM_TIMEOUT, default 60).
    """
    del compile_options
    return MetalSimKernel(name, input_names, output_names, source, header, ensure_row_contiguous,
                          atomic_outputs, race_check, strided_inputs, timeout)
