"""albumentations augmentation pipelines for training, and defect copy-paste.

Introduced in chapter 03 (baseline); compared in chapter 05 (augmentation).

Every image is resized once, when its dataset is built, to a square
``image_size`` (aspect ratio not kept: Magnetic Tile images range from 103 to
632 pixels per side, with no common shape; see
:class:`defectlib.data.SegmentationDataset`).  The augmentations here act on
those resized images; masks are always resampled nearest-neighbour.
Predictions are resized back to each image's native size before any metric
is computed.

A config's ``data.augment`` is ``none`` or components joined by ``+``, e.g.
``flips+photometric+copy_paste``.  Whatever their order in the name, the
components run in one fixed order: copy-paste (on the clean image), geometry
(flips, square symmetries, scale/crop/affine), then photometry.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pandas as pd

from .data import read_image

#: The components of ``data.augment``, in the order they are applied.
COMPONENTS = ("copy_paste", "flips", "d4", "affine", "photometric")

#: Photometric limits, sized by :func:`lighting_variation` (chapters 1 and 5):
#: across the lighting set-ups of one tile region, the central 90 % of images
#: differ from the region's median by a contrast factor of 0.57-1.41 and a
#: brightness shift of -0.05 to +0.07 of the gray range.
BRIGHTNESS_LIMIT = 0.05
CONTRAST_LIMIT = 0.4
GAMMA_LIMIT = (80, 125)

#: Scale and crop limits.  Shrinking thins cracks; the narrowest cracks are
#: 2-3 pixels wide at the 256-pixel input, so an image is shrunk by at most
#: 10 %, while crops enlarge (zoom in) by up to 1/sqrt(0.5) = 1.41x.
AFFINE_SCALE = (0.9, 1.1)
CROP_SCALE = (0.5, 1.0)


def parse_augment(augment: str) -> list[str]:
    """The components of an ``augment`` name, in the order they run.

    Raises:
        ValueError: an unknown or repeated component, or ``none`` combined with others.
    """
    parts = [p.strip() for p in augment.split("+")]
    if parts == ["none"]:
        return []
    unknown = [p for p in parts if p not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown augmentation component(s) {unknown} in {augment!r}; "
                         f"use 'none' or join {list(COMPONENTS)} with '+'")
    if len(set(parts)) != len(parts):
        raise ValueError(f"augmentation {augment!r} names a component twice")
    return [c for c in COMPONENTS if c in parts]


def build_augmentation(augment: str = "none", image_size: int = 256, seed: int | None = None,
                       images: Sequence[np.ndarray] | None = None,
                       masks: Sequence[np.ndarray] | None = None) -> A.Compose | None:
    """The augmentation pipeline of an ``augment`` name, or None for ``none``.

    Args:
        augment: ``none`` or ``+``-joined components:

            - ``flips``: horizontal and vertical flips;
            - ``d4``: the eight symmetries of the square (flips, 90-degree
              rotations and transposes), each equally likely;
            - ``affine``: half the time a random crop of 50-100 % of the image
              resized back to the input size (zoom in), then half the time a
              small scale change, shift, rotation and shear;
            - ``photometric``: brightness, contrast, gamma, CLAHE, and blur or noise;
            - ``copy_paste``: :class:`DefectCopyPaste` from ``images``/``masks``.
        image_size: side of the square input images.
        seed: seed of the pipeline's own random generator.
        images, masks: the training images and class-index masks (at the input
            size) that ``copy_paste`` cuts its defects from.

    Raises:
        ValueError: an unknown component, or ``copy_paste`` without images and masks.
    """
    components = parse_augment(augment)
    if not components:
        return None
    ops: list = []
    if "copy_paste" in components:
        if images is None or masks is None:
            raise ValueError("the copy_paste augmentation needs the training images and masks")
        ops.append(DefectCopyPaste(images, masks, p=0.5))
    if "flips" in components:
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if "d4" in components:
        ops.append(A.SquareSymmetry(p=1.0))
    if "affine" in components:
        ops += [A.RandomResizedCrop(size=(image_size, image_size), scale=CROP_SCALE, ratio=(0.75, 4 / 3), p=0.5),
                A.Affine(scale=AFFINE_SCALE, translate_percent=(-0.05, 0.05), rotate=(-10, 10), shear=(-5, 5),
                         border_mode=cv2.BORDER_REFLECT_101, p=0.5)]
    if "photometric" in components:
        ops += [
            A.RandomBrightnessContrast(brightness_limit=BRIGHTNESS_LIMIT, contrast_limit=CONTRAST_LIMIT, p=0.7),
            A.RandomGamma(gamma_limit=GAMMA_LIMIT, p=0.3),
            A.CLAHE(clip_limit=(1, 3), tile_grid_size=(8, 8), p=0.2),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3),
        ]
    return A.Compose(ops, mask_interpolation=cv2.INTER_NEAREST, seed=seed)


class DefectPatch:
    """One defect cut from a training image: its pixels, its labels and a blending weight.

    Attributes:
        image: ``(h, w)`` float32 gray levels of the bounding box (with a margin).
        mask: ``(h, w)`` uint8 class indices of this defect only (0 elsewhere).
        alpha: ``(h, w)`` float32 blending weight, 0 outside the defect, rising
            from 1/``feather`` at its edge to 1 inside.
        surround: mean gray level of the box outside the defect.
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray, feather: float):
        self.image = image.astype(np.float32)
        self.mask = mask.astype(np.uint8)
        inside = (mask > 0).astype(np.uint8)
        distance = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        self.alpha = np.clip(distance / feather, 0, 1).astype(np.float32)
        outside = inside == 0
        self.surround = float(self.image[outside].mean()) if outside.any() else float(self.image.mean())


def cut_defects(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], min_pixels: int = 12,
                margin: int = 4, feather: float = 2.0) -> list[DefectPatch]:
    """Every connected defect region of the training images, as a :class:`DefectPatch`.

    Regions under ``min_pixels`` pixels are skipped; the box keeps ``margin``
    pixels around the region, from which the brightness of its surroundings
    is measured.
    """
    patches = []
    for image, mask in zip(images, masks):
        for c in np.unique(mask):
            if c == 0:
                continue
            n, labels, stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
            for k in range(1, n):
                x, y, w, h, area = stats[k]
                if area < min_pixels:
                    continue
                y0, x0 = max(y - margin, 0), max(x - margin, 0)
                y1, x1 = min(y + h + margin, mask.shape[0]), min(x + w + margin, mask.shape[1])
                region = labels[y0:y1, x0:x1] == k
                patches.append(DefectPatch(image[y0:y1, x0:x1], np.where(region, c, 0), feather))
    return patches


class DefectCopyPaste(A.DualTransform):
    """Paste a defect cut from a training image onto a defect-free training image.

    In the spirit of dynamic label injection (Caruso et al. 2024,
    arXiv:2408.10031): a defect region (:func:`cut_defects`) is placed at a
    random position of an image whose mask holds no defect; its gray levels are
    shifted so that its surroundings match the brightness where it lands, and
    blended in with a weight that is 0 outside the defect, so that no pixel
    outside the pasted defect changes.  Every pasted pixel is labelled with
    the defect's class.  Images that already hold a defect pass unchanged.

    Args:
        images, masks: training images ``(H, W)`` uint8 and class-index masks.
        p: probability of pasting onto a defect-free image.
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], p: float = 0.5):
        super().__init__(p=p)
        self.patches = cut_defects(images, masks)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data["mask"]
        if not self.patches or mask.any():
            return {"paste": None}
        patch = self.patches[int(self.random_generator.integers(len(self.patches)))]
        h, w = patch.mask.shape
        if h > mask.shape[0] or w > mask.shape[1]:
            return {"paste": None}
        y = int(self.random_generator.integers(0, mask.shape[0] - h + 1))
        x = int(self.random_generator.integers(0, mask.shape[1] - w + 1))
        return {"paste": (patch, y, x)}

    def apply(self, img: np.ndarray, paste=None, **params: Any) -> np.ndarray:
        if paste is None:
            return img
        patch, y, x = paste
        h, w = patch.mask.shape
        target = img[y:y + h, x:x + w].astype(np.float32)
        outside = patch.alpha == 0
        level = target[outside].mean() if outside.any() else target.mean()
        shifted = patch.image + (level - patch.surround)
        if target.ndim == 3:
            shifted, alpha = shifted[..., None], patch.alpha[..., None]
        else:
            alpha = patch.alpha
        out = img.copy()
        blended = alpha * shifted + (1 - alpha) * target
        out[y:y + h, x:x + w] = np.where(alpha > 0, np.clip(np.rint(blended), 0, 255), target).astype(img.dtype)
        return out

    def apply_to_mask(self, mask: np.ndarray, paste=None, **params: Any) -> np.ndarray:
        if paste is None:
            return mask
        patch, y, x = paste
        h, w = patch.mask.shape
        out = mask.copy()
        region = out[y:y + h, x:x + w]
        region[patch.mask > 0] = patch.mask[patch.mask > 0]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


def lighting_variation(samples: Sequence, sequences: Sequence[int]) -> pd.DataFrame:
    """How much the lighting set-ups of one tile region change its images.

    For each image of a capture sequence (the same region under up to six
    lights; :func:`defectlib.splits.capture_sequences`) with at least three
    images, the contrast factor ``a`` and brightness shift ``b`` (in units of
    the gray range) that map the sequence's median image statistics onto the
    image's, as ``RandomBrightnessContrast`` would: ``std = a * median std``,
    ``mean = a * median mean + 255 b``.

    Returns:
        One row per image: ``name``, ``sequence``, ``exp``, ``mean``, ``std``,
        ``contrast_factor``, ``brightness_shift``.
    """
    rows = []
    for s, seq in zip(samples, sequences):
        image = read_image(s.image).astype(np.float32)
        rows.append({"name": s.name, "sequence": int(seq), "exp": s.exp, "mean": float(image.mean()),
                     "std": float(image.std())})
    table = pd.DataFrame(rows)
    size = table.groupby("sequence")["name"].transform("size")
    table = table[size >= 3].copy()
    median_mean = table.groupby("sequence")["mean"].transform("median")
    median_std = table.groupby("sequence")["std"].transform("median")
    table["contrast_factor"] = table["std"] / median_std
    table["brightness_shift"] = (table["mean"] - table["contrast_factor"] * median_mean) / 255
    return table.reset_index(drop=True)
