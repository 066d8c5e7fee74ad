import json

import numpy as np
import pytest

from defectlib.errors import DatasetError
from defectlib.labels import coco_to_masks, labelme_to_mask, mask_to_polygons, rasterize_polygons


def test_labelme_rectangle_and_polygon(tmp_path):
    doc = {"imageHeight": 10, "imageWidth": 12, "shapes": [
        {"label": "Crack", "shape_type": "rectangle", "points": [[1, 1], [4, 3]]},
        {"label": "Blowhole", "shape_type": "polygon", "points": [[8, 5], [10, 5], [10, 7], [8, 7]]},
    ]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    mask = labelme_to_mask(path)
    assert mask.shape == (10, 12)
    assert (mask == 3).sum() == 4 * 3  # x 1..4, y 1..3 inclusive
    assert (mask == 1).sum() == 3 * 3
    assert (mask == 0).sum() == 120 - 12 - 9


def test_labelme_unknown_label(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"imageHeight": 4, "imageWidth": 4,
                                "shapes": [{"label": "Scratch", "points": [[0, 0], [1, 0], [1, 1]]}]}))
    with pytest.raises(DatasetError, match="bad.json: unknown label 'Scratch'"):
        labelme_to_mask(path)


def test_coco_polygons_and_empty_image(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8},
                      {"id": 2, "file_name": "b.jpg", "height": 5, "width": 6}],
           "categories": [{"id": 7, "name": "Fray"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[2, 2, 5, 2, 5, 5, 2, 5]]}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    masks = coco_to_masks(path)
    assert (masks["a.jpg"] == 4).sum() == 16
    assert masks["b.jpg"].shape == (5, 6) and masks["b.jpg"].max() == 0


def test_coco_rle_is_rejected(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], "categories": [{"id": 1, "name": "Fray"}],
           "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"counts": [1], "size": [8, 8]}}]}
    path = tmp_path / "rle.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="annotation 3 uses RLE"):
        coco_to_masks(path)


def test_mask_polygon_round_trip():
    mask = np.zeros((20, 20), np.uint8)
    mask[3:9, 4:12] = 2
    assert np.array_equal(rasterize_polygons(mask_to_polygons(mask), 20, 20), mask)
