"""COOKBOOK: N-ary Op with Raw Metal Source (only `zmlx` renamed to `zmlx_dsl`).

Raw Metal runs on the Metal backends only: this script shows the clear error on the portable
backend ("mlx"), then runs and checks the kernel on "metal-sim" (MSL executed on the CPU).
"""
from zmlx_dsl import autograd
import mlx.core as mx

# Fused: a * sigmoid(b) + c
fused_op = autograd.nary_from_expr(
    name="fused_gate",
    fwd_source="""
        uint elem = thread_position_in_grid.x;
        T a_val = a[elem];
        T b_val = b[elem];
        T c_val = c[elem];
        T sig = T(1) / (T(1) + metal::exp(-b_val));
        out[elem] = a_val * sig + c_val;
    """,
    bwd_source="""
        uint elem = thread_position_in_grid.x;
        T a_val = a[elem];
        T b_val = b[elem];
        T g = cotan[elem];
        T sig = T(1) / (T(1) + metal::exp(-b_val));
        da[elem] = g * sig;
        db[elem] = g * a_val * sig * (T(1) - sig);
        dc[elem] = g;
    """,
    input_names=["a", "b", "c"],
    output_names=["out"],
    compute_dtype=mx.float32,
)

# ---- where it runs ----
import os  # noqa: E402

import zmlx_dsl  # noqa: E402
import zmlx_dsl.testing  # noqa: E402
from zmlx_dsl.backend.metal_sim.compiler import find_compiler  # noqa: E402

a, b, c = (mx.random.normal((1024,)) for _ in range(3))
os.environ["ZMLX_DSL_BACKEND"] = "mlx"
try:
    fused_op(a, b, c)
    raise SystemExit("expected a ZMLXBackendError on the mlx backend")
except zmlx_dsl.ZMLXBackendError as e:
    print("on mlx:", e)

if find_compiler() is None:
    print("cookbook_raw_metal: metal-sim skipped (no C++ compiler: pip install ziglang)")
else:
    os.environ["ZMLX_DSL_BACKEND"] = "metal-sim"
    ref = lambda p, q, r: p * mx.sigmoid(q) + r  # noqa: E731
    assert mx.allclose(fused_op(a, b, c), ref(a, b, c), atol=1e-6)
    zmlx_dsl.testing.assert_gradient_matches(fused_op, ref, shapes=[(1024,)], n_inputs=3)
    print("cookbook_raw_metal: ok on metal-sim")
