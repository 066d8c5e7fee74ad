"""Segmentation losses with one signature, ``loss(y_pred, y_true)``.

Introduced in chapter 03 (baseline); compared in the loss ablation.

Shape:
    - ``y_pred``: logits ``(N, C, H, W)``, float.
    - ``y_true``: class indices ``(N, H, W)``, long, values in ``[0, C)``.
    - output: scalar tensor.

Dice, Focal, Lovasz-softmax and Tversky are segmentation_models_pytorch's
implementations (``mode="multiclass"``); cross-entropy is PyTorch's; online
hard-example mining (OHEM) and the image-score term (``image``) are written
here because neither library has them.
A name joined with ``+`` (``ce+dice``) sums its parts.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
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


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels only (Shrivastava et al. 2016, as in FDSNet).

    A pixel is hard when the predicted probability of its true class is below
    ``thresh``; at least ``min_kept`` pixels per batch (the hardest ones) are
    always kept.

    Args:
        thresh: probability threshold (0.7 in FDSNet's recipe).
        min_kept: minimum number of pixels kept per batch.
        class_weights: optional ``(C,)`` cross-entropy weights.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 10_000, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.thresh, self.min_kept = thresh, min_kept
        self.register_buffer("weight", class_weights if class_weights is not None else None)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        pixel_loss = F.cross_entropy(y_pred, y_true, weight=self.weight, reduction="none").flatten()
        with torch.no_grad():
            prob = y_pred.softmax(1).gather(1, y_true[:, None]).flatten()
            hard = prob < self.thresh
            k = min(self.min_kept, prob.numel())
            if hard.sum() < k:
                hard = torch.zeros_like(hard)
                hard[prob.topk(k, largest=False).indices] = True
        return pixel_loss[hard].mean()


class ImageScoreLoss(nn.Module):
    """Binary cross-entropy of each crop's image score against whether its mask holds a defect pixel.

    The score is the one the image-level metrics read (:mod:`defectlib.metrics`): the highest defect
    probability, ``1 - P(background)``, over the crop's pixels. On a defect-free crop the loss falls on
    its most confident false alarm, the pixel that decides whether the image is called defective; this is
    the max pooling of multiple-instance learning (Pathak et al., 2015) over a segmentation network's
    output, with no extra head.

    Args:
        weight: factor of this term in a sum of losses.
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        defect = 1 - y_pred.float().softmax(1)[:, 0]
        score = defect.flatten(1).amax(1).clamp(1e-6, 1 - 1e-6)
        target = (y_true.flatten(1) > 0).any(1).float()
        return -self.weight * (target * score.log() + (1 - target) * (1 - score).log()).mean()


class SumOfLosses(nn.Module):
    """The sum of several losses of the same signature."""

    def __init__(self, parts: Mapping[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        return sum(part(y_pred, y_true) for part in self.parts.values())


def _ce(class_weights=None):
    return nn.CrossEntropyLoss(weight=class_weights)


#: Constructors by name; the ones taking ``class_weights`` accept class weights.
LOSSES = {
    "ce": _ce,
    "ohem_ce": OhemCrossEntropy,
    "dice": lambda **kw: smp_losses.DiceLoss(mode="multiclass", **kw),
    "focal": lambda **kw: smp_losses.FocalLoss(mode="multiclass", **kw),
    "lovasz": lambda **kw: smp_losses.LovaszLoss(mode="multiclass", **kw),
    "tversky": lambda **kw: smp_losses.TverskyLoss(mode="multiclass", **kw),
    "image": ImageScoreLoss,
}
_SMP = {"dice": smp_losses.DiceLoss, "focal": smp_losses.FocalLoss, "lovasz": smp_losses.LovaszLoss,
        "tversky": smp_losses.TverskyLoss}


def _accepted(name: str) -> set[str]:
    target = _SMP.get(name, LOSSES[name])
    return set(inspect.signature(target).parameters) - {"mode", "self"}


def build_loss(name: str, class_weights: torch.Tensor | None = None,
               params: Mapping[str, Mapping] | None = None) -> nn.Module:
    """Build a loss by name: one of :data:`LOSSES`, or several joined by ``+``.

    Args:
        name: e.g. ``ce``, ``dice``, ``ce+dice``, ``focal+dice``.
        class_weights: ``(C,)`` weights, given to every part that takes them
            (all but ``lovasz``) unless its params set ``class_weights: None``;
            an error if no part gets them.
        params: keyword arguments per part, e.g. ``{"focal": {"gamma": 2.0}}``.

    Raises:
        ValueError: unknown loss or part, a parameter the part does not take, or
            class weights no part can use.
    """
    parts = name.split("+")
    params = dict(params or {})
    problems = [f"unknown loss {p!r}; choose from {sorted(LOSSES)}" for p in parts if p not in LOSSES]
    problems += [f"loss.params.{p}: not a part of loss {name!r}" for p in params if p not in parts]
    problems += [f"loss.params.{p}.class_weights: only null (no weights for this part) may be given here"
                 for p, kw in params.items() if (kw or {}).get("class_weights", None) is not None]
    weighted = [p for p in parts if p in LOSSES and "class_weights" in _accepted(p)
                and "class_weights" not in (params.get(p) or {})]
    if problems:
        raise ValueError("; ".join(problems))
    if class_weights is not None and not weighted:
        raise ValueError(f"loss {name!r} takes no class weights")
    modules = {}
    for p in parts:
        kwargs = dict(params.get(p, {}))
        unknown = set(kwargs) - _accepted(p)
        if unknown:
            raise ValueError(f"loss.params.{p}: unknown parameter(s) {sorted(unknown)}; "
                             f"{p} takes {sorted(_accepted(p) - {'class_weights'})}")
        if p in weighted:
            kwargs["class_weights"] = class_weights
        modules[p] = LOSSES[p](**kwargs)
    return modules[parts[0]] if len(parts) == 1 else SumOfLosses(modules)
