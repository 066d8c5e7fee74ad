"""Tables and comparisons the chapters share, computed from run records.

Introduced in chapter 03 (baseline); every later chapter uses the same helpers,
so no chapter copies a cell of another.

All helpers take records as :func:`defectlib.experiments.get_run` returns
them.  Metrics in tables are shown in percent with one decimal; per-fold
values stand beside mean and standard deviation (``ddof=1``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .data import project_root
from .metrics import (bootstrap_interval, class_iou_per_image, metric_value, paired_bootstrap_interval,
                      per_image_confusions)
from .splits import load_split

#: Human labels of the metric keys.
LABELS = {
    "miou": "mIoU (6 classes)",
    "defect_miou": "defect mIoU (5 classes)",
    "mdice": "mean Dice",
    "binary_defect_iou": "binary defect IoU",
    "pixel_accuracy": "pixel accuracy",
    "image_auroc": "image AUROC",
    "image_accuracy": "image accuracy",
}
SUMMARY_KEYS = ("miou", "defect_miou", "binary_defect_iou", "pixel_accuracy", "image_auroc", "image_accuracy")


def pct(value: float) -> str:
    """A share as percent with one decimal (``-`` for NaN)."""
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation, ignoring NaN (std NaN for fewer than two values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _metric(record: dict, split: str, key: str) -> float:
    return metric_value(record[split], key)


def fold_table(records: Sequence[dict], split: str, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics (rows) per fold, with mean ± std, in percent; ready to display.

    ``keys`` are metric keys (see :data:`LABELS`) or ``"IoU <class>"`` / ``"Dice <class>"``;
    by default the summary metrics and the per-class IoU.
    """
    classes = records[0]["config"]["data"]["classes"]
    keys = list(keys or [*SUMMARY_KEYS, *(f"IoU {c}" for c in classes)])
    rows = []
    for key in keys:
        values = [_metric(r, split, key) for r in records]
        mean, std = mean_std(values)
        row = {"metric": LABELS.get(key, key)}
        row.update({f"fold {r['fold']}": pct(v) for r, v in zip(records, values)})
        row["mean ± std"] = f"{pct(mean)} ± {pct(std)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def cost_table(records: Sequence[dict]) -> pd.DataFrame:
    """Per run: precision, epochs, best epoch, wall time and where it went."""
    rows = []
    for r in records:
        epochs = max(r["epochs_run"], 1)
        rows.append({
            "fold": r["fold"], "precision": r["precision"],
            "threads": r["environment"]["threads"],
            "epochs": r["epochs_run"], "best epoch": r["best_epoch"],
            "wall time (min)": f"{r['wall_seconds'] / 60:.1f}",
            "training images/s": f"{r['train_images_per_second']:.1f}",
            "training s/epoch": f"{r['train_seconds'] / epochs:.1f}",
            "validation s/epoch": f"{r['val_seconds'] / epochs:.1f}",
            "data decoding (s)": f"{r['data_seconds']:.0f}",
        })
    return pd.DataFrame(rows).set_index("fold")


def convergence_table(records: Sequence[dict], window: int = 5) -> pd.DataFrame:
    """Has validation mIoU flattened?  Best epoch and the change over the last ``window`` epochs."""
    rows = []
    for r in records:
        curve = [e["val_miou"] for e in r["history"]]
        last = curve[-window:]
        rows.append({
            "fold": r["fold"], "epochs": len(curve), "best epoch": r["best_epoch"],
            "best val mIoU": pct(max(curve)),
            f"mean of last {window}": pct(float(np.mean(last))),
            f"change over last {window} epochs (points)": f"{100 * (curve[-1] - curve[-len(last)]):+.1f}",
            f"range of last {window} (points)": f"{100 * (max(last) - min(last)):.1f}",
        })
    return pd.DataFrame(rows).set_index("fold")


def arm_convergence(arms: dict[str, Sequence[dict]], window: int = 5) -> pd.DataFrame:
    """Per arm (rows): the mean best epoch over runs, and the mean change of validation
    mIoU over the last ``window`` epochs, in points: an arm still rising at the end of
    its budget is judged before it has finished learning."""
    rows = {}
    for arm, records in arms.items():
        curves = [[e["val_miou"] for e in r["history"]] for r in records]
        rows[arm] = {
            "epochs": int(np.mean([len(c) for c in curves])),
            "mean best epoch": float(np.mean([r["best_epoch"] for r in records])),
            "runs best in the last window": sum(r["best_epoch"] > len(c) - window for r, c in zip(records, curves)),
            f"change over last {window} epochs (points)": float(np.mean(
                [100 * (c[-1] - c[-min(window, len(c))]) for c in curves])),
        }
    return pd.DataFrame(rows).T.rename_axis("arm")


def paired_differences(records_a: Sequence[dict], records_b: Sequence[dict], split: str = "test",
                       keys: Sequence[str] = ("miou", "defect_miou")) -> pd.DataFrame:
    """``b - a`` per fold (matched by fold), with mean ± std, in points of percent."""
    by_fold = {r["fold"]: r for r in records_a}
    rows = []
    for key in keys:
        diffs = {r["fold"]: _metric(r, split, key) - _metric(by_fold[r["fold"]], split, key)
                 for r in records_b if r["fold"] in by_fold}
        mean, std = mean_std(list(diffs.values()))
        row = {"metric": LABELS.get(key, key)}
        row.update({f"fold {f}": f"{100 * d:+.1f}" for f, d in sorted(diffs.items())})
        row["mean ± std"] = f"{100 * mean:+.1f} ± {pct(std)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def region_groups(record: dict, split: str) -> list:
    """The region group of every image in a record's per-image table (from its split file)."""
    path = Path(record["split_file"])
    groups = load_split(path if path.is_absolute() else project_root() / path)["groups"]
    return [groups.get(n, n) for n in record["per_image"][split]["names"]]


def group_bootstrap(record: dict, split: str = "test", keys: Sequence[str] = ("miou", "defect_miou"),
                    n_boot: int = 1000, seed: int = 0, by: str = "region") -> dict[str, tuple[float, float]]:
    """95 % bootstrap interval of a run's split metrics, resampling region groups (``by="region"``)
    or single images (``by="image"``)."""
    cms = per_image_confusions(record["per_image"][split])
    groups = region_groups(record, split) if by == "region" else None
    return bootstrap_interval(cms, record["config"]["data"]["classes"], groups, tuple(keys), n_boot, seed=seed)


def interval_table(records: Sequence[dict], split: str = "test", keys: Sequence[str] = ("miou", "defect_miou"),
                   n_boot: int = 1000) -> pd.DataFrame:
    """Per fold: the point value and its 95 % intervals from a region-group and an image bootstrap."""
    rows = []
    for r in records:
        region = group_bootstrap(r, split, keys, n_boot, by="region")
        image = group_bootstrap(r, split, keys, n_boot, by="image")
        for key in keys:
            rows.append({"fold": r["fold"], "metric": LABELS.get(key, key), "value": pct(_metric(r, split, key)),
                         "95 % interval, region bootstrap": f"[{pct(region[key][0])}, {pct(region[key][1])}]",
                         "95 % interval, image bootstrap": f"[{pct(image[key][0])}, {pct(image[key][1])}]"})
    return pd.DataFrame(rows).set_index(["fold", "metric"])


def _has_defect(cms: np.ndarray) -> np.ndarray:
    """Per image of ``(N, C, C)`` confusion matrices: whether its truth holds any defect pixel."""
    return cms[:, 1:, :].sum(axis=(1, 2)) > 0


def false_alarms(record: dict, split: str = "test", min_pixels: int = 64) -> dict[str, float]:
    """False alarms on the defect-free images of a run's split, from its per-image counts.

    Returns:
        ``image_rate``: share of defect-free images with at least ``min_pixels``
        predicted defect pixels (at native resolution); ``pixel_rate``: share of
        their pixels predicted as a defect; ``images``: how many there were.
    """
    cms = per_image_confusions(record["per_image"][split])
    free = ~_has_defect(cms)
    predicted_defect = cms[:, :, 1:].sum(axis=(1, 2))
    if not free.any():
        return {"image_rate": float("nan"), "pixel_rate": float("nan"), "images": 0}
    return {"image_rate": float((predicted_defect[free] >= min_pixels).mean()),
            "pixel_rate": float(predicted_defect[free].sum() / cms[free].sum()),
            "images": int(free.sum())}


def select_arm(arms: dict[str, Sequence[dict]], tolerance: float = 0.005) -> str:
    """The selection rule of the ablation chapters, on validation only.

    The arm with the highest mean validation mIoU (6 classes) over its runs
    wins; arms within ``tolerance`` (0.5 points) of it are decided by the
    higher mean validation defect mIoU.
    """
    means = {a: (mean_std([r["val"]["miou"] for r in rs])[0], mean_std([r["val"]["defect_miou"] for r in rs])[0])
             for a, rs in arms.items()}
    best = max(m for m, _ in means.values())
    close = [a for a, (m, _) in means.items() if m >= best - tolerance]
    return max(close, key=lambda a: means[a][1])


def combine_steps(arms: dict[str, Sequence[dict]], start: tuple[str, str],
                  steps: Sequence[tuple[str, str]]) -> str:
    """The "best combination" rule of the augmentation chapter, on validation only.

    Each step's arm is the arm before it plus one component. A component is
    kept when its arm's mean validation mIoU beats that of the arm before it;
    the combination is the starting augmentation followed by the kept
    components. The steps are cumulative, so each gain is read in the context
    of the components before it.

    Args:
        arms: records per arm.
        start: ``(arm, augment)`` the ladder starts from, e.g. ``("flips", "flips")``.
        steps: ``(arm, component)`` in ladder order; a component that replaces
            one before it is written ``"new-old"`` (``"d4-flips"``: the square's
            symmetries include the flips).

    Returns:
        An ``augment`` string, e.g. ``"d4+photometric"``.
    """
    mean = {a: mean_std([r["val"]["miou"] for r in rs])[0] for a, rs in arms.items()}
    previous, augment = start
    parts = [] if augment == "none" else augment.split("+")
    for arm, component in steps:
        if mean[arm] > mean[previous]:
            added, _, replaced = component.partition("-")
            parts = [p for p in parts if p != replaced] + [added]
        previous = arm
    return "+".join(parts) or "none"


# ----------------------------------------------------------------------------
# Ablation chapters: one family of arms, each run on the same folds
# ----------------------------------------------------------------------------

def arm_table(arms: dict[str, Sequence[dict]], keys: Sequence[tuple[str, str]] = (
        ("val", "miou"), ("val", "defect_miou"), ("test", "miou"), ("test", "defect_miou"))) -> pd.DataFrame:
    """Per arm (rows): for each ``(split, metric)``, the per-fold values and their mean ± std, in percent."""
    rows = {}
    for arm, records in arms.items():
        ordered = sorted(records, key=lambda r: r["fold"])
        row = {}
        for split, key in keys:
            values = [_metric(r, split, key) for r in ordered]
            mean, std = mean_std(values)
            label = f"{split} {LABELS.get(key, key)}"
            row[(label, "folds " + " / ".join(str(r["fold"]) for r in ordered))] = " / ".join(pct(v) for v in values)
            row[(label, "mean ± std")] = f"{pct(mean)} ± {pct(std)}"
        rows[arm] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "arm"
    return table


def class_iou_table(arms: dict[str, Sequence[dict]], split: str = "test") -> pd.DataFrame:
    """Mean IoU of each class (columns) over each arm's runs (rows), as fractions."""
    return pd.DataFrame({arm: {c: mean_std([r[split]["iou"][c] for r in records])[0]
                               for c in records[0][split]["iou"]}
                         for arm, records in arms.items()}).T


def _aligned_confusions(record_a: dict, record_b: dict, split: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Per-image confusion matrices of two runs on the same images, in ``record_a``'s order."""
    table_a, table_b = record_a["per_image"][split], record_b["per_image"][split]
    if sorted(table_a["names"]) != sorted(table_b["names"]):
        raise ValueError(f"runs {record_a.get('run_id')} and {record_b.get('run_id')} were not scored on the "
                         f"same {split} images")
    order = {n: k for k, n in enumerate(table_b["names"])}
    cms_b = per_image_confusions(table_b)[[order[n] for n in table_a["names"]]]
    return per_image_confusions(table_a), cms_b, region_groups(record_a, split)


def paired_intervals(reference: Sequence[dict], arms: dict[str, Sequence[dict]], split: str = "test",
                     keys: Sequence[str] = ("miou", "defect_miou"), n_boot: int = 1000) -> pd.DataFrame:
    """Each arm minus the reference, run by run (matched by fold), with a 95 % region-group bootstrap interval.

    Both runs of a pair are scored on the same resampled region groups
    (:func:`defectlib.metrics.paired_bootstrap_interval`).  Returns one row per
    arm, fold and metric with ``difference``, ``low`` and ``high`` as fractions.
    """
    by_fold = {r["fold"]: r for r in reference}
    rows = []
    for arm, records in arms.items():
        for r in sorted(records, key=lambda r: r["fold"]):
            ref = by_fold[r["fold"]]
            cms_ref, cms_arm, groups = _aligned_confusions(ref, r, split)
            interval = paired_bootstrap_interval(cms_ref, cms_arm, r["config"]["data"]["classes"], groups,
                                                 tuple(keys), n_boot)
            for key in keys:
                rows.append({"arm": arm, "fold": r["fold"], "metric": key,
                             "difference": _metric(r, split, key) - _metric(ref, split, key),
                             "low": interval[key][0], "high": interval[key][1]})
    return pd.DataFrame(rows)


def paired_interval_table(intervals: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_intervals` as text in points: ``+d [low, high]`` per fold, and the mean difference."""
    rows = {}
    for (arm, key), part in intervals.groupby(["arm", "metric"], sort=False):
        row = {f"fold {f.fold}": f"{100 * f.difference:+.1f} [{100 * f.low:+.1f}, {100 * f.high:+.1f}]"
               for f in part.itertuples()}
        mean, std = mean_std(part["difference"].tolist())
        row["mean ± std"] = f"{100 * mean:+.1f} ± {pct(std)}"
        row["folds above 0"] = f"{int((part['low'] > 0).sum())} of {len(part)}"
        rows[(arm, LABELS.get(key, key))] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["arm", "metric"])
    return table


def cost_summary(arms: dict[str, Sequence[dict]], split: str = "test", min_pixels: int = 64) -> pd.DataFrame:
    """Per arm, means over its runs: false alarms on defect-free images, image AUROC and wall time.

    False alarms as in :func:`false_alarms`; ``wall minutes`` and training
    images/s come from the records (a run slowed by other work on the machine
    shows as low throughput).
    """
    rows = {}
    for arm, records in arms.items():
        alarms = [false_alarms(r, split, min_pixels) for r in records]
        rows[arm] = {
            f"Free images with a false alarm (%)": mean_std([a["image_rate"] for a in alarms])[0] * 100,
            "Free pixels predicted defect (%)": mean_std([a["pixel_rate"] for a in alarms])[0] * 100,
            "image AUROC (%)": mean_std([r[split]["image_auroc"] for r in records])[0] * 100,
            "wall minutes per run": mean_std([r["wall_seconds"] / 60 for r in records])[0],
            "training images/s": mean_std([r["train_images_per_second"] for r in records])[0],
            "best epoch": mean_std([r["best_epoch"] for r in records])[0],
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    return table


def images_at_rank(record: dict, split: str, rank: float = 0.5) -> list[tuple[str, str, float]]:
    """Per defect class, the image of a run's split at quantile ``rank`` of that class's per-image IoU.

    Only images that hold the class count; chosen from the record, not by hand
    (0: worst, 0.5: median, 1: best).  Returns ``(class, image name, IoU)`` tuples.
    """
    table = record["per_image"][split]
    cms = per_image_confusions(table)
    chosen = []
    for c, name in enumerate(record["config"]["data"]["classes"]):
        if c == 0:
            continue
        scores = class_iou_per_image(cms, c)
        present = np.flatnonzero(~np.isnan(scores))
        if len(present):
            order = present[np.argsort(scores[present], kind="stable")]
            k = order[min(int(rank * len(order)), len(order) - 1)]
            chosen.append((name, table["names"][k], float(scores[k])))
    return chosen


# ----------------------------------------------------------------------------
# Final chapter: every image tested once, image-level decisions
# ----------------------------------------------------------------------------

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
    pooled[split] = table_metrics(table, records[0]["config"]["data"]["classes"])
    return pooled


def table_metrics(table: dict, class_names: Sequence[str], threshold: float = 0.5) -> dict:
    """Split-level metrics (as a record holds them) recomputed from a per-image table."""
    from .metrics import image_level_metrics, reduce_confusion

    cms = per_image_confusions(table)
    out = reduce_confusion(cms.sum(0), class_names)
    out.update(image_level_metrics(np.asarray(table["scores"]), _has_defect(cms), threshold))
    out["images"] = len(cms)
    out["confusion_matrix"] = cms.sum(0).tolist()
    return out


def accuracy_threshold(table: dict) -> float:
    """The image-score threshold with the highest "has a defect" accuracy on a per-image table.

    Candidates are the midpoints between consecutive distinct scores (and
    the ends); ties go to the lowest threshold. Choose it on validation, apply
    it to test.
    """
    scores = np.asarray(table["scores"], float)
    truth = _has_defect(per_image_confusions(table))
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6]])
    accuracy = [np.mean((scores >= t) == truth) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


# ----------------------------------------------------------------------------
# Ablation chapters: the pieces of prose and tables every ablation shows
# ----------------------------------------------------------------------------

def ranking_table(arms: dict[str, Sequence[dict]], tolerance: float = 0.005) -> tuple[pd.DataFrame, str]:
    """The arms ranked by mean validation mIoU, with the :func:`select_arm` winner marked; returns ``(table, winner)``."""
    winner = select_arm(arms, tolerance)
    table = pd.DataFrame({arm: {"mean validation mIoU (%)": 100 * mean_std([r["val"]["miou"] for r in rs])[0],
                                "mean validation defect mIoU (%)":
                                    100 * mean_std([r["val"]["defect_miou"] for r in rs])[0]}
                          for arm, rs in arms.items()}).T.sort_values("mean validation mIoU (%)", ascending=False)
    best = table["mean validation mIoU (%)"].max()
    table[f"within {100 * tolerance:.1f} points of the best"] = np.where(
        table["mean validation mIoU (%)"] >= best - 100 * tolerance, "yes", "")
    table["selected"] = np.where(table.index == winner, "winner", "")
    table.index.name = "arm"
    return table, winner


def throughput_note(arms: dict[str, Sequence[dict]], what: str, slow: float = 0.8) -> str:
    """A sentence on training throughput over all runs, naming the runs far below the median.

    A run's speed depends on the machine and the load it ran under as well as on its
    recipe, so the sentence names the slow runs and says their wall times do not compare.
    """
    speed = pd.Series({r["run_id"]: r["train_images_per_second"] for rs in arms.values() for r in rs})
    slowed = speed[speed < slow * speed.median()]
    text = f"Training throughput over all {len(speed)} runs: median **{speed.median():.1f}** images/s. "
    if len(slowed):
        return text + (f"{len(slowed)} run(s) trained below {slow:.0%} of that median "
                       f"({', '.join(f'`{k}`' for k in slowed.index)}): their wall times mix the cost of "
                       f"{what} with a slower or shared machine, and do not compare with the others'.")
    return text + f"No run trained below {slow:.0%} of that median, so the wall times compare {what}s."


def class_lines(arms: dict[str, Sequence[dict]], reference: str, winner: str) -> str:
    """Markdown bullets, per defect class: its mean test IoU with ``reference`` and ``winner`` (once when they are
    the same arm), and the arm best for it on validation."""
    test = class_iou_table(arms, "test") * 100
    val = class_iou_table(arms, "val")
    lines = []
    for name in test.columns[1:]:
        best = val[name].idxmax()
        both = f"{test.loc[reference, name]:.1f} % with {reference}"
        if winner != reference:
            both += f", {test.loc[winner, name]:.1f} % with {winner}"
        lines.append(f"- **{name}**: test IoU {both}; the arm best for it on validation is "
                     f"{best} (test {test.loc[best, name]:.1f} %).")
    return "\n".join(lines)


def summary_values(records: Sequence[dict]) -> dict[str, float]:
    """Headline numbers of an arm in percent: mean validation mIoU, and mean and std of test mIoU and defect mIoU."""
    out = {"val_miou": 100 * mean_std([r["val"]["miou"] for r in records])[0]}
    for key in ("miou", "defect_miou"):
        mean, std = mean_std([r["test"][key] for r in records])
        out[f"test_{key}_mean"], out[f"test_{key}_std"] = 100 * mean, 100 * std
    return out


# ----------------------------------------------------------------------------
# Qualitative chapter: failure kinds and disagreements, from per-image counts
# ----------------------------------------------------------------------------

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
    table = record["per_image"][split]
    classes = record["config"]["data"]["classes"]
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


def ladder_table(steps: dict[str, Sequence[dict]], split: str = "test", keys: Sequence[str] = ("miou", "defect_miou"),
                 n_boot: int = 1000) -> pd.DataFrame:
    """The report's ladder: per recipe (rows, in order), out-of-fold metrics over the same folds.

    Each step's records are pooled (:func:`pool_records`); the table gives,
    per metric, the pooled value with its 95 % region-group bootstrap interval
    and the mean ± std over folds, all as fractions (columns ``<key>``,
    ``<key> low``, ``<key> high``, ``<key> fold mean``, ``<key> fold std``)
    plus the folds.

    Raises:
        ValueError: the steps do not cover the same folds.
    """
    fold_sets = {name: tuple(sorted(r["fold"] for r in records)) for name, records in steps.items()}
    if len(set(fold_sets.values())) > 1:
        raise ValueError(f"ladder steps cover different folds: {fold_sets}")
    rows = {}
    for name, records in steps.items():
        pooled = pool_records(records, split)
        interval = group_bootstrap(pooled, split, tuple(keys), n_boot)
        row = {"folds": " ".join(map(str, fold_sets[name]))}
        for key in keys:
            mean, std = mean_std([r[split][key] for r in records])
            row.update({key: pooled[split][key], f"{key} low": interval[key][0], f"{key} high": interval[key][1],
                        f"{key} fold mean": mean, f"{key} fold std": std})
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "recipe"
    return table


def thin_structure(truth: np.ndarray, pred: np.ndarray, c: int) -> dict[str, float]:
    """How a prediction draws a thin defect of class ``c``: its width and how many pieces.

    Width is area over skeleton length (pixels per pixel of centre line), for
    the true and the predicted region of class ``c``; pieces are 8-connected
    components. A width ratio above 1 means the prediction is thicker than
    the truth; more predicted than true pieces means it breaks the defect.
    """
    import cv2
    from skimage.morphology import skeletonize

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
