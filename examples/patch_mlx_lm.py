"""zmlx_dsl.patch(model) on an mlx-lm model: what it patches (and leaves alone, with why), the fidelity
check against the unpatched model, and a few training steps with mlx.optimizers side by side.

    python examples/patch_mlx_lm.py          # needs the `lm` extra: pip install -e '.[lm]'

The model is a small randomly initialised llama (llama3 rope scaling) built from its ModelArgs: no
download. The unpatched copy is the reference everything is compared with."""
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from mlx_lm.models import llama
from mlx_lm.models.cache import make_prompt_cache

import zmlx_dsl as zmlx

ARGS = llama.ModelArgs(model_type="llama", hidden_size=128, num_hidden_layers=4, intermediate_size=352,
                       num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=512,
                       max_position_embeddings=1024, tie_word_embeddings=False,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 256})


def make_model() -> nn.Module:
    """The same random model every call (seeded)."""
    mx.random.seed(0)
    model = llama.Model(ARGS)
    mx.eval(model.parameters())
    return model


def greedy(model: nn.Module, prompt: mx.array, steps: int = 32) -> list[int]:
    """Greedy decoding through mlx-lm's KV cache."""
    cache = make_prompt_cache(model)
    logits, out = model(prompt[None], cache=cache)[:, -1], []
    for _ in range(steps):
        y = mx.argmax(logits, axis=-1)
        out.append(y.item())
        logits = model(y[:, None], cache=cache)[:, -1]
    return out


def loss_fn(model: nn.Module, x: mx.array) -> mx.array:
    """Next-token cross entropy."""
    return nn.losses.cross_entropy(model(x[:, :-1]), x[:, 1:], reduction="mean")


def train(model: nn.Module, batches: list[mx.array]) -> list[float]:
    """AdamW steps over `batches`; the losses."""
    opt, step, losses = optim.AdamW(learning_rate=3e-3), nn.value_and_grad(model, loss_fn), []
    for x in batches:
        loss, grads = step(model, x)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        losses.append(loss.item())
    return losses


def main() -> None:
    reference, model = make_model(), make_model()
    print(zmlx.patch(model, dry_run=True), end="\n\n")
    patched = zmlx.patch(model)
    print(f"patched {len(patched)} modules, e.g. {patched[0]}: {type(model.model.layers[0].self_attn.rope).__name__}, "
          f"model.layers.0.mlp: {type(model.model.layers[0].mlp).__name__}\n")

    x = mx.random.randint(0, ARGS.vocab_size, (4, 64), key=mx.random.key(1))
    want, got = reference(x), model(x)
    err = (mx.abs(got - want).max() / mx.abs(want).max()).item()
    same = greedy(model, x[0, :8]) == greedy(reference, x[0, :8])
    print(f"fidelity: logits max relative error {err:.1e}; 32 greedy tokens through the KV cache identical: {same}")
    assert err <= 1e-4 and same

    batches = [mx.random.randint(0, ARGS.vocab_size, (4, 65), key=mx.random.key(10))] * 6  # one batch, learnt
    ref_losses, losses = train(reference, batches), train(model, batches)
    print("\nAdamW step  loss unpatched  loss patched")
    for i, (a, b) in enumerate(zip(ref_losses, losses)):
        print(f"{i:10d}  {a:14.5f}  {b:12.5f}")
    assert max(abs(a - b) / a for a, b in zip(ref_losses, losses)) <= 1e-3
    assert losses[-1] < losses[0]

    zmlx.unpatch(model)  # the originals come back, carrying the trained weights
    assert type(model.model.norm) is nn.RMSNorm
    drift = max((mx.abs(a - b).max() / mx.abs(b).max()).item()
                for (_, a), (_, b) in zip(tree_flatten(model.parameters()), tree_flatten(reference.parameters())))
    print(f"\nunpatched; trained weights against the unpatched run's: max relative difference {drift:.1e}")
    assert drift <= 1e-3


if __name__ == "__main__":
    main()
