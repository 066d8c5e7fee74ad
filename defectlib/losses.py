"""Segmentation losses with one signature, ``loss(y_pred, y_true)``.

Introduced in chapter 03 (baseline); compared in the loss ablation.

Shape:
    - ``y_pred``: logits ``(N, C, H, W)``, float.
    - ``y_true``: class indices ``(N, H, W)``, long, values in ``[0, C)``.
    - output: scalar tensor.

Dice, Focal, Lovasz-softmax and Tversky are segmentation_models_pytorch's
implementations (``mode="multiclass"``); cross-entropy is PyTorch's.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn


def class_weights_from_frequencies(pixel_counts: Sequence[float], power: float = 0.5) -> torch.Tensor:
    """Class weights from training-split pixel counts.

    ``w_c = f_c^(-p) / ((1/C) * sum_k f_k^(-p))`` with ``f_c`` the share of
    pixels of class ``c`` and ``p = power`` (0.5: inverse square root).  The
    weights average 1, so uniform frequencies give all-ones weights, i.e.
    plain cross-entropy.  A class with no pixels gets weight 0.

    Shape:
        - ``pixel_counts``: ``(C,)``; output ``(C,)`` float32.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    freq = counts / counts.sum()
    raw = np.where(freq > 0, np.power(np.maximum(freq, 1e-12), -power), 0.0)
    present = raw > 0
    raw[present] /= raw[present].mean()
    return torch.tensor(raw, dtype=torch.float32)


class DiceCE(nn.Module):
    """``dice_weight * Dice + ce_weight * CrossEntropy``."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.dice = smp_losses.DiceLoss(mode="multiclass")
        self.ce = nn.CrossEntropyLoss(weight=class_weights)
        self.dice_weight, self.ce_weight = dice_weight, ce_weight

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * self.dice(y_pred, y_true) + self.ce_weight * self.ce(y_pred, y_true)


LOSSES = ("ce", "weighted_ce", "dice", "dice_ce", "focal", "lovasz", "tversky")


def build_loss(name: str, class_weights: torch.Tensor | None = None, **kwargs) -> nn.Module:
    """Build a loss by name (see :data:`LOSSES`).

    Args:
        name: loss name.
        class_weights: ``(C,)`` weights, required by ``weighted_ce``.
        kwargs: passed to the smp loss (e.g. ``alpha``, ``beta`` for Tversky).
    """
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "weighted_ce":
        if class_weights is None:
            raise ValueError("weighted_ce needs class_weights (see class_weights_from_frequencies)")
        return nn.CrossEntropyLoss(weight=class_weights)
    if name == "dice":
        return smp_losses.DiceLoss(mode="multiclass", **kwargs)
    if name == "dice_ce":
        return DiceCE(class_weights=class_weights, **kwargs)
    if name == "focal":
        return smp_losses.FocalLoss(mode="multiclass", **kwargs)
    if name == "lovasz":
        return smp_losses.LovaszLoss(mode="multiclass", **kwargs)
    if name == "tversky":
        return smp_losses.TverskyLoss(mode="multiclass", **kwargs)
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")
