"""Masks drawn on images: the report's class palette, coloured overlays and error maps.

Introduced in chapter 01 (EDA).  NumPy and OpenCV only, so ``predict``
draws its overlays without loading a plotting library; the plots are
:mod:`defectlib.viz`'s.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .classes import CLASSES


#: RGB colour per pixel class (background unused); the report's one palette.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0),
    "Blowhole": (230, 25, 75),
    "Break": (255, 225, 25),
    "Crack": (0, 130, 200),
    "Fray": (245, 130, 48),
    "Uneven": (60, 180, 75),
}

#: Colours for classes of other datasets, in order (a colour-blind-safe qualitative set).
FALLBACK_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))

#: Colour of the defect-free category in plots.
FREE_COLOR: tuple[int, int, int] = (150, 150, 150)

def class_colors(classes: Sequence[str] = CLASSES) -> list[tuple[int, int, int]]:
    """RGB colour per class: the report's palette for Magnetic Tile's names, else :data:`FALLBACK_COLORS`."""
    return [CLASS_COLORS.get(name, FALLBACK_COLORS[(k - 1) % len(FALLBACK_COLORS)]) if k else (0, 0, 0)
            for k, name in enumerate(classes)]

def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5, classes: Sequence[str] = CLASSES,
            outline: int = 0) -> np.ndarray:
    """Colour the defect pixels of a class-index mask over a grayscale image.

    Works in place on one ``uint8`` copy, so large images cost little memory.
    ``outline > 0`` also draws each region's contour that many pixels wide, so
    that small defects stay visible when the image is shown small.

    Shape:
        - ``image``: ``(H, W)`` uint8; ``mask``: ``(H, W)`` class indices.
        - output: ``(H, W, 3)`` uint8.
    """
    rgb = np.repeat(np.asarray(image, np.uint8)[..., None], 3, axis=2)
    for index, color in enumerate(class_colors(classes)):
        if index == 0:
            continue
        sel = mask == index
        if sel.any():
            blended = (1 - alpha) * rgb[sel].astype(np.float32) + alpha * np.asarray(color, np.float32)
            rgb[sel] = blended.clip(0, 255).astype(np.uint8)
            if outline:
                contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in color), outline)
    return rgb

#: Colours of :func:`error_map`, none of them a class colour: defect pixel found (black), false alarm or
#: wrong class (magenta), missed (cyan).
ERROR_COLORS: dict[str, tuple[int, int, int]] = {"found": (30, 30, 30), "false": (200, 0, 200),
                                                 "missed": (0, 200, 220)}
#: What each colour of :func:`error_map` means, for legends.
ERROR_LABELS: dict[str, str] = {"found": "defect found", "false": "false alarm or wrong class",
                                "missed": "defect missed"}

def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB map of a prediction's errors on white, in :data:`ERROR_COLORS`: defect found, predicted
    defect that is background or another class, defect predicted as background.

    Shape:
        - ``truth``, ``pred``: ``(H, W)`` class indices; output ``(H, W, 3)`` uint8.
    """
    rgb = np.full(truth.shape + (3,), 255, np.uint8)
    rgb[(truth > 0) & (pred == truth)] = ERROR_COLORS["found"]
    rgb[(pred > 0) & (pred != truth)] = ERROR_COLORS["false"]
    rgb[(truth > 0) & (pred == 0)] = ERROR_COLORS["missed"]
    return rgb
