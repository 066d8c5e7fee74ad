import math

import numpy as np
import pytest
import torch

from defectlib.metrics import SegmentationMeter, confusion_matrix, image_level_metrics, reduce_confusion


def test_confusion_matrix_counts():
    target = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    assert confusion_matrix(pred, target, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_reduce_hand_computed():
    # 3 classes: background, A, B
    cm = np.array([[50, 5, 0],
                   [5, 10, 0],
                   [0, 0, 0]])  # class B absent from truth and prediction
    m = reduce_confusion(cm, ("background", "A", "B"))
    assert m["iou"]["background"] == pytest.approx(50 / 60)
    assert m["iou"]["A"] == pytest.approx(10 / 20)
    assert math.isnan(m["iou"]["B"]) and math.isnan(m["dice"]["B"])
    assert m["dice"]["A"] == pytest.approx(20 / 30)
    assert m["miou"] == pytest.approx((50 / 60 + 0.5) / 2)   # absent class left out of the mean
    assert m["defect_miou"] == pytest.approx(0.5)
    assert m["pixel_accuracy"] == pytest.approx(60 / 70)
    assert m["binary_defect_iou"] == pytest.approx(10 / 20)


def test_missed_class_counts_zero_and_binary_merges_defects():
    cm = np.array([[10, 0, 0],
                   [0, 0, 4],   # all of A predicted as B
                   [0, 0, 0]])
    m = reduce_confusion(cm, ("background", "A", "B"))
    assert m["iou"]["A"] == 0 and m["iou"]["B"] == 0
    assert m["binary_defect_iou"] == 1.0


def test_perfect_and_worst():
    perfect = reduce_confusion(np.diag([5, 3, 2]), ("background", "A", "B"))
    assert perfect["miou"] == perfect["defect_miou"] == perfect["pixel_accuracy"] == 1.0
    worst = reduce_confusion(np.array([[0, 5, 0], [3, 0, 0], [0, 2, 0]]), ("background", "A", "B"))
    assert worst["miou"] == 0 and worst["pixel_accuracy"] == 0


def test_image_level():
    m = image_level_metrics(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 1]))
    assert m["image_auroc"] == pytest.approx(0.75)
    assert m["image_accuracy"] == pytest.approx(0.5)
    assert math.isnan(image_level_metrics(np.array([0.1]), np.array([0]))["image_auroc"])


def test_meter_accumulates_over_images():
    meter = SegmentationMeter(("background", "defect"))
    probs = torch.tensor([[[0.9, 0.2]], [[0.1, 0.8]]])  # (C=2, H=1, W=2): predicts [0, 1]
    meter.update(probs, np.array([[0, 1]]))
    meter.update(probs, np.array([[0, 0]]))
    out = meter.compute()
    assert out["confusion_matrix"] == [[2, 1], [0, 1]]
    assert meter.scores == pytest.approx([0.8, 0.8]) and meter.has_defect == [True, False]


def test_bootstrap_interval_brackets_the_estimate_and_collapses_for_identical_images():
    from defectlib.metrics import bootstrap_interval

    same = np.stack([np.diag([10, 2, 0, 0, 0, 0])] * 20)
    same[:, 0, 1] = 2
    names = ("background", "A", "B", "C", "D", "E")
    ci = bootstrap_interval(same, names, n_boot=200)
    point = reduce_confusion(same.sum(0), names)["miou"]
    assert ci["miou"][0] == pytest.approx(point) and ci["miou"][1] == pytest.approx(point)
    varied = np.stack([np.diag([10, k, 0, 0, 0, 0]) for k in range(20)])
    varied[:, 1, 0] = 3
    lo, hi = bootstrap_interval(varied, names, n_boot=200)["defect_miou"]
    assert lo < reduce_confusion(varied.sum(0), names)["defect_miou"] < hi


def test_group_bootstrap_is_wider_than_image_bootstrap_for_near_duplicates():
    from defectlib.metrics import bootstrap_interval

    names = ("background", "defect")
    rng = np.random.default_rng(0)
    cms = []
    for region in range(8):          # 8 regions of 6 near-identical images each
        tp = int(rng.integers(0, 20))
        cms += [np.array([[100, 5], [20 - tp, tp]])] * 6
    groups = np.repeat(np.arange(8), 6)
    by_image = bootstrap_interval(cms, names, keys=("miou",), n_boot=500)["miou"]
    by_group = bootstrap_interval(cms, names, groups=groups, keys=("miou",), n_boot=500)["miou"]
    assert by_group[1] - by_group[0] > 1.5 * (by_image[1] - by_image[0])


def test_empty_meter_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        SegmentationMeter(("background", "defect")).compute()


def test_paired_bootstrap_cancels_what_both_models_share():
    from defectlib.metrics import bootstrap_interval, paired_bootstrap_interval

    names = ("background", "defect")
    rng = np.random.default_rng(1)
    a, b = [], []
    for region in range(10):         # regions differ a lot in difficulty; b finds 2-5 more pixels in each
        tp, gain = int(rng.integers(0, 15)), int(rng.integers(2, 6))
        a += [np.array([[200, 4], [20 - tp, tp]])] * 3
        b += [np.array([[200, 4], [20 - tp - gain, tp + gain]])] * 3
    groups = np.repeat(np.arange(10), 3)
    same = paired_bootstrap_interval(a, a, names, groups, keys=("miou",), n_boot=200)["miou"]
    assert same == (0.0, 0.0)
    lo, hi = paired_bootstrap_interval(a, b, names, groups, keys=("defect_miou",), n_boot=500)["defect_miou"]
    point = reduce_confusion(np.sum(b, 0), names)["defect_miou"] - reduce_confusion(np.sum(a, 0), names)["defect_miou"]
    assert 0 < lo < point < hi
    # far narrower than the spread of either model over the same resamples
    single = bootstrap_interval(a, names, groups, keys=("defect_miou",), n_boot=500)["defect_miou"]
    assert hi - lo < 0.5 * (single[1] - single[0])
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_interval(a, b[:-1], names)


def test_class_iou_per_image_is_nan_where_the_class_is_absent():
    from defectlib.metrics import class_iou_per_image

    cms = np.array([[[5, 1], [1, 3]],      # class 1: tp 3, fp 1, fn 1 -> 3/5
                    [[9, 1], [0, 0]]])     # no true class-1 pixel
    iou = class_iou_per_image(cms, 1)
    assert iou[0] == pytest.approx(0.6) and np.isnan(iou[1])


def test_bootstrap_interval_of_one_class_iou_and_dice():
    from defectlib.metrics import bootstrap_interval, metric_value

    names = ("background", "A")
    cms = np.stack([np.array([[50, 0], [k, 10]]) for k in range(10)])   # A missed on k pixels
    reduced = reduce_confusion(cms.sum(0), names)
    assert metric_value(reduced, "IoU A") == reduced["iou"]["A"] and metric_value(reduced, "Dice A") == reduced["dice"]["A"]
    ci = bootstrap_interval(cms, names, keys=("IoU A", "Dice A"), n_boot=200)
    assert ci["IoU A"][0] < reduced["iou"]["A"] < ci["IoU A"][1]
    assert ci["IoU A"][1] <= ci["Dice A"][1] <= 1.0
