"""zmlx_dsl.testing catches wrong kernels and wrong gradients (one ignoring its cotangent too);
bench's table states and follows its speedup direction; profile's dicts and compile counts."""
import time

import mlx.core as mx
import pytest

from zmlx_dsl import api, bench, profile
from zmlx_dsl.testing import assert_gradient_matches, assert_matches


def silu(x):
    return x * mx.sigmoid(x)


def test_assert_matches_passes_a_correct_kernel_and_catches_wrong_ones():
    k = api.elementwise("kk_silu(x)", name="h_silu")
    assert_matches(k, silu, shapes=[(16,), (4, 8)], dtypes=[mx.float32, mx.float16])
    with pytest.raises(AssertionError, match=r"shape \(16,\) float32 output 0: 16 of 16 values differ"):
        assert_matches(lambda x: silu(x) + 1e-2, silu, shapes=[(16,)])
    with pytest.raises(AssertionError, match="dtype mlx.core.float32 != reference dtype mlx.core.float16"):
        assert_matches(lambda x: silu(x).astype(mx.float32), silu, shapes=[(16,)], dtypes=[mx.float16])
    with pytest.raises(AssertionError, match=r"shape \(1, 16\) != reference shape \(16,\)"):
        assert_matches(lambda x: silu(x)[None], silu, shapes=[(16,)])
    with pytest.raises(AssertionError, match="2 outputs, reference has 1"):
        assert_matches(lambda x: (x, x), silu, shapes=[(4,)])


def test_nan_where_the_reference_has_nan_matches():
    assert_matches(lambda x: mx.log(x), mx.log, shapes=[(64,)], domain=(-1.0, 1.0))
    with pytest.raises(AssertionError, match="values differ"):
        assert_matches(lambda x: mx.log(mx.abs(x)), mx.log, shapes=[(64,)], domain=(-1.0, 1.0))


def _custom(vjp_rule):
    f = mx.custom_function(silu)
    f.vjp(vjp_rule)
    return f


def _dsilu(x):
    s = mx.sigmoid(x)
    return s + x * s * (1 - s)


def test_gradient_check_catches_a_wrong_derivative_and_a_forgotten_cotangent():
    right = _custom(lambda p, c, o: [c[0] * _dsilu(p[0])] if isinstance(c, list) else c * _dsilu(p))
    assert_gradient_matches(right, silu, shapes=[(32,)])
    wrong = _custom(lambda p, c, o: c * mx.sigmoid(p))
    with pytest.raises(AssertionError, match="gradient of input 0"):
        assert_gradient_matches(wrong, silu, shapes=[(32,)])
    ignores_g = _custom(lambda p, c, o: _dsilu(p))   # right derivative, cotangent dropped
    with pytest.raises(AssertionError, match="gradient of input 0"):
        assert_gradient_matches(ignores_g, silu, shapes=[(32,)])
    # the same mistake in a string kernel's grad_expr is caught too
    k = api.elementwise("kk_silu(x)", grad_expr="s + x * s * (1.0f - s)", grad_prelude="T s = kk_sigmoid(x);",
                        use_output=False, name="forgets_g")
    with pytest.raises(AssertionError, match="gradient of input 0"):
        assert_gradient_matches(k, silu, shapes=[(32,)])


def test_gradient_check_covers_every_input():
    def ref(a, b):
        return a * b

    drops_b = mx.custom_function(ref)
    drops_b.vjp(lambda p, c, o: [c * p[1], mx.zeros_like(p[1])])
    with pytest.raises(AssertionError, match="gradient of input 1"):
        assert_gradient_matches(drops_b, ref, shapes=[(8,)], n_inputs=2)


def _sleeper(seconds):
    def f(x):
        time.sleep(seconds)
        return x
    return f


def test_bench_speedup_direction_is_stated_and_followed(capsys):
    rows = bench.compare({"fast": _sleeper(0.001), "slow": _sleeper(0.02)}, shapes=[(4,)], warmup=1, iters=3)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "speedup = time of 'slow' / time of 'fast'; >1 means 'fast' is faster"
    assert "Shape" in out and "Speedup" in out
    (row,) = rows
    assert row["shape"] == (4,) and row["dtype"] == "float32"
    assert row["speedup"]["slow"] > 2.0       # 'fast' takes a twentieth of the time (margin for a loaded machine)
    assert row["speedup"]["slow"] == pytest.approx(row["times_us"]["slow"] / row["times_us"]["fast"])
    assert out.splitlines()[-1].strip().endswith(f"{row['speedup']['slow']:.2f}x")


def test_bench_plot_writes_a_png_or_says_what_is_missing(tmp_path):
    path = tmp_path / "bench.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            bench.compare({"a": _sleeper(0), "b": _sleeper(0)}, [(4,)], warmup=0, iters=1, plot=str(path))
        return
    bench.compare({"a": _sleeper(0), "b": _sleeper(0)}, [(4,)], warmup=0, iters=1, plot=str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_profile_timing_memory_and_kernel_stats():
    t = profile.time_kernel(_sleeper(0.002), mx.ones((4,)), warmup=1, iters=5)
    assert set(t) == {"median_us", "mean_us", "min_us", "max_us", "std_us"}
    assert 2000 <= t["min_us"] <= t["median_us"] <= t["max_us"]
    m = profile.memory_usage(lambda a, b: (a + b, a), mx.ones((10,)), mx.ones((10,), mx.float16))
    assert m == {"input_bytes": 60, "output_bytes": 80, "total_bytes": 140}

    k = api.elementwise("x * 3.0f", name="stats_probe")
    k(mx.ones((8,)))
    k(mx.ones((8,)))
    (s,) = [s for s in profile.kernel_stats() if s["name"] == "stats_probe"]
    assert set(s) == {"name", "backend", "compile_count", "compile_time_ms", "run_count"}
    assert s["compile_count"] == 1 and s["run_count"] == 2 and s["compile_time_ms"] > 0
    k(mx.ones((8,), mx.float16))   # a new dtype compiles a new specialisation
    (s,) = [s for s in profile.kernel_stats() if s["name"] == "stats_probe"]
    assert s["compile_count"] == 2 and s["run_count"] == 3
