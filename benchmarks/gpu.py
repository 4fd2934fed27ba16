"""GPU benchmark (MLX's CUDA backend): correctness first, then the performance table.

Each row: our kernel vs the MLX baseline in the same run; bandwidth against a vectorised copy
kernel. Timings: warm-up, then per sample CALLS calls queued back to back (mx.async_eval) and one
mx.synchronize, so the GPU's time per call is measured rather than the host's launch latency;
median of ITERS samples.
Usage (device machine): source .mlx-cuda/activate && python3 benchmarks/gpu.py [--quick]
    [--fast-math=on|off]  (default: the decorators' own, fast for 16-bit outputs, precise for float32)
"""
from __future__ import annotations

import statistics
import sys
import time

import mlx.core as mx

import zmlx_dsl as zmlx

QUICK = "--quick" in sys.argv
FAST_MATH = {"--fast-math=on": True, "--fast-math=off": False}.get(
    next((a for a in sys.argv if a.startswith("--fast-math=")), ""))  # None: per output dtype
ITERS = 5 if QUICK else 15
CALLS = 10


def timed(fn, *args) -> float:
    """Median seconds per call of fn(*args): CALLS calls queued, then one synchronisation."""
    for _ in range(3):
        mx.eval(fn(*args))
    mx.synchronize()
    ts = []
    for _ in range(ITERS):
        t = time.perf_counter()
        outs = []
        for _ in range(CALLS):
            outs.append(fn(*args))
            mx.async_eval(outs[-1])
        mx.synchronize()
        ts.append((time.perf_counter() - t) / CALLS)
        del outs
    return statistics.median(ts)


_COPY = """
  const size_t n4 = x_shape[0] / 4;
  for (int c = 0; c < V; ++c) {
    const size_t i = (size_t(blockIdx.x) * V + c) * blockDim.x + threadIdx.x;
    if (i < n4) reinterpret_cast<float4*>(y)[i] = reinterpret_cast<const float4*>(x)[i];
  }
"""


def copy(x, per_thread=1):
    """The bandwidth baseline: a float4 (16-byte) copy kernel, `per_thread` float4 per thread."""
    k = mx.fast.cuda_kernel(name="copy_vec4", input_names=["x"], output_names=["y"], source=_COPY)
    n = x.size * x.itemsize // 4
    flat = x.reshape(-1).view(mx.float32) if x.dtype != mx.float32 else x.reshape(-1)
    blocks = -(-n // (4 * 256 * per_thread))
    return k(inputs=[flat], output_shapes=[(n,)], output_dtypes=[mx.float32], grid=(blocks * 256, 1, 1),
             threadgroup=(256, 1, 1), template=[("V", per_thread)])[0]


def tune(n: int) -> tuple[int, int]:
    """Elementwise launch shape: silu at threads per group x vectors per thread (and the copy
    kernel at 1, 2, 4 float4 per thread); returns the best (vectors, threads) over f32 and bf16."""
    from zmlx_dsl.backend import plan as plans
    x = mx.random.normal((n,))
    for v in (1, 2, 4):
        t = timed(lambda z: copy(z, v), x)
        print(f"tune copy  {v} float4/thread: {2 * x.nbytes / t / 1e9:.0f} GB/s")
    default = plans.ELEMENTWISE_VECTORS, plans.THREADS
    score: dict = {}
    for dtype in (mx.float32, mx.bfloat16):
        xd = x.astype(dtype)
        t = timed(mx.compile(silu_body), xd)
        print(f"tune mx.compile(silu) {str(dtype).split('.')[-1]}: {2 * xd.nbytes / t / 1e9:.0f} GB/s")
        for threads in (256, 512, 1024):
            for v in (1, 2):
                plans.ELEMENTWISE_VECTORS, plans.THREADS = v, threads
                k = zmlx.elementwise(silu_body)
                t = timed(k, xd)
                print(f"tune silu {str(dtype).split('.')[-1]} {threads} threads, {v} vectors/thread: "
                      f"{2 * xd.nbytes / t / 1e9:.0f} GB/s")
                score[(v, threads)] = score.get((v, threads), 0.0) + t
    plans.ELEMENTWISE_VECTORS, plans.THREADS = default
    return min(score, key=score.get)


# ---- kernels under test (bodies are the MLX references too) ---------------------------------
def silu_body(x):
    return x * mx.sigmoid(x)


def gelu_body(x):
    return 0.5 * x * (1 + mx.erf(x * 0.7071067811865476))


def swiglu_body(a, b):
    return a * mx.sigmoid(a) * b


def softmax_body(x):
    e = mx.exp(x - x.max())
    return e / e.sum()


def rmsnorm_body(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x) + eps) * w


def layernorm_body(x, w, b, eps):
    mu = mx.mean(x)
    d = x - mu
    return d * mx.rsqrt(mx.mean(d * d) + eps) * w + b


def logsumexp_body(x):
    m = x.max()
    return m + mx.log(mx.exp(x - m).sum())


def scaled_softmax_body(x, bias, scale):
    z = x * scale + bias
    e = mx.exp(z - z.max())
    return e / e.sum()


def add_rmsnorm_body(x, r, w, eps):
    h = x + r
    return h * mx.rsqrt(mx.mean(h * h) + eps) * w, h


def xent_body(logits, onehot):
    m = logits.max()
    lse = m + mx.log(mx.exp(logits - m).sum())
    return lse - (logits * onehot).sum()


silu = zmlx.elementwise(silu_body, fast_math=FAST_MATH)
gelu = zmlx.elementwise(gelu_body, fast_math=FAST_MATH)
swiglu = zmlx.elementwise(swiglu_body, fast_math=FAST_MATH)
softmax = zmlx.map_reduce(softmax_body, fast_math=FAST_MATH)
rmsnorm = zmlx.map_reduce(rmsnorm_body, fast_math=FAST_MATH)
layernorm = zmlx.map_reduce(layernorm_body, fast_math=FAST_MATH)
logsumexp = zmlx.reduce(logsumexp_body, fast_math=FAST_MATH)
scaled_softmax = zmlx.map_reduce(scaled_softmax_body, fast_math=FAST_MATH)
add_rmsnorm = zmlx.map_reduce(add_rmsnorm_body, fast_math=FAST_MATH)
xent = zmlx.reduce(xent_body, fast_math=FAST_MATH)


def softmax_rows(x):
    """softmax_body written for whole arrays (rows on the last axis), as an MLX user would."""
    e = mx.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def rmsnorm_rows(x, w, eps):
    return x * mx.rsqrt(mx.mean(x * x, -1, keepdims=True) + eps) * w


def layernorm_rows(x, w, b, eps):
    d = x - mx.mean(x, -1, keepdims=True)
    return d * mx.rsqrt(mx.mean(d * d, -1, keepdims=True) + eps) * w + b


def check() -> list[str]:
    """Correctness on cuda against MLX references before any timing."""
    fails = []
    x = mx.random.normal((37, 1000))
    w = mx.random.normal((1000,))
    b = mx.random.normal((1000,))
    cases = [
        ("silu", silu(x), silu_body(x)), ("gelu", gelu(x), gelu_body(x)),
        ("swiglu", swiglu(x, x * 2), swiglu_body(x, x * 2)),
        ("softmax", softmax(x), mx.softmax(x, axis=-1)),
        ("rmsnorm", rmsnorm(x, w, 1e-5), mx.fast.rms_norm(x, w, 1e-5)),
        ("layernorm", layernorm(x, w, b, 1e-5), mx.fast.layer_norm(x, w, b, 1e-5)),
        ("logsumexp", logsumexp(x), mx.logsumexp(x, axis=-1)),
        ("grad silu", mx.grad(lambda z: (silu(z) * x).sum())(x), mx.grad(lambda z: (silu_body(z) * x).sum())(x)),
        ("grad softmax", mx.grad(lambda z: (softmax(z) * x).sum())(x),
         mx.grad(lambda z: (mx.softmax(z, axis=-1) * x).sum())(x)),
        ("grad rmsnorm", mx.grad(lambda z: (rmsnorm(z, w, 1e-5) * x).sum())(x),
         mx.grad(lambda z: (mx.fast.rms_norm(z, w, 1e-5) * x).sum())(x)),
    ]
    h = x.astype(mx.bfloat16)  # 16-bit: the fast transcendentals by default
    cases += [(f"{name} bf16", k(h), want(h)) for name, k, want in (
        ("silu", silu, silu_body), ("gelu", gelu, gelu_body), ("softmax", softmax, lambda z: mx.softmax(z, axis=-1)),
        ("logsumexp", logsumexp, lambda z: mx.logsumexp(z, axis=-1)))]
    c = mx.random.normal(x.shape)
    for name, ours, theirs, params in (
            ("vjp rmsnorm x,w", lambda z, g: rmsnorm(z, g, 1e-5), lambda z, g: mx.fast.rms_norm(z, g, 1e-5), [w]),
            ("vjp layernorm", lambda z, g, e: layernorm(z, g, e, 1e-5),
             lambda z, g, e: mx.fast.layer_norm(z, g, e, 1e-5), [w, b])):
        for dtype in (mx.float32, mx.bfloat16):
            a = [v.astype(dtype) for v in [x] + params]
            got = mx.vjp(ours, a, [c.astype(dtype)])[1]
            want = mx.vjp(theirs, a, [c.astype(dtype)])[1]
            tag = "" if dtype == mx.float32 else " bf16"
            cases += [(f"{name}[{i}]{tag}", g, h) for i, (g, h) in enumerate(zip(got, want))]
    for name, got, want in cases:
        err = mx.max(mx.abs(got.astype(mx.float32) - want.astype(mx.float32))).item()
        scale = mx.max(mx.abs(want.astype(mx.float32))).item()
        status = "ok" if err < (1e-3 if "bf16" not in name else 2e-2 * max(1.0, scale)) else "FAIL"
        if status != "ok":
            fails.append(name)
        print(f"check {name:14s} max err {err:.2e} {status}")
    return fails


def table_line(r: tuple) -> str:
    w_, d, o, bl, s, bw, pc, bn = r
    return f"| {w_} | {d} | {o:.1f} | {bl:.1f} | {s:.2f}x | {bw:.0f} | {pc:.0f}% | {bn} |"


def main() -> None:
    print(f"device: {mx.default_device()}, cuda available: {mx.cuda.is_available()}")
    n = (1 << 24) if QUICK else (1 << 26)
    if "--tune" in sys.argv:  # before any kernel of this module compiles
        from zmlx_dsl.backend import plan as plans
        plans.ELEMENTWISE_VECTORS, plans.THREADS = best = tune(n)
        print(f"checks and table use the tuned elementwise launch: {best[0]} vector(s) x {best[1]} threads")
    fails = check()
    rows = []
    xc = mx.random.normal((n,))
    copy_bw = max(2 * xc.nbytes / timed(lambda z: copy(z, v), xc) / 1e9 for v in (1, 2, 4))
    print(f"copy kernel (best of 1, 2, 4 float4 per thread): {copy_bw:.0f} GB/s")

    def row(workload, dtype, moved, ours, base, base_name):
        bw = moved / ours / 1e9
        rows.append((workload, dtype, ours * 1e6, base * 1e6, base / ours, bw, 100 * bw / copy_bw, base_name))
        print(table_line(rows[-1]), flush=True)  # as measured: a run cut off by its time limit keeps its rows

    for dtype in (mx.float32, mx.float16, mx.bfloat16):
        x = mx.random.normal((n,)).astype(dtype)
        y = mx.random.normal((n,)).astype(dtype)
        name = str(dtype).split(".")[-1]
        for label, k, body, args in (("silu", silu, silu_body, (x,)), ("gelu", gelu, gelu_body, (x,)),
                                     ("swiglu", swiglu, swiglu_body, (x, y))):
            moved = sum(a.nbytes for a in args) + x.nbytes
            row(label, name, moved, timed(k, *args), timed(mx.compile(body), *args), "mx.compile(body)")
    total = (1 << 24) if QUICK else (1 << 26)
    for D in (1024, 4096, 32768):
        for dtype in (mx.float32, mx.bfloat16):
            name = str(dtype).split(".")[-1]
            x = mx.random.normal((total // D, D)).astype(dtype)
            w = mx.random.normal((D,)).astype(dtype)
            b = mx.random.normal((D,)).astype(dtype)
            io = 2 * x.nbytes
            row(f"softmax D={D}", name, io, timed(softmax, x), timed(lambda z: mx.softmax(z, axis=-1), x), "mx.softmax")
            row(f"rmsnorm D={D}", name, io, timed(rmsnorm, x, w, 1e-5),
                timed(lambda z: mx.fast.rms_norm(z, w, 1e-5), x), "mx.fast.rms_norm")
            row(f"layernorm D={D}", name, io, timed(layernorm, x, w, b, 1e-5),
                timed(lambda z: mx.fast.layer_norm(z, w, b, 1e-5), x), "mx.fast.layer_norm")
            row(f"logsumexp D={D}", name, x.nbytes, timed(logsumexp, x),
                timed(lambda z: mx.logsumexp(z, axis=-1), x), "mx.logsumexp")
    D = 4096
    x = mx.random.normal((total // D, D))
    r = mx.random.normal((total // D, D))
    w = mx.random.normal((D,))
    bias = mx.random.normal((D,))
    onehot = (mx.random.randint(0, D, (total // D, 1)) == mx.arange(D)).astype(mx.float32)
    row("softmax(x*s+b)", "float32", 2 * x.nbytes, timed(scaled_softmax, x, bias, 0.125),
        timed(mx.compile(lambda z: mx.softmax(z * 0.125 + bias, axis=-1)), x), "mx.compile(body)")
    row("add+rmsnorm", "float32", 4 * x.nbytes, timed(add_rmsnorm, x, r, w, 1e-5),
        timed(mx.compile(lambda a, c: ((a + c) * mx.rsqrt(mx.mean((a + c) ** 2, axis=-1, keepdims=True) + 1e-5) * w, a + c)), x, r),
        "mx.compile(body)")
    row("cross-entropy", "float32", 2 * x.nbytes, timed(xent, x, onehot),
        timed(mx.compile(lambda z, o: mx.logsumexp(z, axis=-1) - (z * o).sum(-1)), x, onehot), "mx.compile(body)")
    # Backward: the VJP with a given cotangent for every input (x, and a norm's weight and bias),
    # ours and the baselines all under mx.compile; the baseline is the body's, MLX's built-in
    # kernels' own VJPs are listed too where they exist. float32 and bfloat16.
    vjp_of = lambda f: mx.compile(lambda c, *a: mx.vjp(f, list(a), [c])[1])  # noqa: E731
    for dtype in (mx.float32, mx.bfloat16):
        name = str(dtype).split(".")[-1]
        xd, ct = x.astype(dtype), mx.random.normal(x.shape).astype(dtype)
        wd, bd = w.astype(dtype), bias.astype(dtype)
        for label, k, body, builtin, params in (
                ("bwd silu", silu, silu_body, None, ()),
                ("bwd softmax", softmax, softmax_rows, lambda z: mx.softmax(z, axis=-1), ()),
                ("bwd rmsnorm (x, w)", lambda z, g: rmsnorm(z, g, 1e-5), lambda z, g: rmsnorm_rows(z, g, 1e-5),
                 lambda z, g: mx.fast.rms_norm(z, g, 1e-5), (wd,)),
                ("bwd layernorm (x, w, b)", lambda z, g, c: layernorm(z, g, c, 1e-5),
                 lambda z, g, c: layernorm_rows(z, g, c, 1e-5), lambda z, g, c: mx.fast.layer_norm(z, g, c, 1e-5),
                 (wd, bd))):
            args = (ct, xd) + params
            ours = timed(vjp_of(k), *args)
            row(label, name, 3 * xd.nbytes, ours, timed(vjp_of(body), *args), "mx.compile(vjp(body))")
            if builtin is not None:
                row(label, name, 3 * xd.nbytes, ours, timed(vjp_of(builtin), *args), "mx.compile(vjp(built-in))")
    print()
    print(f"| workload | dtype | ours µs | baseline µs | speedup (baseline/ours) | ours GB/s | % of copy ({copy_bw:.0f} GB/s) | baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(table_line(r))
    if fails:
        print("FAILED checks:", ", ".join(fails))
        sys.exit(1)


if __name__ == "__main__":
    main()
