"""Every module-level kernel of examples/*.py through the Metal launch path with the MSL executed on
the CPU ("metal-sim"), against the portable "mlx" backend: values and gradients (random cotangents)
on small random inputs. Raw Metal ops (no portable form) are checked against the example's `ref`.

The examples are imported as modules (their `__main__` blocks do not run; the COOKBOOK scripts do
their small checks at import, on the portable backend)."""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

import mlx.core as mx
import numpy as np
import pytest

from zmlx_dsl import stats
from zmlx_dsl.cli import required_arrays
from zmlx_dsl.kernels import Kernel
from zmlx_dsl.raw import RawOp
from conftest import HAVE_METAL_SIM, assert_close

pytestmark = pytest.mark.skipif(not HAVE_METAL_SIM, reason="metal-sim needs clang++-19 or the `ziglang` package")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
SHAPE = (3, 40)  # rows of 40: not a multiple of the vector width, a tail on the elementwise path
TOL = dict(atol=2e-5, rtol=1e-4)  # both backends compute in float32; a few ulps between them


def _import(path: str, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", "mlx")
    stats.reset()  # cookbook_profile checks the process-wide kernel statistics it starts from
    monkeypatch.syspath_prepend(os.path.dirname(path))
    name = "zmlx_example_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    return module


def _values_and_grads(fn, backend: str, monkeypatch, args, seed: int):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", backend)

    def f(*xs):
        y = fn(*xs)
        return list(y) if isinstance(y, tuple) else [y]
    outs = f(*args)
    rng = np.random.default_rng(seed)
    cots = [mx.array(rng.standard_normal(o.shape).astype(np.float32)).astype(o.dtype) for o in outs]
    got, grads = mx.vjp(f, args, cots)
    mx.eval(got, grads)
    return got, grads


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_kernels_on_metal_sim(path, monkeypatch):
    module = _import(path, monkeypatch)
    kernels = {n: k for n, k in vars(module).items() if isinstance(k, (Kernel, RawOp)) and not n.startswith("__")}
    if not kernels:
        pytest.skip("no module-level kernels")
    rng = np.random.default_rng(0)
    for name, k in kernels.items():
        n = k.n_in if isinstance(k, RawOp) else len(required_arrays(k))
        if hasattr(module, "example_inputs"):  # inputs of their own shapes and dtypes (rope's tables, labels)
            args = list(module.example_inputs())
        else:  # positive inputs: every example's domain (log(p + 1e-8), rsqrt(mean + eps), ...)
            args = [mx.array(rng.uniform(0.05, 1.0, SHAPE).astype(np.float32)) for _ in range(n)]
        if isinstance(k, RawOp):  # raw Metal: only the Metal backends run it
            ref = getattr(module, "ref", None)
            assert ref is not None, f"{name}: a raw Metal op needs the example's `ref` to check against"
            want, g_want = _values_and_grads(ref, "mlx", monkeypatch, args, seed=1)
        else:
            want, g_want = _values_and_grads(k, "mlx", monkeypatch, args, seed=1)
        got, g_got = _values_and_grads(k, "metal-sim", monkeypatch, args, seed=1)
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, **TOL, what=f"{os.path.basename(path)}::{name} output {i}: ")
        for i, (a, b) in enumerate(zip(g_got, g_want)):
            assert_close(a, b, **TOL, what=f"{os.path.basename(path)}::{name} grad {i}: ")
