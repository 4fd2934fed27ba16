"""COOKBOOK: Sampling filters from mlx-lm, written for ONE row: top-p (nucleus) and min-p.

The bodies are mlx-lm's `apply_top_p` and `apply_min_p` (mlx_lm/sample_utils.py) with the batch
axis taken out: `[..., :1]` becomes `[:1]`, and the rest is unchanged MLX code — a sort, an
exponential, a reverse exclusive cumsum, a count, a gather at that count, a mask; for min-p with
min_tokens_to_keep, an argpartition whose last k positions are written with put_along_axis. One
kernel per filter (MLX runs each op as its own kernel). Each is checked against the same function
over whole arrays (the code mlx-lm runs) and, where mlx-lm is installed, against mlx-lm's own.
min_tokens_to_keep is passed by keyword: the kernel is then built for its value, so the `if` on it
is decided when compiling (a positional number is a runtime argument, and an argpartition under a
branch on a runtime value is refused).

  python examples/cookbook_top_p.py                           # default backend (mlx on Linux)
  ZMLX_DSL_BACKEND=metal-sim python examples/cookbook_top_p.py  # the MSL, run on the CPU
"""
import math
import sys

import mlx.core as mx

import zmlx_dsl as zmlx
from zmlx_dsl import backend as backends


@zmlx.map_reduce
def apply_top_p(logprobs, top_p):
    sorted_logprobs = mx.sort(logprobs, axis=-1)
    sorted_probs = mx.exp(sorted_logprobs.astype(mx.float32))
    mass_above = mx.cumsum(sorted_probs, axis=-1, reverse=True, inclusive=False)
    total_mass = mass_above[:1] + sorted_probs[:1]
    num_dropped = (mass_above >= top_p * total_mass).sum(axis=-1, keepdims=True)
    threshold = mx.take_along_axis(sorted_logprobs, num_dropped, axis=-1)
    return mx.where(logprobs < threshold, -float("inf"), logprobs)


@zmlx.map_reduce
def apply_min_p(logprobs, min_p, min_tokens_to_keep=1):
    top_logprobs = mx.max(logprobs, axis=-1, keepdims=True)
    scaled_min_p = top_logprobs + math.log(min_p)
    tokens_to_remove = logprobs < scaled_min_p
    if min_tokens_to_keep > 1:
        top_indices = mx.argpartition(logprobs, kth=-min_tokens_to_keep, axis=-1)
        top_indices = top_indices[-min_tokens_to_keep:]
        tokens_to_remove = mx.put_along_axis(tokens_to_remove, top_indices, mx.array(False), axis=-1)
    return mx.where(tokens_to_remove, -float("inf"), logprobs)


def top_p_reference(logprobs, top_p):
    """mlx-lm's apply_top_p over whole arrays (rows on the last axis)."""
    sorted_logprobs = mx.sort(logprobs, axis=-1)
    sorted_probs = mx.exp(sorted_logprobs.astype(mx.float32))
    mass_above = mx.cumsum(sorted_probs, axis=-1, reverse=True, inclusive=False)
    total_mass = mass_above[..., :1] + sorted_probs[..., :1]
    num_dropped = (mass_above >= top_p * total_mass).sum(axis=-1, keepdims=True)
    threshold = mx.take_along_axis(sorted_logprobs, num_dropped, axis=-1)
    return mx.where(logprobs < threshold, -float("inf"), logprobs)


def min_p_reference(logprobs, min_p, min_tokens_to_keep=1):
    """mlx-lm's apply_min_p over whole arrays."""
    tokens_to_remove = logprobs < mx.max(logprobs, axis=-1, keepdims=True) + math.log(min_p)
    if min_tokens_to_keep > 1:
        top_indices = mx.argpartition(logprobs, kth=-min_tokens_to_keep, axis=-1)[..., -min_tokens_to_keep:]
        tokens_to_remove = mx.put_along_axis(tokens_to_remove, top_indices, mx.array(False), axis=-1)
    return mx.where(tokens_to_remove, -float("inf"), logprobs)


def mlx_lm_filters():
    """mlx-lm's own functions, where it is installed (the `lm` extra)."""
    try:
        from mlx_lm.sample_utils import apply_min_p as lm_min_p, apply_top_p as lm_top_p
    except ImportError:
        return None
    return lm_top_p, lm_min_p


def same(got, want) -> bool:
    """Equal, -inf where the reference drops a token (every kept value is the logprob itself)."""
    return got.shape == want.shape and got.dtype == want.dtype and mx.array_equal(got, want).item()


if __name__ == "__main__":
    mx.random.seed(0)
    logits = 3 * mx.random.normal((8, 1000))
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    print(f"backend: {backends.default()}  logprobs {logprobs.shape}")
    cases = [("top-p 0.9", apply_top_p(logprobs, 0.9), top_p_reference(logprobs, 0.9)),
             ("top-p 0.5", apply_top_p(logprobs, 0.5), top_p_reference(logprobs, 0.5)),
             ("min-p 0.1", apply_min_p(logprobs, 0.1), min_p_reference(logprobs, 0.1)),
             ("min-p 0.9, keep 5", apply_min_p(logprobs, 0.9, min_tokens_to_keep=5),
              min_p_reference(logprobs, 0.9, 5))]
    lm = mlx_lm_filters()
    if lm is not None:
        cases += [("top-p 0.9 vs mlx-lm", apply_top_p(logprobs, 0.9), lm[0](logprobs, 0.9)),
                  ("min-p 0.9, keep 5 vs mlx-lm", apply_min_p(logprobs, 0.9, min_tokens_to_keep=5),
                   lm[1](logprobs, 0.9, 5))]
    failed = False
    for name, got, want in cases:
        ok = same(got, want)
        kept = (got > -math.inf).sum(axis=-1).tolist()
        print(f"{name:30s} tokens kept per row {kept}  {'ok' if ok else 'MISMATCH'}")
        failed |= not ok
    sys.exit(1 if failed else 0)
