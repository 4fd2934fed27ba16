"""A/B experiments for issue 16 on the GPU, in one run: the row-sum grid of the backward kernels
(ROW_SUM_GROUPS), and hand-edited variants of generated CUDA kernels (the rmsnorm forward's
loads and barriers, gelu's fast erf division), each against the generated kernel and MLX.
Usage (device machine): source .mlx-cuda/activate && python3 benchmarks/variants.py [groups] [rmsnorm] [gelu]
(the sections to run; all by default)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu  # noqa: E402

import zmlx_dsl as zmlx  # noqa: E402
from zmlx_dsl.backend import plan as plans  # noqa: E402

_REAL = mx.fast.cuda_kernel
EDIT = {"name": "", "fn": None}


def _factory(**kw):
    """mx.fast.cuda_kernel with the current edit applied to the body (and a name of its own)."""
    if EDIT["fn"] is not None:
        body, header = EDIT["fn"](kw["source"]), EDIT["fn"](kw.get("header", ""))
        if body == kw["source"] and header == kw.get("header", ""):
            print(f"  [edit {EDIT['name']} changed nothing]", flush=True)
        kw["source"], kw["header"] = body, header
        kw["name"] = kw["name"] + "_" + EDIT["name"]
    return _REAL(**kw)


mx.fast.cuda_kernel = _factory


def early_eps(body: str) -> str:
    """The parameter's load at the top, off the path between the reduction and the write."""
    if "eps[0]" not in body:
        return body
    body = body.replace("eps[0]", "eps_early")
    return re.sub(r"(\n  const uint32_t row = blockIdx.x;\n)", r"\1  const float eps_early = eps[0];\n", body, count=1)


def early_w(body: str) -> str:
    """The shared weight row loaded into registers before the reduction, not in the write pass."""
    head = re.search(r"  for \(int k = 0; k < (\d+); \+\+k\) \{\n    const uint32_t v = lid \+ k \* (\d+);\n"
                     r"    if \(v < (\d+)\) \{\n", body)
    load = re.search(r"zmlx_vec<([^>]+)> w_c;\n\s*w_c = \*\(const zmlx_vec<[^>]+>\*\)\(w \+ v \* (\d+)\);", body)
    if not head or not load:
        return body
    kv, t, nv = head.groups()
    vt, n = load.groups()
    pre = (f"  zmlx_vec<{vt}> w_pre[{kv}];\n  for (int k = 0; k < {kv}; ++k) {{\n    const uint32_t v = lid + k * {t};\n"
           f"    if (v < {nv}) w_pre[k] = *(const zmlx_vec<{vt}>*)(w + v * {n});\n  }}\n")
    body = body[:head.start()] + pre + body[head.start():]
    return body.replace(load.group(0), f"zmlx_vec<{vt}> w_c = w_pre[k];")


def no_last_barrier(body: str) -> str:
    """Without the barrier after the last block reduction's read of the scratch (nothing reuses it)."""
    hits = list(re.finditer(r"zmlx_scratch\[lane\] : [^;]+\);\n  __syncthreads\(\);\n", body))
    if not hits:
        return body
    h = hits[-1]
    return body[:h.start()] + h.group(0).replace("  __syncthreads();\n", "") + body[h.end():]


def all_three(body: str) -> str:
    return no_last_barrier(early_w(early_eps(body)))


def prefetch(body: str) -> str:
    """A grid-stride row loop with the next row's held inputs loaded while this row is computed
    (software pipelining: twice the registers for the held rows)."""
    m = re.search(r"(  for \(uint32_t group = blockIdx.x; group < ngroups; group \+= gridDim.x\) \{\n"
                  r"    const uint32_t row = group;\n)((?:    zmlx_vec<[^\n]+_r\[\d+\];\n)+)"
                  r"(    for \(int k = 0; k < \d+; \+\+k\) \{\n(?:      [^\n]*\n)+?    \}\n)", body)
    end = body.rfind("    __syncthreads();\n  }\n")
    if not m or end < m.end():
        return body
    head, decls, loads = m.groups()
    names = re.findall(r"(\w+)_r\[(\d+)\];", decls)
    ndecls, nloads = decls, loads
    for n, _ in names:
        ndecls = ndecls.replace(f" {n}_r[", f" next_{n}_r[")
        nloads = nloads.replace(f"{n}_r[k] =", f"next_{n}_r[k] =")
    indent = lambda t: "".join("  " + line + "\n" for line in t.splitlines())  # noqa: E731
    dedent = lambda t: "".join(line[2:] + "\n" for line in t.splitlines())  # noqa: E731
    pre = (dedent(decls) + "  if (blockIdx.x < ngroups) {\n    const uint32_t row = blockIdx.x;\n" + dedent(indent(loads)) +
           "  }\n")
    inner = (head + ndecls + "    if (group + gridDim.x < ngroups) {\n      const uint32_t row = group + gridDim.x;\n" +
             indent(nloads) + "    }\n")
    copy = "".join(f"    for (int k = 0; k < {k}; ++k) {n}_r[k] = next_{n}_r[k];\n" for n, k in names)
    return body[:m.start()] + pre + inner + body[m.end():end] + copy + body[end:]


def fast_div(body: str) -> str:
    """The fast erf's rational divided with CUDA's __fdividef (2 ulp) instead of an IEEE division."""
    return body.replace("const float r = x * p / q;", "const float r = __fdividef(x * p, q);")


def main() -> None:
    print("device_info:", mx.device_info(), flush=True)
    total = 1 << 26
    vjp_of = lambda f: mx.compile(lambda c, *a: mx.vjp(f, list(a), [c])[1])  # noqa: E731
    lines = []

    sections = set(sys.argv[1:]) or {"groups", "rmsnorm", "gelu", "prefetch"}
    if "prefetch" in sections:  # the backward with the next row's loads in flight, at two grid sizes
        D = 4096
        x32 = mx.random.normal((16384, D))
        for dtype in (mx.float32, mx.bfloat16):
            x, c = x32.astype(dtype), mx.random.normal(x32.shape).astype(dtype)
            w, b = mx.random.normal((D,)).astype(dtype), mx.random.normal((D,)).astype(dtype)
            for label, body, call in (
                    ("bwd rmsnorm", gpu.rmsnorm_body, lambda k: (lambda f=vjp_of(lambda z, g: k(z, g, 1e-5)): f(c, x, w))),
                    ("bwd layernorm", gpu.layernorm_body,
                     lambda k: (lambda f=vjp_of(lambda z, g, h: k(z, g, h, 1e-5)): f(c, x, w, b)))):
                res = []
                for groups in (264, 396):
                    for vname, fn in (("as is", None), ("prefetch", prefetch)):
                        EDIT["name"], EDIT["fn"] = vname.replace(" ", "_") + str(groups), fn
                        plans.ROW_SUM_GROUPS = groups
                        res.append((f"{vname} {groups}", gpu.timed(call(zmlx.map_reduce(body)))))
                EDIT["fn"], plans.ROW_SUM_GROUPS = None, 264
                lines.append(f"| {label} D={D} | {str(dtype).split('.')[-1]} | " +
                             " | ".join(f"{v}: {t * 1e6:.1f}" for v, t in res) + " |")
                print(lines[-1], flush=True)
    # 1. the backward's row-sum grid
    D = 4096
    x32 = mx.random.normal((16384, D))
    for dtype in (mx.float32, mx.bfloat16) if "groups" in sections else ():
        name = str(dtype).split(".")[-1]
        x, c = x32.astype(dtype), mx.random.normal(x32.shape).astype(dtype)
        w, b = mx.random.normal((D,)).astype(dtype), mx.random.normal((D,)).astype(dtype)
        for label, body, call, base in (
                ("bwd rmsnorm", gpu.rmsnorm_body, lambda k: (lambda f=vjp_of(lambda z, g: k(z, g, 1e-5)): f(c, x, w)),
                 lambda f=vjp_of(lambda z, g: mx.fast.rms_norm(z, g, 1e-5)): f(c, x, w)),
                ("bwd layernorm", gpu.layernorm_body,
                 lambda k: (lambda f=vjp_of(lambda z, g, h: k(z, g, h, 1e-5)): f(c, x, w, b)),
                 lambda f=vjp_of(lambda z, g, h: mx.fast.layer_norm(z, g, h, 1e-5)): f(c, x, w, b))):
            ts = []
            for groups in (264, 396, 512, 792, 1056, 1584):
                plans.ROW_SUM_GROUPS = groups
                ts.append((groups, gpu.timed(call(zmlx.map_reduce(body)))))
            plans.ROW_SUM_GROUPS = 512
            t0 = gpu.timed(base)
            lines.append(f"| {label} D={D} | {name} | MLX {t0 * 1e6:.1f} | " +
                         " | ".join(f"{g}: {t * 1e6:.1f}" for g, t in ts) + " |")
            print(lines[-1], flush=True)

    # 2. rmsnorm forward variants
    for D, dtype in ((1024, mx.bfloat16), (4096, mx.bfloat16), (4096, mx.float32), (1024, mx.float32)) \
            if "rmsnorm" in sections else ():
        x = mx.random.normal((total // D, D)).astype(dtype)
        w = mx.random.normal((D,)).astype(dtype)
        res = []
        for vname, fn in (("as is", None), ("eps", early_eps), ("w", early_w), ("barrier", no_last_barrier),
                          ("all", all_three)):
            EDIT["name"], EDIT["fn"] = vname.replace(" ", "_"), fn
            k = zmlx.map_reduce(gpu.rmsnorm_body)
            res.append((vname, gpu.timed(k, x, w, 1e-5)))
            err = mx.abs(k(x, w, 1e-5).astype(mx.float32) - mx.fast.rms_norm(x, w, 1e-5).astype(mx.float32)).max().item()
            res[-1] += (err,)
        EDIT["fn"] = None
        t0 = gpu.timed(lambda: mx.fast.rms_norm(x, w, 1e-5))
        lines.append(f"| rmsnorm D={D} | {str(dtype).split('.')[-1]} | MLX {t0 * 1e6:.1f} | " +
                     " | ".join(f"{v}: {t * 1e6:.1f} (err {e:.1e})" for v, t, e in res) + " |")
        print(lines[-1], flush=True)

    # 3. gelu 16-bit with the fast erf's division as __fdividef
    for dtype in (mx.bfloat16, mx.float16) if "gelu" in sections else ():
        x = mx.random.normal((total,)).astype(dtype)
        res = []
        for vname, fn in (("as is", None), ("fdividef", fast_div)):
            EDIT["name"], EDIT["fn"] = vname.replace(" ", "_"), fn
            k = zmlx.elementwise(gpu.gelu_body)
            res.append((vname, gpu.timed(k, x)))
        EDIT["fn"] = None
        t0 = gpu.timed(mx.compile(gpu.gelu_body), x)
        tc = gpu.timed(gpu.copy, x)
        lines.append(f"| gelu | {str(dtype).split('.')[-1]} | compiled {t0 * 1e6:.1f} | copy {tc * 1e6:.1f} | " +
                     " | ".join(f"{v}: {t * 1e6:.1f}" for v, t in res) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
