"""Random bodies with statements: assignments, `+=`, nested data-dependent `if/else`, early
`return`s inside them, unrolled `for` loops and a helper with its own `if`. The oracle is the body
run eagerly in MLX one element at a time (0-d arrays, so `if` takes one branch, as in Python); the
kernel (branches merged by select) must match it on every element, on the portable backend and on
metal-sim. A body that reads a name assigned on one path only (or on none) must fail with the
located "may be undefined" ("is not defined") error, never with another one. Generated from fixed seeds (deterministic)."""
from __future__ import annotations

import importlib.util
import random

import mlx.core as mx
import numpy as np
import pytest

import zmlx_dsl as zmlx
from conftest import BACKENDS, examples

HELPER = "\n\ndef h(v):\n    if v > 0.5:\n        return v * 2.0\n    return -v\n"
EXPRS = ["{} + {}", "{} - {}", "{} * {}", "mx.maximum({}, {})", "mx.tanh({})", "mx.abs({})", "(-{})", "h({})",
         "mx.where({} > {}, {}, {})"]


class _Gen:
    """Statement lists over the names defined so far (names defined on one branch only may be read
    later: the kernel must then raise its located error)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def expr(self, names: list, depth: int = 2) -> str:
        if depth == 0 or self.rng.random() < 0.3:
            return self.rng.choice(names + ["0.5", "2.0", "1.5"])
        op = self.rng.choice(EXPRS)
        return "(" + op.format(*[self.expr(names, depth - 1) for _ in range(op.count("{}"))]) + ")"

    def block(self, names: list, depth: int, ind: str) -> tuple[list, list]:
        lines, names = [], list(names)
        for _ in range(self.rng.randint(1, 3)):
            r = self.rng.random()
            if r < 0.4 or depth == 0:
                t = self.rng.choice(["a", "b", "c"])
                op = "+=" if t in names and self.rng.random() < 0.3 else "="
                lines.append(f"{ind}{t} {op} {self.expr(names)}")
                names = names if t in names else names + [t]
            elif r < 0.7:
                test = f"{self.expr(names, 1)} {self.rng.choice(['>', '<', '>=', '=='])} {self.expr(names, 1)}"
                then, n1 = self.block(names, depth - 1, ind + "    ")
                other, n2 = self.block(names, depth - 1, ind + "    ")
                lines += [f"{ind}if {test}:"] + then + [f"{ind}else:"] + other
                names = names + [n for n in n1 if n not in names and self.rng.random() < 0.8]
            elif r < 0.85:
                t = self.rng.choice(names)
                lines += [f"{ind}for i in range({self.rng.randint(1, 3)}):", f"{ind}    {t} = {t} + {self.expr(names, 1)} * i"]
            else:
                lines += [f"{ind}if {self.expr(names, 1)} > {self.expr(names, 1)}:", f"{ind}    return {self.expr(names)}"]
        return lines, names

    def body(self) -> str:
        lines, names = self.block(["x", "y"], 2, "    ")
        return "\n".join(lines + [f"    return {self.expr(names)}"])


XS = np.array([0.5, 1.0, 0.0, -1.5, 2.0, -0.25, 1.75, -2.0, 0.75, 1.5], dtype=np.float32)
YS = np.array([0.5, 1.0, 0.0, 1.25, -0.5, -1.0, 0.25, 2.0, -1.75, 1.5], dtype=np.float32)


@pytest.fixture(scope="module")
def cf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("control_flow")


CASES = [("mlx", seed) for seed in range(examples(40))] + \
    [(b, seed) for b in BACKENDS[1:] for seed in range(0, examples(40), 4)]
"""metal-sim compiles a kernel per body: every fourth seed there ($ZMLX_PROPERTY_SCALE scales the
number of seeds, conftest.examples)."""


@pytest.mark.parametrize("backend,seed", CASES)
def test_random_control_flow(cf_dir, eager_mlx, backend, seed):
    text = _Gen(seed).body()
    path = cf_dir / f"zmlx_cf_{seed}_{backend}.py"
    path.write_text(f"import mlx.core as mx\n{HELPER}\n\ndef body(x, y):\n{text}\n")
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    k = zmlx.elementwise(mod.body, backend=backend)
    try:
        want = np.array([np.array(mod.body(mx.array(a), mx.array(b))) for a, b in zip(XS, YS)], dtype=np.float64)
    except (NameError, UnboundLocalError):  # a path reads a name it never assigned: the kernel must say so
        with pytest.raises(NameError, match="may be undefined here|is not defined"):
            k(mx.array(XS), mx.array(YS))
        return
    try:
        got = np.array(k(mx.array(XS), mx.array(YS)), dtype=np.float64)
    except NameError as e:  # defined on the paths these elements take, not on every path
        assert "may be undefined here" in str(e), f"{path.read_text()}\n{e}"
        return
    except TypeError as e:  # a body returning only constants
        assert "computed from at least one array argument" in str(e), f"{path.read_text()}\n{e}"
        return
    got = np.broadcast_to(got, want.shape)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True), \
        f"{path.read_text()}\n{backend}: kernel {got}\nMLX per element {want}"
