"""Metrics, computed once from a confusion matrix accumulated over a split.

Introduced in chapter 03 (baseline).

Counting and reducing are separate: :class:`SegmentationMeter` *counts*
(a ``C x C`` pixel confusion matrix at each image's native resolution, plus
one score and one label per image); :func:`reduce_confusion` and
:func:`image_level_metrics` *reduce*.

Conventions:
    - Pixel metrics are **micro** over pixels of the whole split (the
      confusion matrix is summed over all images first), then **macro** over
      classes for the means.
    - A class absent from both truth and prediction in the split has
      undefined IoU/Dice: it is reported as NaN and left out of the means
      (``nanmean``).  A class present in either counts normally (IoU 0 if
      missed entirely).
    - ``miou``: mean over all classes including background (for Magnetic
      Tile's 6 classes, the convention of published results); ``defect_miou``:
      mean over the defect classes (all but class 0); ``binary_defect_iou``:
      IoU of "any defect" vs background.
    - Image level: score = the highest defect probability (``1 - P(background)``)
      over the image's pixels; ``image_auroc`` and ``image_accuracy`` (score >= 0.5)
      for "has a defect".
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score


def confusion_matrix(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix, rows = truth, columns = prediction.

    Shape:
        - ``pred``, ``target``: same shape, integer class indices.
        - output: ``(num_classes, num_classes)`` int64.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in size: {pred.shape} vs {target.shape}")
    return np.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def reduce_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict:
    """Pixel metrics from a confusion matrix (rows truth, columns prediction).

    Returns:
        dict with ``iou`` and ``dice`` (per-class dicts, NaN where undefined),
        ``miou``, ``defect_miou``, ``mdice``, ``binary_defect_iou``,
        ``pixel_accuracy``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    b_tp = cm[1:, 1:].sum()
    b_union = cm.sum() - cm[0, 0]
    nanmean = lambda v: float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")  # noqa: E731
    return {
        "miou": nanmean(iou),
        "defect_miou": nanmean(iou[1:]),
        "mdice": nanmean(dice),
        "binary_defect_iou": float(b_tp / b_union) if b_union > 0 else float("nan"),
        "pixel_accuracy": float(tp.sum() / cm.sum()) if cm.sum() > 0 else float("nan"),
        "iou": {n: float(v) for n, v in zip(class_names, iou)},
        "dice": {n: float(v) for n, v in zip(class_names, dice)},
    }


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (NaN if only one class of label is present)."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def image_level_metrics(scores: np.ndarray, has_defect: np.ndarray, threshold: float = 0.5) -> dict:
    """Image-level AUROC and accuracy of "has a defect" from per-image scores."""
    scores, has_defect = np.asarray(scores, float), np.asarray(has_defect, bool)
    return {
        "image_auroc": roc_auc(scores, has_defect),
        "image_accuracy": float(np.mean((scores >= threshold) == has_defect)) if len(scores) else float("nan"),
    }


class SegmentationMeter:
    """Accumulates the confusion matrix and image scores over a split.

    Args:
        class_names: pixel class names, background first.
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.names: list[str] = []
        self.scores: list[float] = []
        self.has_defect: list[bool] = []
        self.per_image: list[np.ndarray] = []  # one confusion matrix per image, for bootstrapping

    def update(self, probs: torch.Tensor, target: np.ndarray | torch.Tensor, name: str = "") -> None:
        """Add one image.

        Shape:
            - ``probs``: ``(C, H, W)`` class probabilities at native resolution.
            - ``target``: ``(H, W)`` class indices.
        """
        pred = probs.argmax(0).cpu().numpy()
        target = np.asarray(target)
        cm = confusion_matrix(pred, target, self.num_classes)
        self.cm += cm
        self.per_image.append(cm)
        self.names.append(name)
        self.scores.append(float((1 - probs[0]).max()))
        self.has_defect.append(bool((target > 0).any()))

    def compute(self) -> dict:
        """All metrics of the split, plus the confusion matrix as nested lists."""
        if not self.per_image:
            raise ValueError("no images were evaluated")
        out = reduce_confusion(self.cm, self.class_names)
        out.update(image_level_metrics(np.array(self.scores), np.array(self.has_defect)))
        out["images"] = len(self.per_image)
        out["confusion_matrix"] = self.cm.tolist()
        return out

    def per_image_table(self) -> dict:
        """Per-image counts for a run record: names, flattened confusion matrices, scores."""
        return {"names": list(self.names), "scores": [round(s, 6) for s in self.scores],
                "confusion": [cm.ravel().tolist() for cm in self.per_image]}


def per_image_confusions(table: dict) -> np.ndarray:
    """The ``(N, C, C)`` confusion matrices of a record's per-image table."""
    flat = np.asarray(table["confusion"], dtype=np.int64)
    c = int(round(np.sqrt(flat.shape[1])))
    return flat.reshape(len(flat), c, c)


def class_iou_per_image(per_image_cms: np.ndarray, c: int) -> np.ndarray:
    """IoU of class ``c`` on each image; NaN where the image holds no true pixel of ``c``.

    Shape:
        - ``per_image_cms``: ``(N, C, C)``; output ``(N,)``.
    """
    cms = np.asarray(per_image_cms, dtype=np.float64)
    tp = cms[:, c, c]
    union = cms[:, c, :].sum(1) + cms[:, :, c].sum(1) - tp
    return np.where(cms[:, c, :].sum(1) > 0, tp / np.maximum(union, 1), np.nan)


def bootstrap_interval(per_image_cms: np.ndarray | list, class_names: Sequence[str],
                       groups: Sequence | None = None, keys: tuple[str, ...] = ("miou", "defect_miou"),
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of split-level pixel metrics.

    With ``groups`` (one region-group id per image), whole region groups are
    resampled with replacement: images of one tile region are near-duplicates,
    so resampling images alone gives far too narrow intervals.  Without
    ``groups``, images are resampled.  The confusion matrices of the drawn
    units are summed and each metric recomputed; the interval is the central
    ``level`` of the ``n_boot`` values.

    ``keys`` are those of :func:`metric_value` (``"miou"``, ``"IoU Crack"``...).

    Shape:
        - ``per_image_cms``: ``(N, C, C)``; ``groups``: ``(N,)``.
    """
    units = _group_units(np.asarray(per_image_cms), groups)
    rng = np.random.default_rng(seed)
    values = {k: [] for k in keys}
    for _ in range(n_boot):
        reduced = reduce_confusion(units[rng.integers(0, len(units), len(units))].sum(0), class_names)
        for k in keys:
            values[k].append(metric_value(reduced, k))
    return _percentile_intervals(values, level)


def metric_value(metrics: dict, key: str) -> float:
    """One value of a metrics dict: a summary key (``miou``), or ``IoU <class>`` / ``Dice <class>``."""
    if key.startswith("IoU "):
        return metrics["iou"][key[4:]]
    if key.startswith("Dice "):
        return metrics["dice"][key[5:]]
    return metrics[key]


def _percentile_intervals(values: dict[str, list[float]], level: float) -> dict[str, tuple[float, float]]:
    """The central ``level`` of each metric's bootstrap values (NaN ignored)."""
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return {k: (float(np.nanquantile(v, lo)), float(np.nanquantile(v, hi))) for k, v in values.items()}


def _group_units(cms: np.ndarray, groups: Sequence | None) -> np.ndarray:
    """Per-image confusion matrices summed per group (unchanged without groups)."""
    if groups is None:
        return cms
    ids = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    index = np.array([ids[g] for g in groups])
    units = np.zeros((len(ids),) + cms.shape[1:], dtype=cms.dtype)
    np.add.at(units, index, cms)
    return units


def paired_bootstrap_interval(cms_a: np.ndarray | list, cms_b: np.ndarray | list, class_names: Sequence[str],
                              groups: Sequence | None = None, keys: tuple[str, ...] = ("miou", "defect_miou"),
                              n_boot: int = 1000, level: float = 0.95,
                              seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of the difference ``b - a`` of two models on the same images.

    Both models are scored on one resample at a time (the same region groups,
    or images without ``groups``), so that what the two have in common, such
    as a hard region drawn twice, cancels in the difference.

    Shape:
        - ``cms_a``, ``cms_b``: ``(N, C, C)``, image ``i`` the same in both; ``groups``: ``(N,)``.
    """
    a, b = np.asarray(cms_a), np.asarray(cms_b)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same images for both models, got {a.shape} and {b.shape}")
    units_a, units_b = _group_units(a, groups), _group_units(b, groups)
    rng = np.random.default_rng(seed)
    values = {k: [] for k in keys}
    for _ in range(n_boot):
        draw = rng.integers(0, len(units_a), len(units_a))
        ra = reduce_confusion(units_a[draw].sum(0), class_names)
        rb = reduce_confusion(units_b[draw].sum(0), class_names)
        for k in keys:
            values[k].append(metric_value(rb, k) - metric_value(ra, k))
    return _percentile_intervals(values, level)
