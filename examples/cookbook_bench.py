"""COOKBOOK: Benchmarking (`zmlx` renamed to `zmlx_dsl`).

Two changes the recipe needs to run at all: it uses an undefined `my_op` (defined here as a SiLU
kernel) and `mx.nn.silu`, which does not exist (`mlx.nn.silu` is used). Shapes are scaled down
so the CPU finishes in seconds.
"""
import zmlx_dsl.bench
import mlx.core as mx
import mlx.nn as nn
from zmlx_dsl.api import elementwise

my_op = elementwise("kk_silu(x)", name="my_silu")

rows = zmlx_dsl.bench.compare(
    {"Custom": my_op, "MLX Built-in": nn.silu},
    shapes=[(64, 1024), (256, 1024)],
    dtypes=[mx.float32, mx.float16],
    warmup=2,
    iters=5,
)

# ---- the returned rows: speedup = time(MLX Built-in) / time(Custom) ----
assert len(rows) == 4
for r in rows:
    t = r["times_us"]
    assert abs(r["speedup"]["MLX Built-in"] - t["MLX Built-in"] / t["Custom"]) < 1e-9
print("cookbook_bench: ok")
