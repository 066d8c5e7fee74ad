import numpy as np
import pytest

from defectlib import report


def _record(fold, val_miou, val_dmiou, test_miou=0.3, per_image=None):
    names = ("background", "A")
    metrics = {"miou": test_miou, "defect_miou": 0.1, "iou": dict(zip(names, (0.9, 0.1)))}
    return {"fold": fold, "config": {"data": {"classes": list(names)}},
            "val": {"miou": val_miou, "defect_miou": val_dmiou}, "test": metrics,
            "per_image": {"test": per_image} if per_image else {}}


def test_select_arm_breaks_near_ties_on_defect_miou():
    arms = {"a": [_record(0, 0.400, 0.10), _record(1, 0.400, 0.10)],
            "b": [_record(0, 0.397, 0.30), _record(1, 0.397, 0.30)],   # 0.3 points behind, far better on defects
            "c": [_record(0, 0.380, 0.50), _record(1, 0.380, 0.50)]}   # 2 points behind: out
    assert report.select_arm(arms) == "b"
    assert report.select_arm({k: v for k, v in arms.items() if k != "b"}) == "a"


def test_paired_differences_match_folds():
    a = [_record(0, 0.4, 0.1, test_miou=0.30), _record(1, 0.4, 0.1, test_miou=0.20)]
    b = [_record(1, 0.4, 0.1, test_miou=0.25), _record(0, 0.4, 0.1, test_miou=0.40)]
    table = report.paired_differences(a, b, keys=("miou",))
    assert table.loc["mIoU (6 classes)", "fold 0"] == "+10.0"
    assert table.loc["mIoU (6 classes)", "fold 1"] == "+5.0"
    assert table.loc["mIoU (6 classes)", "mean ± std"] == "+7.5 ± 3.5"


def test_false_alarms_count_defect_free_images_only():
    # 2x2 confusion matrices flattened: [bg->bg, bg->A, A->bg, A->A]
    per_image = {"names": ["free1", "free2", "defect"], "scores": [0, 0, 0],
                 "confusion": [[900, 100, 0, 0], [1000, 0, 0, 0], [500, 300, 100, 100]]}
    fa = report.false_alarms(_record(0, 0, 0, per_image=per_image), min_pixels=64)
    assert fa == {"image_rate": 0.5, "pixel_rate": pytest.approx(100 / 2000), "images": 2}


def test_fold_table_formats_percent_and_spread():
    records = [_record(0, 0.4, 0.1, test_miou=0.30), _record(1, 0.4, 0.1, test_miou=0.20)]
    table = report.fold_table(records, "test", keys=("miou", "IoU A"))
    assert list(table.columns) == ["fold 0", "fold 1", "mean ± std"]
    assert table.loc["mIoU (6 classes)"].tolist() == ["30.0", "20.0", "25.0 ± 7.1"]
    assert table.loc["IoU A"].tolist() == ["10.0", "10.0", "10.0 ± 0.0"]
    assert report.pct(float("nan")) == "-" and np.isnan(report.mean_std([])[0])
