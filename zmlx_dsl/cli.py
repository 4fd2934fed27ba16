"""The `zmlx-dsl` command: show a kernel's IR and generated source, check a file's kernels
against their bodies on every available backend, run a small benchmark."""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

import mlx.core as mx

from . import api
from . import backend as backends
from .bench import compare
from .kernels import Kernel
from .testing import assert_gradient_matches, assert_matches, rowwise


def _load(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise SystemExit(f"zmlx-dsl: no such file: {path}")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(module)
    return module


def required_arrays(kernel: Kernel) -> list[str]:
    """The kernel's array parameters: positional ones without a default (string kernels: all)."""
    fn = getattr(kernel, "__wrapped__", None)
    if fn is None:
        return list(kernel.positional)
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


def _kernels(module: ModuleType) -> dict[str, Kernel]:
    return {n: k for n, k in vars(module).items() if isinstance(k, Kernel)}


def show(target: str, backend: str, shape: Optional[Sequence[int]], dtype: Optional[str], grad: bool) -> None:
    """Print the IR and the generated source of FILE::KERNEL: for inputs of one shape and dtype, or
    (neither given) for the file's `example_inputs()` where it has one (rope's x and tables, logits
    and labels)."""
    path, _, name = target.partition("::")
    module = _load(path)
    kernels = _kernels(module)
    if name not in kernels:
        raise SystemExit(f"zmlx-dsl: {path} has no kernel named {name!r} (kernels: {', '.join(kernels) or 'none'})")
    kernel = kernels[name]
    n = len(required_arrays(kernel))
    if shape is None and dtype is None and hasattr(module, "example_inputs"):
        args = list(module.example_inputs())[:n]
        what = ", ".join(f"{tuple(a.shape)} {str(a.dtype).rsplit('.', 1)[-1]}" for a in args)
    else:
        shape, dtype = tuple(shape or (4, 4096)), dtype or "float32"
        args = [mx.zeros(shape, getattr(mx, dtype)) for _ in range(n)]
        what = f"{len(args)} input(s) of shape {shape} {dtype}"
    print(f"// IR of {name} for {what}")
    print(kernel.ir(*args))
    print(f"\n// {backend} source")
    print(kernel.source(*args, backend=backend))
    if grad:
        print("\n// backward IR")
        print(kernel.grad_ir(*args))


def available_backends() -> list[str]:
    """Backends that can run here: mlx always, metal on a Mac, metal-sim with a C++ compiler, cuda with MLX CUDA."""
    found = ["mlx"]
    if mx.metal.is_available():
        found.append("metal")
    from .backend.metal_sim.compiler import find_compiler
    if find_compiler() is not None:
        found.append("metal-sim")
    if mx.cuda.is_available():
        found.append("cuda")
    return found


def _reference(kernel: Kernel):
    """What the kernel must equal: its body, row by row for row kernels."""
    body = kernel.__wrapped__
    if kernel.kind == "elementwise":
        return body
    return lambda *xs: rowwise(body, xs)(*xs)


def check(path: str, shape: Sequence[int], only: Optional[Sequence[str]] = None) -> int:
    """Check every decorated kernel of a file against its body (values, dtype, shape, gradients)."""
    module = _load(path)
    kernels = {n: k for n, k in _kernels(module).items() if hasattr(k, "__wrapped__")}
    if not kernels:
        print(f"{path}: no @zmlx_dsl kernels found")
        return 1
    failures = 0
    for name, kernel in kernels.items():
        n = len(required_arrays(kernel))
        try:
            mx.eval(_reference(kernel)(*[mx.ones(tuple(shape)) for _ in range(n)]))
        except Exception as e:
            print(f"{name:<24} SKIP: its body does not run as eager MLX ({type(e).__name__}: {e}); "
                  "a Python `if` on an array needs mx.where in the reference")
            continue
        results = []
        for b in [kernel.backend] if kernel.backend else (only or available_backends()):
            os.environ["ZMLX_DSL_BACKEND"] = b
            try:
                assert_matches(kernel, _reference(kernel), [tuple(shape)], n_inputs=n, atol=1e-4, rtol=1e-4)
                assert_gradient_matches(kernel, _reference(kernel), [tuple(shape)], n_inputs=n, atol=1e-4, rtol=1e-3)
                results.append(f"{b}: ok")
            except Exception as e:  # report every kernel, not just the first failure
                failures += 1
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                results.append(f"{b}: FAIL ({type(e).__name__}: {first})")
        print(f"{name:<24} " + "  ".join(results))
    os.environ.pop("ZMLX_DSL_BACKEND", None)
    return 1 if failures else 0


def bench(shape: Sequence[int], iters: int) -> None:
    """Time string and decorator kernels against MLX on one shape."""
    import mlx.nn as nn

    silu = api.elementwise("kk_silu(x)", name="silu")
    softmax = api.map_reduce(pass1={"init": "-INFINITY", "update": "max(acc1, x)", "reduce": "max(a, b)"},
                             pass2={"init": "0.0f", "update": "acc2 + exp(x - s1)", "reduce": "a + b"},
                             write="exp(x - s1) / s2", name="softmax")
    print(f"backend: {backends.default()}")
    compare({"zmlx_dsl silu": silu, "mlx.nn.silu": nn.silu}, [tuple(shape)], warmup=3, iters=iters)
    compare({"zmlx_dsl softmax": softmax, "mx.softmax": lambda x: mx.softmax(x, axis=-1)}, [tuple(shape)],
            warmup=3, iters=iters)


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape wants comma-separated integers like 4,4096, got {text!r}") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `zmlx-dsl` and `python -m zmlx_dsl`."""
    ap = argparse.ArgumentParser(prog="zmlx-dsl", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("show", help="print a kernel's IR and generated source")
    s.add_argument("target", help="FILE::KERNEL, e.g. examples/softmax.py::softmax")
    s.add_argument("--backend", default="metal", choices=backends.NAMES)
    s.add_argument("--shape", type=_shape, default=None, help="every input's shape (default 4,4096, or the "
                   "file's example_inputs() where it has one)")
    s.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16", "int32", "bool_"])
    s.add_argument("--grad", action="store_true", help="also print the backward program")
    c = sub.add_parser("check", help="check a file's kernels against their bodies on every available backend")
    c.add_argument("file")
    c.add_argument("--shape", type=_shape, default=(4, 64))
    c.add_argument("--backend", action="append", choices=backends.NAMES,
                   help="check only on this backend (repeatable; default: every available one)")
    b = sub.add_parser("bench", help="a small benchmark table against MLX")
    b.add_argument("--shape", type=_shape, default=(256, 1024))
    b.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)
    if args.cmd == "show":
        show(args.target, args.backend, args.shape, args.dtype, args.grad)
        return 0
    if args.cmd == "check":
        return check(args.file, args.shape, args.backend)
    bench(args.shape, args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
