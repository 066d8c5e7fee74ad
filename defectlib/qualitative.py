"""The qualitative chapter's analysis: what happened on each image, and how thin defects are drawn.

Introduced in chapter 08 (qualitative results).  Failure kinds and
disagreements come from the per-image confusion matrices of run records;
:func:`thin_structure` measures width and pieces of a predicted mask.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from skimage.morphology import skeletonize

from .metrics import class_iou_per_image, per_image_confusions
from .records import class_names, per_image


#: The failure kinds :func:`failure_kinds` names, in the order a table shows them.
FAILURE_KINDS = ("found", "partly found", "wrong class", "missed", "false alarm", "clean")

def failure_kinds(record: dict, split: str = "test", min_pixels: int = 64, found_iou: float = 0.5) -> pd.DataFrame:
    """What happened on each image of a record's split, from its per-image confusion matrix.

    An image with a defect of class *c* (its truth holds one defect class, as
    in Magnetic Tile) is **found** when the IoU of *c* reaches ``found_iou``;
    else **wrong class** when most of its true defect pixels are predicted as
    another defect class, **missed** when most are predicted as background,
    and **partly found** otherwise. A defect-free image is a **false alarm**
    when at least ``min_pixels`` pixels are predicted as a defect, else **clean**.

    Returns:
        One row per image: ``name``, ``truth`` (the defect class, or ``Free``),
        ``kind``, ``iou`` (of the true class; NaN for Free), ``predicted``
        (the defect class predicted on most pixels, or ``none``).
    """
    table = per_image(record, split)
    classes = class_names(record)
    cms = per_image_confusions(table)
    rows = []
    for name, cm in zip(table["names"], cms):
        true_counts = cm[1:, :].sum(1)
        pred_defect = cm[:, 1:].sum(0)
        predicted = classes[1 + int(pred_defect.argmax())] if pred_defect.sum() else "none"
        if true_counts.sum() == 0:
            kind = "false alarm" if pred_defect.sum() >= min_pixels else "clean"
            rows.append({"name": name, "truth": "Free", "kind": kind, "iou": float("nan"), "predicted": predicted})
            continue
        c = 1 + int(true_counts.argmax())
        iou = float(class_iou_per_image(cm[None], c)[0])
        to_background, to_other = cm[c, 0], cm[c, 1:].sum() - cm[c, c]
        if iou >= found_iou:
            kind = "found"
        elif to_other > max(to_background, cm[c, c]):
            kind = "wrong class"
        elif to_background > cm[c, c] + to_other:
            kind = "missed"
        else:
            kind = "partly found"
        rows.append({"name": name, "truth": classes[c], "kind": kind, "iou": iou, "predicted": predicted})
    return pd.DataFrame(rows)

def failure_table(kinds: pd.DataFrame) -> pd.DataFrame:
    """Counts of each failure kind (columns) per true class (rows), with totals."""
    table = pd.crosstab(kinds["truth"], kinds["kind"]).reindex(columns=list(FAILURE_KINDS), fill_value=0)
    table = table.loc[:, table.sum() > 0]
    table["images"] = table.sum(axis=1)
    return table

def top_confusion(kinds: pd.DataFrame, show: int = 4) -> tuple[str, int, list[str]]:
    """The most common confusion between defect types among :func:`failure_kinds`' **wrong class** images.

    Returns its caption (``"Break called Fray, 12 images"``, or ``"none"``), how many images it has, and
    the names of up to ``show`` of them, lowest IoU first: the images a figure of that confusion draws,
    so that the caption names what is shown.
    """
    wrong = kinds[kinds["kind"] == "wrong class"]
    if not len(wrong):
        return "none", 0, []
    pairs = wrong.groupby(["truth", "predicted"]).size().sort_values(ascending=False, kind="stable")
    (truth, predicted), n = pairs.index[0], int(pairs.iloc[0])
    chosen = wrong[(wrong["truth"] == truth) & (wrong["predicted"] == predicted)].sort_values("iou", kind="stable")
    return f"{truth} called {predicted}, {n} images", n, list(chosen["name"].head(show))


def disagreements(record_a: dict, record_b: dict, split: str = "test", top: int = 5) -> pd.DataFrame:
    """The images where two models' IoU of the true defect class differ most (``b - a``), both directions.

    Both records must hold the same images in ``split`` (e.g. two recipes
    pooled over the same five test folds, see :func:`pool_records`).
    """
    a, b = failure_kinds(record_a, split), failure_kinds(record_b, split)
    joined = a.merge(b, on=["name", "truth"], suffixes=(" a", " b"), validate="one_to_one")
    if len(joined) != len(a) or len(joined) != len(b):
        raise ValueError("the two records do not hold the same images")
    joined = joined[joined["truth"] != "Free"].assign(difference=lambda d: d["iou b"] - d["iou a"])
    ordered = joined.sort_values("difference", kind="stable")
    return pd.concat([ordered.tail(top)[::-1], ordered.head(top)]).reset_index(drop=True)

def thin_structure(truth: np.ndarray, pred: np.ndarray, c: int) -> dict[str, float]:
    """How a prediction draws a thin defect of class ``c``: its width and how many pieces.

    Width is area over skeleton length (pixels per pixel of centre line), for
    the true and the predicted region of class ``c``; pieces are 8-connected
    components. A width ratio above 1 means the prediction is thicker than
    the truth; more predicted than true pieces means it breaks the defect.
    """
    def width(region: np.ndarray) -> float:
        length = skeletonize(region).sum()
        return float(region.sum() / length) if length else float("nan")

    def pieces(region: np.ndarray) -> int:
        return int(cv2.connectedComponents(region.astype(np.uint8), connectivity=8)[0] - 1)

    t, p = np.asarray(truth) == c, np.asarray(pred) == c
    true_width, pred_width = width(t), width(p)
    return {"true pixels": int(t.sum()), "predicted pixels": int(p.sum()),
            "true width (px)": true_width, "predicted width (px)": pred_width,
            "width ratio": pred_width / true_width if true_width > 0 else float("nan"),
            "true pieces": pieces(t), "predicted pieces": pieces(p)}
