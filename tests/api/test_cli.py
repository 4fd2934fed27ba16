"""The zmlx-dsl command line, run as `python -m zmlx_dsl` in a subprocess."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("ZMLX_DSL_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "zmlx_dsl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


KERNELS = textwrap.dedent('''
    import mlx.core as mx
    import zmlx_dsl as zmlx

    @zmlx.elementwise
    def silu(x):
        return x * mx.sigmoid(x)

    @zmlx.map_reduce
    def softmax(x):
        e = mx.exp(x - x.max())
        return e / e.sum()

    @zmlx.elementwise
    def relu(x):
        if x > 0:
            return x
        return 0.0 * x

    gelu = zmlx.elementwise("kk_gelu_tanh(x)", name="gelu")
''')


def test_show_prints_ir_and_metal_source(tmp_path):
    f = tmp_path / "k.py"
    f.write_text(KERNELS)
    r = run("show", f"{f}::softmax", "--backend", "metal", "--shape", "2,64")
    assert r.returncode == 0, r.stderr
    assert "row softmax(x: float32[64])" in r.stdout and "= max(x)" in r.stdout
    assert "[[kernel]] void custom_kernel_softmax_" in r.stdout and "simd_max" in r.stdout


def test_show_cuda_mlx_and_string_kernels_and_grad(tmp_path):
    f = tmp_path / "k.py"
    f.write_text(KERNELS)
    r = run("show", f"{f}::silu", "--backend", "cuda", "--shape", "8", "--dtype", "float16", "--grad")
    assert r.returncode == 0, r.stderr
    assert "elementwise silu(x: float16)" in r.stdout and "__global__ void silu_" in r.stdout
    assert "// backward IR" in r.stdout and "silu_vjp" in r.stdout
    r = run("show", f"{f}::gelu", "--backend", "mlx", "--shape", "4")
    assert r.returncode == 0, r.stderr
    assert "tanh" in r.stdout


def test_show_unknown_kernel_names_the_ones_that_exist(tmp_path):
    f = tmp_path / "k.py"
    f.write_text(KERNELS)
    r = run("show", f"{f}::nope")
    assert r.returncode != 0
    assert "has no kernel named 'nope' (kernels: silu, softmax, relu, gelu)" in r.stderr


def test_check_reports_a_line_per_kernel(tmp_path):
    f = tmp_path / "k.py"
    f.write_text(KERNELS)
    r = run("check", str(f), "--backend", "mlx")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["silu", "mlx:", "ok"]
    assert lines[1].split() == ["softmax", "mlx:", "ok"]
    assert lines[2].startswith("relu") and "SKIP: its body does not run as eager MLX" in lines[2]
    assert len(lines) == 3   # string kernels have no Python body to check against


def test_check_on_every_available_backend(tmp_path):
    f = tmp_path / "k.py"
    f.write_text(KERNELS.split("@zmlx.elementwise\ndef relu")[0])
    r = run("check", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    from zmlx_dsl.cli import available_backends
    for b in available_backends():
        assert f"{b}: ok" in r.stdout.splitlines()[0]


def test_bench_prints_tables():
    r = run("bench", "--shape", "8,64", "--iters", "2")
    assert r.returncode == 0, r.stderr
    assert "speedup = time of 'mlx.nn.silu' / time of 'zmlx_dsl silu'" in r.stdout
    assert "zmlx_dsl softmax" in r.stdout
