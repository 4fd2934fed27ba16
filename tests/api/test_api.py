"""Every COOKBOOK recipe through the string API, on "mlx" and "metal-sim": values, dtypes, shapes
and gradients against MLX; the raw-Metal recipe on metal-sim and its clear error on mlx."""
import mlx.core as mx
import mlx.nn as nn
import pytest

import zmlx_dsl
from zmlx_dsl import autograd, msl
from zmlx_dsl.api import elementwise, map_reduce, reduce
from zmlx_dsl.testing import assert_gradient_matches, assert_matches


def _metal_sim_missing():
    try:
        from zmlx_dsl.backend.metal_sim.compiler import find_compiler
    except ImportError as e:
        return f"zmlx_dsl.backend.metal_sim is not importable ({e})"
    return None if find_compiler() else "metal-sim needs a C++ compiler (clang++-19 or `pip install ziglang`)"


SIM_SKIP = _metal_sim_missing()
BACKENDS = ["mlx", pytest.param("metal-sim", marks=pytest.mark.skipif(SIM_SKIP is not None, reason=SIM_SKIP or ""))]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", request.param)
    return request.param


def silu_ref(x):
    return x * mx.sigmoid(x)


def test_activation_with_gradient(backend):
    silu = elementwise("kk_silu(x)", name="my_silu", grad_expr="g * (s + x * s * ((T)1 - s))",
                       grad_prelude="T s = kk_sigmoid(x);", use_output=False, header=msl.DEFAULT_HEADER)
    assert_matches(silu, silu_ref, shapes=[(8, 1024), (7,)], dtypes=[mx.float32, mx.float16, mx.bfloat16])
    assert_gradient_matches(silu, silu_ref, shapes=[(8, 64)], dtypes=[mx.float32, mx.float16])
    assert "g" in silu.grad_ir(mx.zeros((4,)))   # the given VJP is what runs


def test_given_vjp_using_the_output_and_higher_order(backend):
    sig = elementwise("kk_sigmoid(x)", grad_expr="g * y * (1.0f - y)", use_output=True)
    assert_gradient_matches(sig, mx.sigmoid, shapes=[(64,)])
    x = mx.random.normal((32,))
    gg = mx.grad(lambda z: mx.grad(lambda w: sig(w).sum())(z).sum())(x)      # grad of the given VJP
    ref = mx.grad(lambda z: mx.grad(lambda w: mx.sigmoid(w).sum())(z).sum())(x)
    assert mx.allclose(gg, ref, atol=1e-5)
    _, t = mx.jvp(sig, [x], [mx.ones_like(x)])                                # forward mode from the VJP
    assert mx.allclose(t[0], mx.sigmoid(x) * (1 - mx.sigmoid(x)), atol=1e-6)


def test_automatic_gradient_without_grad_expr(backend):
    mish = elementwise("x * tanh(log(1 + exp(x)))", name="test_mish")
    ref = lambda x: x * mx.tanh(mx.log(1 + mx.exp(x)))  # noqa: E731
    assert_matches(mish, ref, shapes=[(128,), (64, 32)])
    assert_gradient_matches(mish, ref, shapes=[(64, 32)])


def test_string_form_of_the_decorator(backend):
    silu = zmlx_dsl.elementwise("kk_silu(x)", name="str_silu")
    assert_matches(silu, nn.silu, shapes=[(16, 16)])
    assert silu.name == "str_silu"


def test_entropy_loss(backend):
    entropy = reduce(init="0.0f", update="acc + (-v * log(v + 1e-8f))", name="entropy")
    ref = lambda p: (-p * mx.log(p + 1e-8)).sum(axis=-1)  # noqa: E731
    probs = mx.softmax(mx.random.normal((4, 1024)), axis=-1)
    h = entropy(probs)
    assert h.shape == (4,)
    assert mx.allclose(h, ref(probs), atol=1e-4)
    assert_gradient_matches(entropy, ref, shapes=[(4, 100)], domain=(0.01, 1.0), atol=1e-4)


def test_row_max(backend):
    row_max = reduce(init="-INFINITY", update="max(acc, v)", name="row_max")
    x = mx.random.normal((8, 2048))
    assert row_max(x).shape == (8,) and mx.array_equal(row_max(x), x.max(axis=-1))
    assert_matches(row_max, lambda z: z.max(axis=-1), shapes=[(3, 5, 33)], dtypes=[mx.float32, mx.float16])
    assert_gradient_matches(row_max, lambda z: z.max(axis=-1), shapes=[(4, 64)])


def test_reduce_forms_and_finalize(backend):
    mean_sq = reduce(init="0.0f", update="acc + v * v", finalize="sqrt(acc / D)")
    assert_matches(mean_sq, lambda z: mx.sqrt((z * z).mean(axis=-1)), shapes=[(4, 100)])
    neg = reduce(init="1.0f", update="acc - v", finalize="s")
    assert_matches(neg, lambda z: 1.0 - z.sum(axis=-1), shapes=[(4, 100)], atol=1e-4)
    lo = reduce(init="INFINITY", update="fmin(2.0f * v, acc)")
    assert_matches(lo, lambda z: (2 * z).min(axis=-1), shapes=[(4, 100)])
    count = reduce(init="0.0f", update="acc + 1.0f")
    assert mx.array_equal(count(mx.zeros((3, 17))), mx.full((3,), 17.0))


def test_softmax_map_reduce(backend):
    my_softmax = map_reduce(
        pass1={"init": "-INFINITY", "update": "max(acc1, x)", "reduce": "max(a, b)"},
        pass2={"init": "0.0f", "update": "acc2 + exp(x - s1)", "reduce": "a + b"},
        write="exp(x - s1) / s2", name="my_softmax")
    x = mx.random.normal((8, 1024))
    assert mx.allclose(my_softmax(x), mx.softmax(x, axis=-1), atol=1e-5)
    sm = lambda z: mx.softmax(z, axis=-1)  # noqa: E731
    assert_matches(my_softmax, sm, shapes=[(2, 3, 100)], dtypes=[mx.float32, mx.float16])
    assert_gradient_matches(my_softmax, sm, shapes=[(4, 128)])


def test_layernorm_map_reduce(backend):
    my_layernorm = map_reduce(
        pass1={"init": "0.0f", "update": "acc1 + x", "reduce": "a + b"},
        pass2={"init": "0.0f", "update": "acc2 + (x - s1/D) * (x - s1/D)", "reduce": "a + b"},
        write="(x - s1/D) * rsqrt(s2/D + 1e-5f)", name="my_layernorm", threadgroup=256)
    ref = lambda z: mx.fast.layer_norm(z, None, None, 1e-5)  # noqa: E731
    assert_matches(my_layernorm, ref, shapes=[(8, 1024)], atol=1e-4)
    assert_gradient_matches(my_layernorm, ref, shapes=[(4, 256)], atol=1e-4, rtol=1e-3)


def test_binary_with_gradient_and_broadcasting(backend):
    safe_mul = autograd.binary_from_expr(name="safe_mul", fwd_expr="a * b", vjp_lhs_expr="g * b",
                                         vjp_rhs_expr="g * a", compute_dtype=mx.float32)
    assert_matches(safe_mul, lambda a, b: a * b, shapes=[(1024,)], n_inputs=2)
    assert_gradient_matches(safe_mul, lambda a, b: a * b, shapes=[(1024,), (4, 64)], n_inputs=2)
    m, row, cot = mx.random.normal((4, 64)), mx.random.normal((64,)), mx.random.normal((4, 64))
    _, (ga, gb) = mx.vjp(safe_mul, [m, row], [cot])
    assert ga.shape == m.shape and gb.shape == row.shape
    assert mx.allclose(gb, (cot * m).sum(axis=0), atol=1e-5)


def test_unary_from_expr(backend):
    tanh = autograd.unary_from_expr(name="my_tanh", fwd_expr="tanh(x)", vjp_expr="g * (1.0f - y * y)",
                                    compute_dtype=mx.float32)
    assert_gradient_matches(tanh, mx.tanh, shapes=[(100,)], dtypes=[mx.float32, mx.float16])


FUSED_FWD = """
    uint elem = thread_position_in_grid.x;
    T a_val = a[elem];
    T b_val = b[elem];
    T c_val = c[elem];
    T sig = T(1) / (T(1) + metal::exp(-b_val));
    out[elem] = a_val * sig + c_val;
"""
FUSED_BWD = """
    uint elem = thread_position_in_grid.x;
    T a_val = a[elem];
    T b_val = b[elem];
    T g = cotan[elem];
    T sig = T(1) / (T(1) + metal::exp(-b_val));
    da[elem] = g * sig;
    db[elem] = g * a_val * sig * (T(1) - sig);
    dc[elem] = g;
"""


def fused_gate():
    return autograd.nary_from_expr(name="fused_gate", fwd_source=FUSED_FWD, bwd_source=FUSED_BWD,
                                   input_names=["a", "b", "c"], output_names=["out"], compute_dtype=mx.float32)


def test_raw_metal_is_a_clear_error_on_mlx(monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", "mlx")
    a = mx.ones((8,))
    with pytest.raises(zmlx_dsl.ZMLXBackendError, match="'fused_gate' is raw Metal .* runs only on the 'metal' "
                                                         "and 'metal-sim' backends, not on 'mlx'"):
        fused_gate()(a, a, a)
    raw_ew = elementwise("as_float(x)", header="inline float as_float(float v) { return v; }")
    with pytest.raises(zmlx_dsl.ZMLXBackendError, match="call of 'as_float' \\(defined in the header\\)"):
        raw_ew(a)


@pytest.mark.skipif(SIM_SKIP is not None, reason=SIM_SKIP or "")
def test_raw_metal_runs_on_metal_sim(monkeypatch):
    monkeypatch.setenv("ZMLX_DSL_BACKEND", "metal-sim")
    ref = lambda a, b, c: a * mx.sigmoid(b) + c  # noqa: E731
    assert_matches(fused_gate(), ref, shapes=[(1024,), (3, 50)], n_inputs=3)
    assert_gradient_matches(fused_gate(), ref, shapes=[(1024,)], n_inputs=3)
    # a raw elementwise expression (a header function) with a raw grad_expr
    sq = elementwise("sq(x)", grad_expr="g * 2.0f * x", use_output=False,
                     header=msl.DEFAULT_HEADER + "inline float sq(float v) { return v * v; }")
    assert_matches(sq, mx.square, shapes=[(100,)], dtypes=[mx.float32, mx.float16])
    assert_gradient_matches(sq, mx.square, shapes=[(100,)])


def test_non_associative_update_is_a_serial_fold():
    # not `acc ⊕ f(v)`: a serial loop over the row (values and errors in test_api_serial.py)
    prod = reduce(init="1.0f", update="acc * v", name="prod")
    x = mx.array([[1.0, 2.0, 3.0], [0.5, 4.0, -1.0]])
    assert "fold(" in prod.ir(x) and prod(x).tolist() == [6.0, -2.0]
    assert "fold(" in reduce(init="0.0f", update="acc + acc * v").ir(x)


def test_map_reduce_checks_its_reduce_and_threadgroup():
    good1 = {"init": "-INFINITY", "update": "max(acc1, x)", "reduce": "max(a, b)"}
    good2 = {"init": "0.0f", "update": "acc2 + exp(x - s1)", "reduce": "a + b"}
    with pytest.raises(zmlx_dsl.ZMLXSyntaxError, match="does not combine partial results the way update "
                                                       "accumulates \\(sum\\); write 'a \\+ b'"):
        map_reduce(pass1=good1, pass2={"init": "0.0f", "update": "acc2 + x", "reduce": "max(a, b)"}, write="x")
    with pytest.raises(ValueError, match="threadgroup must be a power of two from 32 to 1024, got 100"):
        map_reduce(pass1=good1, pass2=good2, write="x", threadgroup=100)
    with pytest.raises(zmlx_dsl.ZMLXSyntaxError, match="reduce/map_reduce strings must be expressions"):
        map_reduce(pass1=good1, pass2=good2, write="out[i] = x;")


def test_malformed_strings_fail_at_definition_with_location():
    with pytest.raises(zmlx_dsl.ZMLXSyntaxError) as info:
        elementwise("x * (1 +", name="bad")
    assert str(info.value).startswith("<bad expr>:1:9: expected an expression")
    with pytest.raises(zmlx_dsl.ZMLXNameError, match="unknown name 'y'"):
        elementwise("x", grad_expr="g * y", use_output=False, name="noy")(mx.ones(3))
    with pytest.raises(zmlx_dsl.ZMLXTypeError, match="does not depend on any input"):
        elementwise("1.0f", name="const")(mx.ones(3))


def test_kernel_names_are_deterministic():
    a = elementwise("x * 2.0f")
    b = elementwise("x * 2.0f")
    assert a.name == b.name and a.name.startswith("elementwise_")
    assert elementwise("x * 3.0f").name != a.name


def test_cuda_and_metal_source_of_a_string_kernel():
    k = elementwise("kk_silu(x)", name="src_silu")
    x = mx.zeros((4, 8))
    assert "src_silu" in k.source(x, backend="metal") and "src_silu" in k.source(x, backend="cuda")
    assert "sigmoid" in k.ir(x)


def test_given_vjp_is_used_on_every_backend(backend):
    """A grad_expr is the kernel's derivative by definition, also on the portable backend (where
    MLX could differentiate the forward ops itself): a deliberately different VJP shows it runs."""
    triple = elementwise("x * x", grad_expr="g * 3.0f", use_output=False, name="given_triple")
    x = mx.random.normal((5,))
    ct = mx.random.normal((5,))
    _, (gx,) = mx.vjp(triple, [x], [ct])
    assert mx.allclose(gx, 3.0 * ct, atol=1e-6)
