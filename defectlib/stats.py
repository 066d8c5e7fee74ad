"""Statistics over run records: pooled folds, metrics from per-image tables, region bootstrap, false alarms.

Introduced in chapter 03 (baseline) and chapter 07 (final model).

These reduce the per-image confusion matrices a record keeps
(:mod:`defectlib.metrics` counts and reduces them) to what the chapters
compare: means over folds, out-of-fold pools of five test folds, intervals
from a bootstrap over region groups (images of one tile region are
near-duplicates), and false alarms on defect-free images.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import (bootstrap_interval, class_iou_per_image, image_level_metrics, per_image_confusions,
                      reduce_confusion)
from .records import class_names, metric, per_image, split_file
from .splits import load_split


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation, ignoring NaN (std NaN for fewer than two values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")

def region_groups(record: dict, split: str) -> list:
    """The region group of every image in a record's per-image table (from its split file)."""
    groups = load_split(split_file(record))["groups"]
    return [groups.get(n, n) for n in per_image(record, split)["names"]]

def group_bootstrap(record: dict, split: str = "test", keys: Sequence[str] = ("miou", "defect_miou"),
                    n_boot: int = 1000, seed: int = 0, by: str = "region") -> dict[str, tuple[float, float]]:
    """95 % bootstrap interval of a run's split metrics, resampling region groups (``by="region"``)
    or single images (``by="image"``)."""
    cms = per_image_confusions(per_image(record, split))
    groups = region_groups(record, split) if by == "region" else None
    return bootstrap_interval(cms, class_names(record), groups, tuple(keys), n_boot, seed=seed)

def has_defect(cms: np.ndarray) -> np.ndarray:
    """Per image of ``(N, C, C)`` confusion matrices: whether its truth holds any defect pixel."""
    return cms[:, 1:, :].sum(axis=(1, 2)) > 0

def false_alarms(record: dict, split: str = "test", min_pixels: int = 64) -> dict[str, float]:
    """False alarms on the defect-free images of a run's split, from its per-image counts.

    Returns:
        ``image_rate``: share of defect-free images with at least ``min_pixels``
        predicted defect pixels (at native resolution); ``pixel_rate``: share of
        their pixels predicted as a defect; ``images``: how many there were.
    """
    cms = per_image_confusions(per_image(record, split))
    free = ~has_defect(cms)
    predicted_defect = cms[:, :, 1:].sum(axis=(1, 2))
    if not free.any():
        return {"image_rate": float("nan"), "pixel_rate": float("nan"), "images": 0}
    return {"image_rate": float((predicted_defect[free] >= min_pixels).mean()),
            "pixel_rate": float(predicted_defect[free].sum() / cms[free].sum()),
            "images": int(free.sum())}

def pool_records(records: Sequence[dict], split: str = "test") -> dict:
    """One record-like dict whose ``split`` per-image table joins those of ``records``.

    With the five test folds of one recipe, every image is tested exactly once
    (out of fold); :func:`group_bootstrap`, :func:`false_alarms` and
    :func:`table_metrics` accept the result like a run record.

    Raises:
        ValueError: no records, records of different partitions, or an image in two of them.
    """
    if not records:
        raise ValueError("no records to pool")
    split_files = {r["split_file"] for r in records}
    if len(split_files) > 1:
        raise ValueError(f"records of different partitions cannot be pooled: {sorted(split_files)}")
    table = {"names": [], "scores": [], "confusion": []}
    for r in records:
        for key in table:
            table[key] += list(r["per_image"][split][key])
    seen: set = set()
    twice = [n for n in table["names"] if n in seen or seen.add(n)]
    if twice:
        raise ValueError(f"image(s) tested in more than one record, e.g. {twice[0]}")
    pooled = {"config": records[0]["config"], "split_file": records[0]["split_file"],
              "folds": sorted(r["fold"] for r in records), "per_image": {split: table}}
    pooled[split] = table_metrics(table, class_names(records[0]))
    return pooled

def table_metrics(table: dict, class_names: Sequence[str], threshold: float = 0.5) -> dict:
    """Split-level metrics (as a record holds them) recomputed from a per-image table."""
    cms = per_image_confusions(table)
    out = reduce_confusion(cms.sum(0), class_names)
    out.update(image_level_metrics(np.asarray(table["scores"]), has_defect(cms), threshold))
    out["images"] = len(cms)
    out["confusion_matrix"] = cms.sum(0).tolist()
    return out

def aligned_confusions(record_a: dict, record_b: dict, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-image confusion matrices of two runs on the same images, in ``record_a``'s order."""
    table_a, table_b = record_a["per_image"][split], record_b["per_image"][split]
    if sorted(table_a["names"]) != sorted(table_b["names"]):
        raise ValueError(f"runs {record_a.get('run_id')} and {record_b.get('run_id')} were not scored on the "
                         f"same {split} images")
    order = {n: k for k, n in enumerate(table_b["names"])}
    cms_b = per_image_confusions(table_b)[[order[n] for n in table_a["names"]]]
    return per_image_confusions(table_a), cms_b, region_groups(record_a, split)

def images_at_rank(record: dict, split: str, rank: float = 0.5) -> list[tuple[str, str, float]]:
    """Per defect class, the image of a run's split at quantile ``rank`` of that class's per-image IoU.

    Only images that hold the class count; chosen from the record, not by hand
    (0: worst, 0.5: median, 1: best).  Returns ``(class, image name, IoU)`` tuples.
    """
    table = record["per_image"][split]
    cms = per_image_confusions(table)
    chosen = []
    for c, name in enumerate(class_names(record)):
        if c == 0:
            continue
        scores = class_iou_per_image(cms, c)
        present = np.flatnonzero(~np.isnan(scores))
        if len(present):
            order = present[np.argsort(scores[present], kind="stable")]
            k = order[min(int(rank * len(order)), len(order) - 1)]
            chosen.append((name, table["names"][k], float(scores[k])))
    return chosen


def seed_means(records: Sequence[dict], split: str, key: str) -> dict[int, dict[str, float]]:
    """Runs of several seeds on each fold, pooled per fold: ``{fold: {"mean", "spread", "seeds"}}``.

    ``mean`` is the mean over the fold's seeds, ``spread`` the largest minus
    the smallest of them (0 for one seed), ``seeds`` how many there were.
    """
    by_fold: dict[int, list[float]] = {}
    for r in records:
        by_fold.setdefault(r["fold"], []).append(metric(r, split, key))
    return {f: {"mean": float(np.mean(v)), "spread": float(np.max(v) - np.min(v)), "seeds": len(v)}
            for f, v in sorted(by_fold.items())}
