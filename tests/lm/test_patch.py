"""patch()/unpatch() behaviour: the exact error texts, dry_run's report, include/exclude, frozen and
shared modules, training after patch, dtypes the kernels do not serve, and the import boundary."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import pytest
from conftest import BACKENDS
from lmtools import build, loss_fn, max_rel, tokens
from mlx.utils import tree_flatten

import zmlx_dsl as zmlx
from zmlx_dsl.patch import PatchReport


def test_importing_zmlx_dsl_imports_no_mlx_lm() -> None:
    code = "import sys, zmlx_dsl; zmlx_dsl.patch; print('mlx_lm' in sys.modules, 'zmlx_dsl.nn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_patching_twice_is_an_error() -> None:
    model = build("llama")
    zmlx.patch(model)
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.patch(model)
    assert str(e.value) == ("patch: the model is already patched (9 modules); call zmlx_dsl.unpatch(model) before "
                            "patching it again")
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.patch(model.model)
    assert str(e.value) == ("patch: layers.0.self_attn.rope is already patched by an earlier zmlx_dsl.patch call; "
                            "unpatch that model before patching this one")
    zmlx.unpatch(model)
    assert len(zmlx.patch(model)) == 9  # after unpatch, again


def test_unpatch_of_an_unpatched_or_changed_model() -> None:
    model = build("llama")
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.unpatch(model)
    assert str(e.value) == "unpatch: this model was not patched by zmlx_dsl.patch (or is already unpatched)"
    zmlx.patch(model)
    model.model.norm = nn.RMSNorm(64)
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.unpatch(model)
    assert str(e.value) == ("unpatch: model.norm is no longer the module patch() put there (it is a RMSNorm); "
                            "nothing was restored")
    assert type(model.model.layers[0].mlp).__module__ == "zmlx_dsl.nn.mlp"


def test_parameter_mismatch_names_the_modules_and_why() -> None:
    model = build("llama")
    model.model.norm.scale = mx.ones((64,))
    model.model.layers[0].input_layernorm.weight = mx.ones((1, 64))
    before = {k: type(m) for k, m in model.named_modules()}
    with pytest.raises(zmlx.ZMLXValueError) as e:
        zmlx.patch(model)
    assert str(e.value) == (
        "patch: parameters do not match (nothing was patched; exclude= these modules to patch the rest):\n"
        "  model.layers.0.input_layernorm: RMSNorm: parameter 'weight' has shape (1, 64); zmlx_dsl.nn.RMSNorm needs "
        "a 1-D (dims,) weight over the normalized axis\n"
        "  model.norm: RMSNorm has parameter 'scale' that zmlx_dsl.nn.RMSNorm does not (it has weight): patching "
        "would drop it from the model's parameters")
    assert {k: type(m) for k, m in model.named_modules()} == before
    report = zmlx.patch(model, dry_run=True)
    assert report.skipped["model.norm"] == ("parameter mismatch: RMSNorm has parameter 'scale' that "
                                            "zmlx_dsl.nn.RMSNorm does not (it has weight): patching would drop it "
                                            "from the model's parameters")
    assert len(zmlx.patch(model, exclude=["model.norm", "model.layers.0.input_layernorm"])) == 7


def test_float64_is_left_alone_with_the_reason() -> None:
    model = build("qwen3")
    model.set_dtype(mx.float64)
    x = tokens(1, 8)
    with mx.stream(mx.cpu):
        before = model(x)
        report = zmlx.patch(model)
        assert report == []
        assert report.skipped["model.norm"] == ("RMSNorm: parameter 'weight' is mlx.core.float64; the kernels serve "
                                                "float32, float16 and bfloat16")
        assert report.skipped["model.layers.0.mlp"] == ("MLP: parameter 'gate_proj.weight' is mlx.core.float64; the "
                                                        "kernels serve float32, float16 and bfloat16")
        assert report.skipped["model.layers.0.self_attn.rope"] == ("RoPE: the model's parameters are "
                                                                   "mlx.core.float64, which the kernels do not serve")
        assert mx.array_equal(model(x), before).item()


def test_dry_run_lists_and_changes_nothing() -> None:
    model = build("mixtral")
    before = {k: type(m) for k, m in model.named_modules()}
    report = zmlx.patch(model, dry_run=True)
    assert isinstance(report, PatchReport) and report.dry_run
    assert {k: type(m) for k, m in model.named_modules()} == before
    assert report == zmlx.patch(model)  # the same paths, in the same order
    assert report.skipped["model.embed_tokens"] == ("Embedding: not a kind patch() serves (norms, rotary "
                                                    "embeddings, gated MLPs)")
    assert report.skipped["model.layers.0.block_sparse_moe.switch_mlp"].startswith(
        "SwitchGLU: its __call__ is not a form patch() knows")
    assert "model.layers.0" not in report.skipped  # containers are walked, not listed
    assert str(report).splitlines()[0] == "would patch 9 modules:"


def test_a_shared_module_is_replaced_once_and_restored_everywhere() -> None:
    model = build("mixtral")  # switch_layers.SwitchGLU's default SwiGLU() is one module in every layer
    layers = model.model.layers
    original = layers[0].block_sparse_moe.switch_mlp.activation
    assert layers[1].block_sparse_moe.switch_mlp.activation is original
    zmlx.patch(model)
    new = layers[0].block_sparse_moe.switch_mlp.activation
    assert new is layers[1].block_sparse_moe.switch_mlp.activation and new is not original
    zmlx.unpatch(model)
    assert all(layer.block_sparse_moe.switch_mlp.activation is original for layer in layers)


def test_include_and_exclude() -> None:
    assert zmlx.patch(build("llama"), include="rope") == ["model.layers.0.self_attn.rope",
                                                          "model.layers.1.self_attn.rope"]
    report = zmlx.patch(build("llama"), exclude=["model.layers.0", "mlp"])
    assert report == ["model.layers.1.self_attn.rope", "model.layers.1.input_layernorm",
                      "model.layers.1.post_attention_layernorm", "model.norm"]
    assert report.skipped["model.layers.1.mlp"] == "excluded by 'mlp'"
    assert report.skipped["model.layers.0.self_attn.rope"] == "excluded by 'model.layers.0'"
    for bad in ("rmsnorm", ["model.layer.*"]):
        with pytest.raises(zmlx.ZMLXValueError) as e:
            zmlx.patch(build("llama"), include=bad)
        name = bad if isinstance(bad, str) else bad[0]
        assert str(e.value) == (f"patch: {name!r} names no module of this model: give a kind (rms_norm, layer_norm, "
                                f"rope, mlp, activation) or a dotted-path pattern such as 'model.layers.*.mlp'")


def test_frozen_parameters_stay_frozen() -> None:
    model = build("gemma2")
    model.freeze()
    model.model.norm.unfreeze()
    trainable = [k for k, _ in tree_flatten(model.trainable_parameters())]
    zmlx.patch(model)
    assert [k for k, _ in tree_flatten(model.trainable_parameters())] == trainable == ["model.norm.weight"]
    zmlx.unpatch(model)
    assert [k for k, _ in tree_flatten(model.trainable_parameters())] == trainable


def test_training_after_patch_matches_and_unpatch_keeps_the_trained_weights() -> None:
    x = tokens(2, 16)

    def train(model: nn.Module, steps: int = 3) -> list[float]:
        opt, step = optim.AdamW(1e-2), nn.value_and_grad(model, loss_fn)
        losses = []
        for _ in range(steps):
            loss, g = step(model, x)
            opt.update(model, g)
            mx.eval(model.parameters(), opt.state)
            losses.append(loss.item())
        return losses

    reference, patched = build("phi3"), build("phi3")
    zmlx.patch(patched)
    expected, got = train(reference), train(patched)
    assert max(abs(a - b) / abs(a) for a, b in zip(expected, got)) <= 1e-4
    assert expected[-1] < expected[0]
    zmlx.unpatch(patched)
    assert type(patched.model.norm) is nn.RMSNorm
    assert max_rel(patched(x), reference(x)) <= 1e-4  # the trained weights came back with the originals


def test_layer_norm_and_a_plain_module_tree() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norms = [nn.LayerNorm(32), nn.LayerNorm(32, affine=False), nn.LayerNorm(32, bias=False)]
            self.proj = {"out": nn.Linear(32, 32)}

        def __call__(self, x: mx.array) -> mx.array:
            for n in self.norms:
                x = n(x)
            return self.proj["out"](x)

    mx.random.seed(3)
    block, x = Block(), mx.random.normal((4, 32))
    block.norms[0].weight = mx.random.normal((32,))
    expected = block(x)
    report = zmlx.patch(block)
    assert report == ["norms.0", "norms.1", "norms.2"]
    assert report.skipped == {"proj.out": "Linear: not a kind patch() serves (norms, rotary embeddings, gated MLPs)"}
    assert max_rel(block(x), expected) <= 1e-5
    zmlx.unpatch(block)
    assert mx.array_equal(block(x), expected).item()


def test_the_readme_snippet_runs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Models: zmlx_dsl.nn and patch(model)"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]
    exec(compile(code, "README.md (Models)", "exec"), {})


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlx_lm_scaled_ropes(backend: str) -> None:
    from mlx_lm.models.rope_utils import initialize_rope

    configs = {"linear": {"rope_type": "linear", "factor": 4.0},
               "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
               "proportional": {"rope_type": "proportional", "partial_rotary_factor": 0.5, "factor": 2.0},
               "llama3": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64},
               "dynamic": {"rope_type": "dynamic", "factor": 2.0}}

    class Ropes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ropes = {k: initialize_rope(32, 10000.0, k == "llama3", c, 128) for k, c in configs.items()}

    model, x = Ropes(), mx.random.normal((2, 4, 9, 32), key=mx.random.key(7))
    assert model.ropes["yarn"].mscale != 1.0
    calls = {k: [(x,), (x, 5)] for k in configs}
    calls["yarn"] += [(x, 3, 0.5, True)]  # mlx-lm's YarnRoPE also takes scale= and inverse=
    expected = {k: [model.ropes[k](*a) for a in args] for k, args in calls.items()}
    report = zmlx.patch(model, backend=backend)
    assert report.replaced == {"ropes.linear": "RoPE -> zmlx_dsl.nn.RoPE",
                               "ropes.yarn": "YarnRoPE -> zmlx_dsl.nn.FreqsRoPE",
                               "ropes.proportional": "ProportionalRoPE -> zmlx_dsl.nn.FreqsRoPE",
                               "ropes.llama3": "Llama3RoPE -> zmlx_dsl.nn.FreqsRoPE"}
    assert report.skipped == {"ropes.dynamic": "DynamicNTKScalingRoPE: its base depends on each call's sequence "
                                               "length and offset (not served)"}
    for k, args in calls.items():
        for a, want in zip(args, expected[k]):
            assert max_rel(model.ropes[k](*a), want) <= 1e-5, (k, a[1:])
