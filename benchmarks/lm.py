"""zmlx_dsl.patch on a ~0.5B llama-style mlx-lm model in bf16 (random init from llama.ModelArgs): prefill
tokens/s (1 x 2048, 8 x 512), decode tokens/s (batch 1 and 8, through mlx-lm's KV cache), a training
step (forward + backward, 8 x 512) with its peak memory, and per-layer times (one norm, one rope,
one MLP) — patched and unpatched in one run, on the same model (patch() then unpatch()).

    python benchmarks/lm.py                   # the GPU run (the default backend: cuda there)
    python benchmarks/lm.py --tiny            # a quick smoke run on the CPU (tiny model, small shapes)
    python benchmarks/lm.py --backend mlx     # another zmlx_dsl backend for the patched model
    python benchmarks/lm.py --include rms_norm mlp    # patch only some kinds (patch's include=)

Imports: `import mlx_lm.models.llama` runs mlx_lm/__init__.py, which imports mlx_lm.convert and
mlx_lm.utils and through them transformers, huggingface_hub and jinja2 (measured with
`python -X importtime -c "import mlx_lm.models.llama"`, mlx-lm 0.32.2). The model files themselves
(models/llama.py, base.py, cache.py, rope_utils.py, activations.py) need only mlx. So this script
registers a bare `mlx_lm` package (its real directory, without running its __init__) before importing
`mlx_lm.models.llama`: on the GPU machine (no network) only mlx-lm's own files must be present
(the mlx-lm wheel, pure Python), not transformers or huggingface_hub. The modules keep their real
names, so patch() finds them in sys.modules as usual.

Timing: warm-up, then the median of ITERS samples, each synchronised (mx.synchronize)."""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

import zmlx_dsl as zmlx


def import_llama() -> types.ModuleType:
    """mlx_lm.models.llama without mlx_lm/__init__.py (which pulls transformers and huggingface_hub)."""
    if "mlx_lm" not in sys.modules:
        spec = importlib.util.find_spec("mlx_lm")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("mlx-lm is not installed: pip install -e '.[lm]' (or carry its wheel)")
        package = types.ModuleType("mlx_lm")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["mlx_lm"] = package
    import mlx_lm.models.llama as llama
    return llama


llama = import_llama()
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402  (after the bare package above)

FULL = dict(hidden_size=1024, num_hidden_layers=28, intermediate_size=4096, num_attention_heads=16,
            num_key_value_heads=4, vocab_size=32000)
TINY = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)


def build(config: dict) -> nn.Module:
    """The llama-style model in bf16 (llama3 rope scaling, untied embeddings), random init."""
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs(model_type="llama", rms_norm_eps=1e-5, max_position_embeddings=8192,
                                        tie_word_embeddings=False, rope_theta=500000.0,
                                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0,
                                                      "original_max_position_embeddings": 8192}, **config))
    model.set_dtype(mx.bfloat16)
    mx.eval(model.parameters())
    return model


def timed(fn: Callable[[], None], iters: int, warmup: int = 2) -> float:
    """Median seconds of fn() (which evaluates its own results), after `warmup` calls."""
    for _ in range(warmup):
        fn()
    mx.synchronize()
    samples = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        mx.synchronize()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def prefill(model: nn.Module, x: mx.array) -> Callable[[], None]:
    def run() -> None:
        mx.eval(model(x, cache=make_prompt_cache(model)))
    return run


def decode(model: nn.Module, batch: int, prompt: int, steps: int, vocab: int) -> Callable[[], float]:
    """Seconds of `steps` greedy decode steps after a `prompt`-token prefill (the prefill not counted)."""
    x = mx.random.randint(0, vocab, (batch, prompt), key=mx.random.key(2))

    def run() -> float:
        cache = make_prompt_cache(model)
        y = mx.argmax(model(x, cache=cache)[:, -1], axis=-1)
        mx.eval(y)
        mx.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            y = mx.argmax(model(y[:, None], cache=cache)[:, -1], axis=-1)
            mx.eval(y)
        mx.synchronize()
        return time.perf_counter() - t
    return run


def train_step(model: nn.Module, x: mx.array) -> Callable[[], None]:
    def loss_fn(m: nn.Module) -> mx.array:
        return nn.losses.cross_entropy(m(x[:, :-1]), x[:, 1:], reduction="mean")
    step = nn.value_and_grad(model, loss_fn)

    def run() -> None:
        mx.eval(step(model))
    return run


def peak_bytes(fn: Callable[[], None]) -> int:
    """Peak memory of one fn() call."""
    mx.eval()
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    fn()
    mx.synchronize()
    return mx.get_peak_memory()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model and shapes: a CPU smoke run")
    ap.add_argument("--backend", default=None, help="zmlx_dsl backend of the patched model (default: the default)")
    ap.add_argument("--include", nargs="+", default=None, help="patch only these kinds/paths (patch's include=)")
    ap.add_argument("--iters", type=int, default=None)
    args = ap.parse_args()
    tiny = args.tiny
    config = TINY if tiny else FULL
    iters = args.iters or (2 if tiny else 10)
    vocab = config["vocab_size"]
    model = build(config)
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    backend = args.backend or zmlx.backend.default()
    print(f"llama-style model: {n_params / 1e6:,.2f}M parameters, bf16, device {mx.default_device()}, "
          f"patched on zmlx_dsl backend {backend}")

    def tokens(b: int, s: int) -> mx.array:
        return mx.random.randint(0, vocab, (b, s), key=mx.random.key(1))

    prefills = [(1, 64), (2, 32)] if tiny else [(1, 2048), (8, 512)]
    decodes = [(1, 8), (8, 8)] if tiny else [(1, 64), (8, 64)]  # (batch, steps), after a 128-token prompt
    train_shape = (2, 33) if tiny else (8, 513)
    rows: list[tuple[str, str, float, float, bool, str]] = []

    def both(name: str, unit: str, measure: Callable[[], float], higher_better: bool, target: str) -> None:
        base = measure()
        zmlx.patch(model, include=args.include, backend=args.backend)
        try:
            ours = measure()
        finally:
            zmlx.unpatch(model)
        rows.append((name, unit, base, ours, higher_better, target))
        ratio = ours / base if higher_better else base / ours
        print(f"  {name}: unpatched {base:,.1f} {unit}, patched {ours:,.1f} {unit} ({ratio:.2f}x)", flush=True)

    for b, s in prefills:
        x = tokens(b, s)
        both(f"prefill {b}x{s}", "tok/s", lambda: b * s / timed(prefill(model, x), iters), True, ">= 1.10x")
    for b, steps in decodes:
        run = decode(model, b, 16 if tiny else 128, steps, vocab)
        both(f"decode batch {b}", "tok/s", lambda: b * steps / statistics.median([run() for _ in range(iters + 1)][1:]),
             True, ">= 1.0x")  # the first run warms up
    x = tokens(*train_shape)
    both(f"training step {train_shape[0]}x{train_shape[1] - 1}", "ms", lambda: 1e3 * timed(train_step(model, x), iters),
         False, ">= 1.10x")
    both("training step peak memory", "MiB", lambda: peak_bytes(train_step(model, x)) / 2**20, False, "not higher")

    # per layer: one of each patched kind, on the prefill's activations (1 x 2048, or the tiny shape)
    layer = model.model.layers[0]
    s = prefills[0][1]
    h = mx.random.normal((1, s, config["hidden_size"])).astype(mx.bfloat16)
    heads, head_dim = config["num_attention_heads"], config["hidden_size"] // config["num_attention_heads"]
    q = mx.random.normal((1, heads, s, head_dim)).astype(mx.bfloat16)
    originals = {"input_layernorm": layer.input_layernorm, "self_attn.rope": layer.self_attn.rope, "mlp": layer.mlp}
    zmlx.patch(model, backend=args.backend)
    patched = {"input_layernorm": layer.input_layernorm, "self_attn.rope": layer.self_attn.rope, "mlp": layer.mlp}
    zmlx.unpatch(model)
    per_layer = []
    for name, arg in (("input_layernorm", h), ("self_attn.rope", q), ("mlp", h)):
        fwd = [timed(lambda m=m: mx.eval(m(arg)), iters) * 1e6 for m in (originals[name], patched[name])]
        grad = [timed(lambda m=m: mx.eval(mx.grad(lambda a: m(a).astype(mx.float32).sum())(arg)), iters) * 1e6
                for m in (originals[name], patched[name])]
        per_layer.append((name, type(originals[name]).__name__, type(patched[name]).__name__, fwd, grad))

    print("\n| workload | unpatched | patched | speedup | target |\n|---|---|---|---|---|")
    for name, unit, base, ours, higher_better, target in rows:
        ratio = ours / base if higher_better else base / ours
        print(f"| {name} | {base:,.1f} {unit} | {ours:,.1f} {unit} | {ratio:.2f}x | {target} |")
    print(f"\n| layer 0 module ({tuple(h.shape)} activations) | unpatched µs | patched µs | speedup "
          f"| fwd+bwd unpatched µs | fwd+bwd patched µs | speedup |\n|---|---|---|---|---|---|---|")
    for name, a, b, fwd, grad in per_layer:
        print(f"| {name}: {a} -> {b} | {fwd[0]:.1f} | {fwd[1]:.1f} | {fwd[0] / fwd[1]:.2f}x | {grad[0]:.1f} "
              f"| {grad[1]:.1f} | {grad[0] / grad[1]:.2f}x |")


if __name__ == "__main__":
    main()
