"""COOKBOOK: Profiling (`zmlx` renamed to `zmlx_dsl`); `my_op` (undefined in the recipe) is a
SiLU kernel here and the array is scaled down so the CPU finishes in seconds."""
import zmlx_dsl.profile
import mlx.core as mx
from zmlx_dsl.api import elementwise

my_op = elementwise("kk_silu(x)", name="my_silu")

x = mx.random.normal((512, 1024))

# Detailed timing
timing = zmlx_dsl.profile.time_kernel(my_op, x, warmup=10, iters=50)
print(f"Median: {timing['median_us']:.1f}us, Std: {timing['std_us']:.1f}us")

# Memory estimate
mem = zmlx_dsl.profile.memory_usage(my_op, x)
print(f"Input: {mem['input_bytes']/1e6:.1f}MB, Output: {mem['output_bytes']/1e6:.1f}MB")

# Global kernel statistics
for s in zmlx_dsl.profile.kernel_stats():
    print(f"  {s['name']}: {s['run_count']} runs, "
          f"{s['compile_time_ms']:.1f}ms compile")

# ---- checks ----
assert timing["min_us"] <= timing["median_us"] <= timing["max_us"]
assert mem["input_bytes"] == mem["output_bytes"] == 512 * 1024 * 4
(stat,) = [s for s in zmlx_dsl.profile.kernel_stats() if "my_silu" in s["name"]]
assert stat["compile_count"] == 1 and stat["run_count"] == 61
print("cookbook_profile: ok")
