"""Compile MLX-wrapped Metal kernels as C++14 shared objects (clang-19 or PyPI ziglang), cached on disk."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import MetalSimError

HERE = Path(__file__).resolve().parent
COMPAT_H = HERE / "metal_compat.h"
RUNTIME_C = HERE / "runtime.c"
SOURCE_NAME = "kernel.metal"

# Non-MSL C++ (and host facilities) that a kernel must not use.
POISONED = "double std new delete throw try catch malloc calloc realloc free printf puts exit abort"

COMMON_FLAGS = ["-O2", "-fPIC", "-shared", "-nostdlib", "-march=native", "-ffp-contract=off",
                "-fno-exceptions", "-fno-math-errno", "-Wno-unknown-attributes"]
CXX_FLAGS = ["-x", "c++", "-std=c++14", "-fno-rtti", "-fno-threadsafe-statics",
             "-Werror=return-type", "-Wno-deprecated", "-Xclang", "-ffloat16-excess-precision=none",
             "-Xclang", "-fbfloat16-excess-precision=none"]

# kernel attribute -> expression over `const zsim_attrs* a` in the generated entry point
ATTRIBUTE_VALUES = {
    "dispatch_quadgroups_per_threadgroup": "a->dqgptg",
    "dispatch_simdgroups_per_threadgroup": "a->dsgptg",
    "dispatch_threads_per_threadgroup": "ZSIM_U3(a->dtptg)",
    "grid_origin": "uint3(0u)",
    "grid_size": "ZSIM_U3(a->tpg)",
    "quadgroup_index_in_threadgroup": "a->qgiitg",
    "quadgroups_per_threadgroup": "a->qgptg",
    "simdgroup_index_in_threadgroup": "a->sgiitg",
    "simdgroups_per_threadgroup": "a->sgptg",
    "thread_execution_width": "32u",
    "thread_index_in_quadgroup": "a->tiiqg",
    "thread_index_in_simdgroup": "a->tiisg",
    "thread_index_in_threadgroup": "a->tiitg",
    "thread_position_in_grid": "ZSIM_U3(a->tpig)",
    "thread_position_in_threadgroup": "ZSIM_U3(a->tptg)",
    "threadgroup_position_in_grid": "ZSIM_U3(a->tgpig)",
    "threadgroups_per_grid": "ZSIM_U3(a->tgpg)",
    "threads_per_grid": "ZSIM_U3(a->tpg)",
    "threads_per_simdgroup": "32u",
    "threads_per_threadgroup": "ZSIM_U3(a->tptg_size)",
}

_TG_DECL = re.compile(r"\bthreadgroup\s+([A-Za-z_][\w:<>, ]*?)\s+([A-Za-z_]\w*)\s*((?:\[[^\]\n]+\]\s*)*);")
_HOST_NAME = re.compile(r'\[\[host_name\("[^"]*"\)\]\]\s*\[\[kernel\]\]')
_CLANG_DIAG = re.compile(r"^kernel\.metal:(\d+):(\d+): (error|fatal error): (.*)$", re.M)


def _cache_dir() -> Path:
    """Where compiled kernels live: $ZMLX_DSL_CACHE/metal-sim or ~/.cache/zmlx_dsl/metal-sim."""
    root = os.environ.get("ZMLX_DSL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zmlx_dsl")
    path = Path(root) / "metal-sim"
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_compiler() -> list[str] | None:
    """The clang driver to use: Debian's clang++-19 if present, else ziglang's `zig cc`."""
    clang = shutil.which("clang++-19")
    if clang:
        return [clang]
    spec = importlib.util.find_spec("ziglang")
    if spec and spec.submodule_search_locations:
        zig = Path(list(spec.submodule_search_locations)[0]) / "zig"
        if zig.exists():
            return [str(zig), "cc"]
    return None


_COMPILER: list[str] | None = None
_FINGERPRINT = ""


def _compiler() -> list[str]:
    """The compiler command, looked up once per process; raises when there is none."""
    global _COMPILER, _FINGERPRINT
    if _COMPILER is None:
        cmd = find_compiler()
        if cmd is None:
            raise MetalSimError("metal-sim needs a C++ compiler: install `ziglang` (pip install "
                                "'zmlx-dsl[sim]') or Debian's clang-19")
        st = os.stat(cmd[0])
        cpu = ""
        try:
            cpu = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
        except OSError:
            pass
        _FINGERPRINT = f"{cmd}|{st.st_size}|{st.st_mtime_ns}|{cpu}"
        _COMPILER = cmd
    return _COMPILER


def _build(args: list[str], src: str, out: Path, what: str) -> str:
    """Run the compiler on `src` into `out` atomically; return its diagnostics or raise on failure."""
    cc = _compiler()
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so")
    os.close(fd)
    try:
        proc = subprocess.run(cc + args + ["-o", tmp, "-"], input=src.encode(), capture_output=True,
                              cwd=out.parent)
        if proc.returncode != 0:
            return proc.stderr.decode(errors="replace") or f"{what}: compiler exited {proc.returncode}"
        os.replace(tmp, out)
        return ""
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def runtime_library() -> str:
    """Path of the compiled fiber runtime (built once per runtime.c version)."""
    src = RUNTIME_C.read_text()
    _compiler()
    key = hashlib.sha256((src + _FINGERPRINT + repr(COMMON_FLAGS)).encode()).hexdigest()[:24]
    out = _cache_dir() / f"runtime-{key}.so"
    if not out.exists():
        err = _build(["-x", "c", "-std=gnu11"] + COMMON_FLAGS, src, out, "runtime")
        if err:
            raise MetalSimError(f"metal-sim: building the runtime failed:\n{err}")
    return str(out)


def rewrite_for_cpu(metal: str) -> str:
    """Make MLX's kernel text valid C++ for our header, keeping every line where it was.

    `threadgroup T x[N];` becomes a reference into the group's shared arena, and the
    `[[host_name]] [[kernel]]` attributes of the explicit instantiation are dropped.
    """
    count = iter(range(1, 1 << 30))

    def tg(m: re.Match) -> str:
        typ, name, dims = m.group(1), m.group(2), re.sub(r"\s+", "", m.group(3))
        full = f"threadgroup {typ}"
        if dims:
            return (f"{full} (&{name}){dims} = *({full} (*){dims})"
                    f"zsim_tg_slot({next(count)}, sizeof({typ}{dims}), alignof({typ}));")
        return f"{full} &{name} = *({full} *)zsim_tg_slot({next(count)}, sizeof({typ}), alignof({typ}));"

    return _HOST_NAME.sub(lambda m: " " * len(m.group(0)), _TG_DECL.sub(tg, metal))


def translation_unit(metal: str, entry: str) -> str:
    """The C++ file compiled for one kernel: compat header, poison, the kernel, its entry point."""
    return (f'#include "{COMPAT_H}"\n#pragma clang poison {POISONED}\n'
            f'#line 1 "{SOURCE_NAME}"\n{rewrite_for_cpu(metal)}\n#line 1 "zsim_entry.cpp"\n{entry}\n')


def compile_kernel(metal: str, entry: str, body: str, body_line: int, name: str) -> str:
    """Compile one wrapped kernel (cached by content hash) and return the shared object's path."""
    tu = translation_unit(metal, entry)
    _compiler()
    key = hashlib.sha256((tu + COMPAT_H.read_text() + _FINGERPRINT + repr(CXX_FLAGS + COMMON_FLAGS))
                         .encode()).hexdigest()[:32]
    out = _cache_dir() / f"k-{key}.so"
    if out.exists():
        return str(out)
    err = _build(CXX_FLAGS + COMMON_FLAGS, tu, out, name)
    if err:
        raise MetalSimError(format_compile_error(err, metal, body_line, name))
    return str(out)


def describe_line(metal: str, line: int, body_line: int) -> str:
    """`body line N: <code>` for a line of the generated source (or `line N of the header/wrapper`)."""
    lines = metal.split("\n")
    code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    rel = line - body_line + 1
    where = f"body line {rel}" if rel >= 1 and line < len(lines) - 1 else f"line {line} of the wrapped kernel"
    return f"{where}: `{code}`"


def format_compile_error(diag: str, metal: str, body_line: int, name: str) -> str:
    """Compiler diagnostics re-stated at the lines of the kernel body, then the raw output."""
    found = _CLANG_DIAG.findall(diag)
    head = [f"metal-sim: kernel `{name}` failed to compile:"]
    for line, col, _, msg in found[:5]:
        head.append(f"  {describe_line(metal, int(line), body_line)} (column {col}): error: {msg}")
    if not found:
        head.append("  (no error inside the kernel text itself; see the compiler output)")
    tail = "\n".join(diag.strip().split("\n")[:40])
    return "\n".join(head) + "\n--- compiler output ---\n" + tail
