"""albumentations augmentation pipelines for training.

Introduced in chapter 03 (baseline); compared in the augmentation ablation.

Every image is resized once, when its dataset is built, to a square
``image_size`` (aspect ratio not kept: Magnetic Tile images range from 103 to
632 pixels per side, with no common shape; see
:class:`defectlib.data.SegmentationDataset`).  The augmentations here act on
those resized images; masks are always resampled nearest-neighbour.
Predictions are resized back to each image's native size before any metric
is computed.
"""
from __future__ import annotations

import albumentations as A
import cv2

AUGMENTATIONS = ("none", "flips", "photometric", "strong")


def build_augmentation(augment: str = "none", seed: int | None = None) -> A.Compose | None:
    """The named augmentation pipeline, or None for ``none``.

    Args:
        augment: ``none``, ``flips`` (horizontal and vertical flips),
            ``photometric`` (flips + brightness/contrast + blur/noise), or
            ``strong`` (photometric + small affine transforms).
        seed: seed of the pipeline's own random generator.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose from {AUGMENTATIONS}")
    if augment == "none":
        return None
    ops: list = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if augment in ("photometric", "strong"):
        ops += [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3),
        ]
    if augment == "strong":
        ops += [A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                         border_mode=cv2.BORDER_REFLECT_101, p=0.5)]
    return A.Compose(ops, mask_interpolation=cv2.INTER_NEAREST, seed=seed)
