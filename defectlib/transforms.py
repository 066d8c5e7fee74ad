"""albumentations pipelines for training and evaluation.

Introduced in chapter 03 (baseline); compared in the augmentation ablation.

Every Magnetic Tile image is resized to a square ``image_size`` (aspect ratio
not kept: the images range from 103 to 632 pixels per side, with no common
shape); predictions are resized back to each image's native size before any
metric is computed.  Masks are always resampled nearest-neighbour.
"""
from __future__ import annotations

import albumentations as A
import cv2

AUGMENTATIONS = ("none", "flips", "photometric", "strong")


def build_transform(image_size: int, augment: str = "none", seed: int | None = None) -> A.Compose:
    """Resize to ``image_size`` x ``image_size`` plus the named augmentation.

    Args:
        image_size: side of the square network input.
        augment: ``none`` (evaluation), ``flips`` (horizontal and vertical flips),
            ``photometric`` (flips + brightness/contrast + blur/noise), or
            ``strong`` (photometric + small affine transforms).
        seed: seed of the transform's own random generator.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose from {AUGMENTATIONS}")
    ops: list = [A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)]
    if augment != "none":
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if augment in ("photometric", "strong"):
        ops += [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3),
        ]
    if augment == "strong":
        ops += [A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                         border_mode=cv2.BORDER_REFLECT_101, p=0.5)]
    return A.Compose(ops, mask_interpolation=cv2.INTER_NEAREST, seed=seed)
