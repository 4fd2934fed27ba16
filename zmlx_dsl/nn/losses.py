"""mlx.nn.losses.cross_entropy as one row kernel per call (logsumexp, the target's logit and the
smoothing mean fused), with class indices or probabilities as targets, and an ignored label."""
from __future__ import annotations

from typing import Literal, Optional

import mlx.core as mx

from .. import decorators as zmlx
from .backends import on

Reduction = Literal["none", "mean", "sum"]


@zmlx.reduce
def ce_labels_kernel(x, label, *, smoothing):
    loss = mx.logsumexp(x) - (1 - smoothing) * x[label]
    if smoothing > 0:
        return loss - smoothing * mx.mean(x)
    return loss


@zmlx.reduce
def ce_labels_ignore_kernel(x, label, *, smoothing, ignore):
    loss = mx.logsumexp(x) - (1 - smoothing) * x[label]
    if smoothing > 0:
        loss = loss - smoothing * mx.mean(x)
    return mx.where(label == ignore, 0, loss)


@zmlx.reduce
def ce_probs_kernel(x, p, *, smoothing):  # as mlx.nn.losses: logits less their max, a constant to the gradient
    z = x - mx.stop_gradient(x.max())     # (targets need not sum to one, and then the shift shows)
    loss = mx.logsumexp(z) - (1 - smoothing) * mx.sum(z * p)
    if smoothing > 0:
        return loss - smoothing * mx.mean(z)
    return loss


def cross_entropy(logits: mx.array, targets: mx.array, weights: Optional[mx.array] = None, axis: int = -1,
                  label_smoothing: float = 0.0, reduction: Reduction = "none", *,
                  ignore_index: Optional[int] = None, backend: Optional[str] = None) -> mx.array:
    """mlx.nn.losses.cross_entropy; rows whose label is `ignore_index` lose 0 and 'mean' averages the others."""
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError(f"Label smoothing must be in [0, 1), got {label_smoothing}.")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError("Invalid reduction. Must be one of ('none', 'mean', 'sum').")
    probs = targets.ndim == logits.ndim
    dropped = logits.shape[:axis % logits.ndim] + logits.shape[axis % logits.ndim + 1:]
    if targets.shape != (logits.shape if probs else dropped):
        raise ValueError(f"Targets shape {targets.shape} does not match logits shape {logits.shape}.")
    if probs and ignore_index is not None:
        raise ValueError("cross_entropy: ignore_index needs class indices as targets, not probabilities")
    x = logits if axis in (-1, logits.ndim - 1) else mx.moveaxis(logits, axis, -1)
    if probs:
        t = targets if axis in (-1, logits.ndim - 1) else mx.moveaxis(targets, axis, -1)
        loss = on(ce_probs_kernel, backend)(x, t, smoothing=label_smoothing)
    elif ignore_index is None:
        loss = on(ce_labels_kernel, backend)(x, targets, smoothing=label_smoothing)
    else:
        loss = on(ce_labels_ignore_kernel, backend)(x, targets, smoothing=label_smoothing, ignore=ignore_index)
    if weights is not None:
        if weights.shape != loss.shape:
            raise ValueError(f"Weights with shape {weights.shape} is not the same as output loss with shape "
                             f"{loss.shape}.")
        loss = loss * weights
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if ignore_index is None:
            return loss.mean()
        return loss.sum() / mx.maximum((targets != ignore_index).sum(), 1).astype(loss.dtype)
    return loss
