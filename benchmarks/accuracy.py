"""Accuracy of the fast transcendental path (fast_math) against float64, per op and per dtype.

For each op (exp, erf, tanh, sigmoid, silu, gelu, gelu_tanh, softmax) and output dtype (float32,
float16, bfloat16) the kernel runs on metal-sim (the generated MSL on the CPU) with fast_math=True
and fast_math=False, and MLX's own op (eager, in the dtype; mx.softmax for softmax) runs beside
it; each result is compared with the body evaluated in float64 (NumPy) on the same inputs (the
dtype's values, constants typed as MLX types them). Inputs: every finite 16-bit value in the op's
domain (exhaustive), or 2^20 float32 values (uniform plus log-spaced magnitudes); softmax rows of
4096 from N(0, 1) and N(0, 10). Errors: max |got - ref| and max ulps of the output dtype at ref
(0.5 is a correctly rounded result). exp's domain is where e^x is a normal number of the dtype.

metal-sim's `fast::exp2` is the C library's exp2: the Metal GPU's own fast exp2 (a few float32 ulps)
and CUDA's exp2f (2 ulps) add that much to the float32 rows, nothing visible at 16 bits.

Run: python benchmarks/accuracy.py [--quick] [--backend=cuda]  (prints a Markdown table for benchmarks/RESULTS.md)
"""
from __future__ import annotations

import datetime
import math
import platform
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zmlx_dsl as zmlx  # noqa: E402

QUICK = "--quick" in sys.argv
# --backend cuda: the generated CUDA on the GPU (its exp2f and __fdividef), instead of metal-sim
BACKEND = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--backend=")), "metal-sim")
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
MANTISSA = {"float32": (23, -126), "float16": (10, -14), "bfloat16": (7, -126)}  # bits, min exponent
_erf = np.frompyfunc(math.erf, 1, 1)


def erf64(x: np.ndarray) -> np.ndarray:
    return _erf(x).astype(np.float64)


# ---- the bodies and their float64 references -----------------------------------------------------

def exp(x):
    return mx.exp(x)


def erf(x):
    return mx.erf(x)


def tanh(x):
    return mx.tanh(x)


def sigmoid(x):
    return mx.sigmoid(x)


def silu(x):
    return x * mx.sigmoid(x)


def gelu(x):
    return 0.5 * x * (1.0 + mx.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + mx.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def softmax(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def typed(c: float, dtype) -> float:
    """A Python constant as MLX types it beside an array of `dtype` (weak: the array's type)."""
    return float(np.array(mx.array(c, dtype=dtype).astype(mx.float32)))


def reference(op: str, x: np.ndarray, dtype) -> np.ndarray:
    """The body in float64 on the same inputs, its constants as MLX types them."""
    if op == "exp":
        return np.exp(x)
    if op == "erf":
        return erf64(x)
    if op == "tanh":
        return np.tanh(x)
    if op in ("sigmoid", "silu"):
        with np.errstate(over="ignore"):
            e = np.exp(-np.abs(x))  # no cancellation in either tail
        s = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return s if op == "sigmoid" else x * s
    if op == "gelu":
        return 0.5 * x * (1.0 + erf64(x / typed(math.sqrt(2.0), dtype)))
    if op == "gelu_tanh":
        a, b = typed(0.7978845608, dtype), typed(0.044715, dtype)
        return 0.5 * x * (1.0 + np.tanh(a * (x + b * x * x * x)))
    if op == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise KeyError(op)


BODIES = {"exp": exp, "erf": erf, "tanh": tanh, "sigmoid": sigmoid, "silu": silu, "gelu": gelu,
          "gelu_tanh": gelu_tanh}
MLX_OWN = {"exp": mx.exp, "erf": mx.erf, "tanh": mx.tanh, "sigmoid": mx.sigmoid, "silu": silu, "gelu": gelu,
           "gelu_tanh": gelu_tanh, "softmax": lambda x: mx.softmax(x, axis=-1)}


# ---- inputs and error measures -----------------------------------------------------------------

def all_values(name: str) -> np.ndarray:
    """Every finite value of a 16-bit type, or 2^20 (2^16 with --quick) float32 samples."""
    if name == "float16":
        v = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    elif name == "bfloat16":
        with np.errstate(invalid="ignore"):  # the NaN patterns
            v = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)
    else:
        rng = np.random.default_rng(0)
        n = 1 << (16 if QUICK else 20)
        mags = 10.0 ** rng.uniform(-30, 4, n // 2) * rng.choice([-1.0, 1.0], n // 2)
        v = np.concatenate([rng.uniform(-12, 12, n // 2), mags]).astype(np.float32).astype(np.float64)
    return v[np.isfinite(v)]


def domain(op: str, x: np.ndarray, name: str) -> np.ndarray:
    """exp where e^x is a normal number of the dtype; the other ops everywhere."""
    if op != "exp":
        return x
    bits, emin = MANTISSA[name]
    top = 65504.0 if name == "float16" else 3.4028234663852886e38
    return x[(x >= math.log(2.0 ** emin)) & (x <= math.log(top))]


def ulps(got: np.ndarray, ref: np.ndarray, name: str) -> np.ndarray:
    """|got - ref| in units of the dtype's spacing at ref (subnormal spacing below the normals)."""
    bits, emin = MANTISSA[name]
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.abs(ref)))
    e = np.maximum(np.where(np.isfinite(e), e, emin), emin)
    return np.abs(got - ref) / np.exp2(e - bits)


def to64(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32)).astype(np.float64)


def measure(run, x64: np.ndarray, ref: np.ndarray, dtype, name: str) -> tuple[float, float]:
    got = to64(run(mx.array(x64.astype(np.float32)).astype(dtype)))
    ok = np.isfinite(ref)
    if (got[ok] != got[ok]).any():
        return math.nan, math.nan
    return float(np.abs(got[ok] - ref[ok]).max()), float(ulps(got[ok], ref[ok], name).max())


def rows() -> list[tuple]:
    out = []
    for op in list(BODIES) + ["softmax"]:
        for name, dtype in DTYPES.items():
            if op == "softmax":
                rng = np.random.default_rng(1)
                R = 8 if QUICK else 64
                x = np.concatenate([rng.standard_normal((R, 4096)), 10 * rng.standard_normal((R, 4096))])
                x = to64(mx.array(x.astype(np.float32)).astype(dtype))
                fast = zmlx.map_reduce(softmax, backend=BACKEND, fast_math=True)
                slow = zmlx.map_reduce(softmax, backend=BACKEND, fast_math=False)
            else:
                x = domain(op, all_values(name), name)
                fast = zmlx.elementwise(BODIES[op], backend=BACKEND, fast_math=True)
                slow = zmlx.elementwise(BODIES[op], backend=BACKEND, fast_math=False)
            ref = reference(op, x, dtype)
            results = [measure(k, x, ref, dtype, name) for k in (fast, slow, MLX_OWN[op])]
            out.append((op, name, x.size, *results))
            print(f"{op:9s} {name:8s} n={x.size:8d} fast {results[0][0]:.3g} ({results[0][1]:.2f} ulp)  "
                  f"precise {results[1][0]:.3g} ({results[1][1]:.2f} ulp)  mlx {results[2][0]:.3g} "
                  f"({results[2][1]:.2f} ulp)", file=sys.stderr)
    return out


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    table = rows()
    print(f"{datetime.date.today()} · {platform.machine()} {platform.processor() or platform.system()} · "
          f"{BACKEND} · commit {commit}\n")
    print("| op | dtype | inputs | fast max abs | fast max ulp | precise max abs | precise max ulp | "
          "MLX max abs | MLX max ulp |")
    print("|---|---|---|---|---|---|---|---|---|")
    for op, name, n, (fa, fu), (pa, pu), (ma, mu) in table:
        print(f"| {op} | {name} | {n} | {fa:.3g} | {fu:.3g} | {pa:.3g} | {pu:.3g} | {ma:.3g} | {mu:.3g} |")


if __name__ == "__main__":
    main()
