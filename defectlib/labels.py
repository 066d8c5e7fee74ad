"""Polygon annotations (LabelMe JSON, COCO) to class-index masks.

Introduced in chapter 02 (labeling), for users whose labels come as polygons
rather than as painted masks like Magnetic Tile's.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from .classes import CLASSES
from .errors import DatasetError

DEFAULT_CLASS_MAP: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}


def rasterize_polygons(polygons: list[tuple[int, np.ndarray]], height: int, width: int) -> np.ndarray:
    """Fill polygons into a ``uint8`` class-index mask, later ones drawn on top.

    Shape:
        - each polygon: ``(class index, points (K, 2) as x, y in pixels)``.
        - output: ``(height, width)``.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    for label, points in polygons:
        pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [pts], int(label))
    return mask


def _label_index(name: str, class_map: Mapping[str, int], source: Path) -> int:
    if name not in class_map:
        raise DatasetError([f"{source}: unknown label {name!r}; known: {sorted(class_map)}"], "Bad annotation")
    return class_map[name]


def labelme_to_mask(path: str | Path, class_map: Mapping[str, int] = DEFAULT_CLASS_MAP) -> np.ndarray:
    """Class-index mask from a LabelMe JSON file (``polygon`` and ``rectangle`` shapes).

    Raises:
        DatasetError: unreadable JSON, missing image size, unknown label or shape type.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        height, width = int(doc["imageHeight"]), int(doc["imageWidth"])
        shapes = doc["shapes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError([f"{path}: not a LabelMe annotation ({exc!r})"], "Bad annotation") from exc
    polygons = []
    for shape in shapes:
        kind = shape.get("shape_type", "polygon")
        points = np.asarray(shape["points"], dtype=np.float64)
        if kind == "rectangle":
            (x0, y0), (x1, y1) = points
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif kind != "polygon":
            raise DatasetError([f"{path}: shape type {kind!r} not supported (polygon, rectangle)"], "Bad annotation")
        polygons.append((_label_index(shape["label"], class_map, path), points))
    return rasterize_polygons(polygons, height, width)


def coco_to_masks(path: str | Path, class_map: Mapping[str, int] = DEFAULT_CLASS_MAP) -> dict[str, np.ndarray]:
    """Class-index masks per image ``file_name`` from a COCO instances file (polygon segmentations).

    COCO category *names* are looked up in ``class_map``.  Images without
    annotations get all-background masks.

    Raises:
        DatasetError: unreadable JSON, RLE segmentations, unknown category.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        images = {im["id"]: im for im in doc["images"]}
        categories = {c["id"]: c["name"] for c in doc["categories"]}
        annotations = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError([f"{path}: not a COCO annotation file ({exc!r})"], "Bad annotation") from exc
    polygons: dict[int, list] = {i: [] for i in images}
    for ann in annotations:
        seg = ann.get("segmentation")
        if not isinstance(seg, list):
            raise DatasetError([f"{path}: annotation {ann.get('id')} uses RLE; only polygons are supported"], "Bad annotation")
        if ann["image_id"] not in images or ann["category_id"] not in categories:
            raise DatasetError([f"{path}: annotation {ann.get('id')} names an unknown image or category"], "Bad annotation")
        label = _label_index(categories[ann["category_id"]], class_map, path)
        for flat in seg:
            polygons[ann["image_id"]].append((label, np.asarray(flat, dtype=np.float64).reshape(-1, 2)))
    return {images[i]["file_name"]: rasterize_polygons(p, images[i]["height"], images[i]["width"])
            for i, p in polygons.items()}


def mask_to_polygons(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Outer contours of each class region of a class-index mask, as ``(class, points (K, 2))``."""
    out = []
    for label in np.unique(mask):
        if label == 0:
            continue
        contours, _ = cv2.findContours((mask == label).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        out += [(int(label), c.reshape(-1, 2)) for c in contours if len(c) >= 3]
    return out
