"""Overlays and plots shared by the notebooks, the command line and the README.

Introduced in chapter 01 (EDA); the training plots in chapter 03 (baseline).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import CLASSES

#: RGB colour per pixel class (background unused).
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0),
    "Blowhole": (230, 25, 75),
    "Break": (255, 225, 25),
    "Crack": (0, 130, 200),
    "Fray": (245, 130, 48),
    "Uneven": (60, 180, 75),
}


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Colour the defect pixels of a class-index mask over a grayscale image.

    Shape:
        - ``image``: ``(H, W)`` uint8; ``mask``: ``(H, W)`` class indices.
        - output: ``(H, W, 3)`` uint8.
    """
    rgb = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    for index, name in enumerate(CLASSES):
        if index == 0:
            continue
        sel = mask == index
        rgb[sel] = (1 - alpha) * rgb[sel] + alpha * np.asarray(CLASS_COLORS[name], np.float32)
    return rgb.clip(0, 255).astype(np.uint8)


def plot_history(records: Sequence[dict], keys: Sequence[str] = ("train_loss", "val_miou", "val_defect_miou"), ax=None):
    """Learning curves of one or more run records, one panel per history key."""
    import matplotlib.pyplot as plt

    axes = ax if ax is not None else plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))[1]
    for key, a in zip(keys, np.atleast_1d(axes)):
        for r in records:
            h = r["history"]
            a.plot([e["epoch"] for e in h], [e[key] for e in h], marker=".", label=f"seed {r['seed']}")
        a.set_xlabel("epoch")
        a.set_title(key.replace("_", " "))
        a.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend()
    return axes


def plot_confusion(cm: np.ndarray, class_names: Sequence[str] = CLASSES, ax=None, normalize: bool = True):
    """Heat map of a pixel confusion matrix (rows truth, normalised per row)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    sns.heatmap(shown, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return ax
