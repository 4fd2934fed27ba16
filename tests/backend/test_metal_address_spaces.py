"""Pointer casts in generated MSL keep the address space MLX gives each input.

MLX passes inputs of fewer than 8 elements as `const constant T*`; a vector load that casts such a
pointer to `const device` does not compile on Metal (metal-sim's clang accepts the cast, so this is
checked on the text)."""
import re

import mlx.core as mx
import pytest

import zmlx_dsl as zmlx


def scale(x, y):
    return x * 2 + y


def softmax_w(x, w):
    e = mx.exp(x - x.max())
    return e / e.sum() * w


def _spaces(src: str) -> dict[str, str]:
    """input name -> address space, from the kernel signature."""
    return {m.group(2): m.group(1) for m in re.finditer(r"const (device|constant) \w+\* (\w+) \[\[buffer", src)}


def _casts(src: str) -> list[tuple[str, str]]:
    """(address space, pointer name) of every `*(const SPACE T*)(name + ...)` load."""
    return re.findall(r"\*\(const (device|constant) [^)]*\*\)\((\w+) \+", src)


@pytest.mark.parametrize("shape", [(5,), (2, 3), (1, 7), (8,), (64,)])
def test_elementwise_casts_match_signature(shape):
    k = zmlx.elementwise(scale)
    x = mx.ones(shape)
    src = k.source(x, x, backend="metal")
    spaces, casts = _spaces(src), _casts(src)
    assert casts, "the fast path loads vectors"
    assert all(spaces[name] == space for space, name in casts), (spaces, casts)


@pytest.mark.parametrize("rows,D", [(1, 4), (2, 3), (1, 8), (4, 64)])
def test_row_casts_match_signature(rows, D):
    k = zmlx.map_reduce(softmax_w)
    src = k.source(mx.ones((rows, D)), mx.ones((D,)), backend="metal")
    spaces, casts = _spaces(src), _casts(src)
    assert all(spaces[name] == space for space, name in casts), (spaces, casts)
