"""Compile MLX-wrapped Metal kernels as C++14 shared objects (clang-19 or PyPI ziglang), cached on disk."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from ...errors import ZMLXBackendError
from .errors import MetalSimError

HERE = Path(__file__).resolve().parent
COMPAT_H = HERE / "metal_compat.h"
RUNTIME_C = HERE / "runtime.c"
SOURCE_NAME = "kernel.metal"

# Non-MSL C++ (and host facilities) that a kernel must not use.
POISONED = "double std new delete throw try catch malloc calloc realloc free printf puts exit abort"

COMMON_FLAGS = ["-O2", "-fPIC", "-shared", "-nostdlib", "-march=native", "-ffp-contract=off",
                "-fno-exceptions", "-fno-math-errno", "-Wno-unknown-attributes"]
# -fmax-type-align=1: buffers end exactly at their guard page, so they are only element-aligned and
# the generated `*(device vec<T, 4>*)` accesses must compile to unaligned loads and stores.
CXX_FLAGS = ["-x", "c++", "-std=c++14", "-fno-rtti", "-fno-threadsafe-statics", "-fmax-type-align=1",
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

# `threadgroup T name[dims];`: T is words joined by single runs of spaces (no quantifier overlaps the
# `\s+` before the name), and each match is tried only up to the next `threadgroup` (_TG_START), so
# the rewrite is linear in the source length.
_TG_START = re.compile(r"\bthreadgroup\s")
_TG_DECL = re.compile(r"threadgroup\s+([A-Za-z_][\w:<>,]*(?: +[\w:<>,]+)*)\s+([A-Za-z_]\w*)\s*"
                      r"((?:\[[^\]\n]+\]\s*)*);")
_HOST_NAME = re.compile(r'\[\[host_name\("[^"]*"\)\]\]\s*\[\[kernel\]\]')
_ERROR = re.compile(r"^(.+?):(\d+):(\d+): (?:fatal )?error: (.*)$", re.M)
_INSTANTIATED_AT = re.compile(r"^kernel\.metal:(\d+):(\d+): note: in instantiation of .* requested here$", re.M)

# cache file -> (compiler arguments, source, diagnostics -> error message): how to build it again
_RECIPES: dict[str, tuple[list[str], str, Callable[[str], str]]] = {}


def _cache_root() -> Path:
    """$ZMLX_DSL_CACHE, else ~/.cache/zmlx_dsl."""
    return Path(os.environ.get("ZMLX_DSL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zmlx_dsl"))


def _cache_error(doing: str, path: Path, err: OSError) -> ZMLXBackendError:
    """A cache directory we cannot create or write in: the variable, the path, what is wrong, the fix."""
    root = _cache_root()
    why = (f"{str(root)!r} exists and is not a directory" if root.exists() and not root.is_dir()
           else f"cannot {doing} {str(path)!r} ({err.strerror})")
    if os.environ.get("ZMLX_DSL_CACHE"):
        return ZMLXBackendError(f"ZMLX_DSL_CACHE={str(root)!r} is not usable as metal-sim's cache: {why}; "
                                "set ZMLX_DSL_CACHE to a writable directory or unset it")
    return ZMLXBackendError(f"metal-sim's default cache directory is not usable: {why}; "
                            "set ZMLX_DSL_CACHE to a writable directory")


def _cache_dir() -> Path:
    """Where compiled kernels live: $ZMLX_DSL_CACHE/metal-sim or ~/.cache/zmlx_dsl/metal-sim."""
    path = _cache_root() / "metal-sim"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cache_error("create", path, e) from None
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


def _build(args: list[str], src: str, out: Path) -> str:
    """Compile `src` into a temporary file beside `out`, then rename it to `out` (a crash mid-write never
    leaves a truncated `out`); return the compiler's diagnostics on failure, else ""."""
    cc = _compiler()
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".so")
    except OSError as e:
        raise _cache_error("write in", out.parent, e) from None
    os.close(fd)
    try:
        proc = subprocess.run(cc + args + ["-o", tmp, "-"], input=src.encode(), capture_output=True,
                              cwd=out.parent)
        if proc.returncode != 0:
            return proc.stderr.decode(errors="replace") or f"compiler exited {proc.returncode}"
        os.replace(tmp, out)
        return ""
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cached(out: Path, args: list[str], src: str, failure: Callable[[str], str]) -> str:
    """Path of `out`, built from `src` unless cached; remembers the recipe so `rebuild` can redo it."""
    _RECIPES[str(out)] = (args, src, failure)
    if not out.exists():
        err = _build(args, src, out)
        if err:
            raise MetalSimError(failure(err))
    return str(out)


def rebuild(path: str, reason: str) -> None:
    """Replace a cached library that the worker could not load (`reason`) by a fresh build, with a warning."""
    args, src, failure = _RECIPES[path]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _cache_error("delete", Path(path), e) from None
    err = _build(args, src, Path(path))
    if err:
        raise MetalSimError(failure(err))
    warnings.warn(f"metal-sim: the cached library {path} was unusable ({reason}); it has been deleted and "
                  "rebuilt from source", RuntimeWarning, stacklevel=2)


def runtime_library() -> str:
    """Path of the compiled fiber runtime (built once per runtime.c version)."""
    src = RUNTIME_C.read_text()
    _compiler()
    key = hashlib.sha256((src + _FINGERPRINT + repr(COMMON_FLAGS)).encode()).hexdigest()[:24]
    return _cached(_cache_dir() / f"runtime-{key}.so", ["-x", "c", "-std=gnu11"] + COMMON_FLAGS, src,
                   lambda err: f"metal-sim: building the runtime failed:\n{err}")


def rewrite_for_cpu(metal: str) -> str:
    """Make MLX's kernel text valid C++ for our header, keeping every line where it was.

    `threadgroup T x[N];` becomes a reference into the group's shared arena, and the
    `[[host_name]] [[kernel]]` attributes of the explicit instantiation are dropped.
    """
    parts, end = [], 0
    for key, m in enumerate(_tg_declarations(metal), 1):
        parts += [metal[end:m.start()], _tg_reference(m, key)]
        end = m.end()
    parts.append(metal[end:])
    return _HOST_NAME.sub(lambda m: " " * len(m.group(0)), "".join(parts))


def _tg_declarations(metal: str) -> list[re.Match]:
    """The `threadgroup T name[dims];` declarations, each sought only up to the next `threadgroup` (linear)."""
    starts = [m.start() for m in _TG_START.finditer(metal)] + [len(metal)]
    found = (_TG_DECL.match(metal, a, b) for a, b in zip(starts, starts[1:]))
    return [m for m in found if m]


def _tg_reference(m: re.Match, key: int) -> str:
    """A threadgroup declaration as a reference to slot `key` of the group's shared arena."""
    typ, name, dims = m.group(1), m.group(2), re.sub(r"\s+", "", m.group(3))
    full = f"threadgroup {typ}"
    if dims:
        return (f"{full} (&{name}){dims} = *({full} (*){dims})"
                f"zsim_tg_slot({key}, sizeof({typ}{dims}), alignof({typ}));")
    return f"{full} &{name} = *({full} *)zsim_tg_slot({key}, sizeof({typ}), alignof({typ}));"


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
    return _cached(_cache_dir() / f"k-{key}.so", CXX_FLAGS + COMMON_FLAGS, tu,
                   lambda err: format_compile_error(err, metal, body_line, name))


def describe_line(metal: str, line: int, body_line: int) -> str:
    """`body line N: <code>` for a line of the generated source (or `line N of the header/wrapper`)."""
    lines = metal.split("\n")
    code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    rel = line - body_line + 1
    where = f"body line {rel}" if rel >= 1 and line < len(lines) - 1 else f"line {line} of the wrapped kernel"
    return f"{where}: `{code}`"


def format_compile_error(diag: str, metal: str, body_line: int, name: str) -> str:
    """Compiler diagnostics re-stated at the lines of the kernel body, then the raw output."""
    found = _kernel_errors(diag)
    head = [f"metal-sim: kernel `{name}` failed to compile:"]
    for line, col, msg in found[:5]:
        head.append(f"  {describe_line(metal, int(line), body_line)} (column {col}): error: {msg}")
    if not found:
        head.append("  (no error inside the kernel text itself; see the compiler output)")
    tail = "\n".join(diag.strip().split("\n")[:40])
    return "\n".join(head) + "\n--- compiler output ---\n" + tail


def _kernel_errors(diag: str) -> list[tuple[str, str, str]]:
    """(line, column, message) of each error at a kernel line; an error inside the compat header (a
    static_assert) is placed at the kernel line whose call instantiated it."""
    errors = list(_ERROR.finditer(diag))
    found = []
    for e, after in zip(errors, errors[1:] + [None]):
        if e.group(1) == SOURCE_NAME:
            found.append((e.group(2), e.group(3), e.group(4)))
            continue
        site = _INSTANTIATED_AT.search(diag, e.end(), after.start() if after else len(diag))
        if site:
            found.append((site.group(1), site.group(2), e.group(4)))
    return found
