"""Tables and prose the chapters share, computed from run records.

Introduced in chapter 03 (baseline); every later chapter uses the same helpers,
so no chapter copies a cell of another.

All helpers take records as :func:`defectlib.experiments.get_run` returns
them (read through :mod:`defectlib.records`); the statistics behind them are
:mod:`defectlib.stats`'.  Metrics in tables are shown in percent with one
decimal; per-fold values stand beside mean and standard deviation (``ddof=1``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import paired_bootstrap_interval
from .records import class_names, curve, metric, run_convergence
from .stats import aligned_confusions, false_alarms, group_bootstrap, mean_std, pool_records, seed_means
from .tables import mark_best


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


def interval_text(bounds: tuple[float, float]) -> str:
    """A 95 % interval of two shares as ``[low, high]`` in percent with one decimal."""
    return f"[{pct(bounds[0])}, {pct(bounds[1])}]"


def fold_table(records: Sequence[dict], split: str, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Metrics (rows) per fold, with mean ± std, in percent; ready to display.

    ``keys`` are metric keys (see :data:`LABELS`) or ``"IoU <class>"`` / ``"Dice <class>"``;
    by default the summary metrics and the per-class IoU.
    """
    classes = class_names(records[0])
    keys = list(keys or [*SUMMARY_KEYS, *(f"IoU {c}" for c in classes)])
    rows = []
    for key in keys:
        values = [metric(r, split, key) for r in records]
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
        values = curve(r)
        last = values[-window:]
        rows.append({
            "fold": r["fold"], "epochs": len(values), "best epoch": r["best_epoch"],
            "best val mIoU": pct(max(values)),
            f"mean of last {window}": pct(float(np.mean(last))),
            f"change over last {window} epochs (points)": f"{100 * (values[-1] - values[-len(last)]):+.1f}",
            f"range of last {window} (points)": f"{100 * (max(last) - min(last)):.1f}",
        })
    return pd.DataFrame(rows).set_index("fold")


def arm_convergence(arms: dict[str, Sequence[dict]], window: int = 5) -> pd.DataFrame:
    """Per arm (rows): the mean best epoch over runs, and the mean change of validation
    mIoU over the last ``window`` epochs, in points: an arm still rising at the end of
    its budget is judged before it has finished learning."""
    rows = {}
    for arm, records in arms.items():
        curves = [curve(r) for r in records]
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
        diffs = {r["fold"]: metric(r, split, key) - metric(by_fold[r["fold"]], split, key)
                 for r in records_b if r["fold"] in by_fold}
        mean, std = mean_std(list(diffs.values()))
        row = {"metric": LABELS.get(key, key)}
        row.update({f"fold {f}": f"{100 * d:+.1f}" for f, d in sorted(diffs.items())})
        row["mean ± std"] = f"{100 * mean:+.1f} ± {pct(std)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def interval_table(records: Sequence[dict], split: str = "test", keys: Sequence[str] = ("miou", "defect_miou"),
                   n_boot: int = 1000) -> pd.DataFrame:
    """Per fold: the point value and its 95 % intervals from a region-group and an image bootstrap."""
    rows = []
    for r in records:
        region = group_bootstrap(r, split, keys, n_boot, by="region")
        image = group_bootstrap(r, split, keys, n_boot, by="image")
        for key in keys:
            rows.append({"fold": r["fold"], "metric": LABELS.get(key, key), "value": pct(metric(r, split, key)),
                         "95 % interval, region bootstrap": interval_text(region[key]),
                         "95 % interval, image bootstrap": interval_text(image[key])})
    return pd.DataFrame(rows).set_index(["fold", "metric"])


def arm_table(arms: dict[str, Sequence[dict]], keys: Sequence[tuple[str, str]] = (
        ("val", "miou"), ("val", "defect_miou"), ("test", "miou"), ("test", "defect_miou"))) -> pd.DataFrame:
    """Per arm (rows): for each ``(split, metric)``, the value of each fold (one column each) and their
    mean ± std, in percent; the best validation mean of each metric is marked (:func:`tables.mark_best`)."""
    rows = {}
    for arm, records in arms.items():
        ordered = sorted(records, key=lambda r: r["fold"])
        row = {}
        for split, key in keys:
            values = [metric(r, split, key) for r in ordered]
            mean, std = mean_std(values)
            label = f"{split} {LABELS.get(key, key)}"
            row.update({(label, f"fold {r['fold']}"): pct(v) for r, v in zip(ordered, values)})
            row[(label, "mean ± std")] = f"{pct(mean)} ± {pct(std)}"
        rows[arm] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "arm"
    return mark_best(table, {column: "max" for column in table.columns
                             if column[0].startswith("val ") and column[1] == "mean ± std"})


def class_iou_table(arms: dict[str, Sequence[dict]], split: str = "test") -> pd.DataFrame:
    """Mean IoU of each class (columns) over each arm's runs (rows), as fractions."""
    return pd.DataFrame({arm: {c: mean_std([r[split]["iou"][c] for r in records])[0]
                               for c in records[0][split]["iou"]}
                         for arm, records in arms.items()}).T


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
            cms_ref, cms_arm, groups = aligned_confusions(ref, r, split)
            interval = paired_bootstrap_interval(cms_ref, cms_arm, class_names(r), groups,
                                                 tuple(keys), n_boot)
            for key in keys:
                rows.append({"arm": arm, "fold": r["fold"], "metric": key,
                             "difference": metric(r, split, key) - metric(ref, split, key),
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
            "Free images with a false alarm (%)": mean_std([a["image_rate"] for a in alarms])[0] * 100,
            "Free pixels predicted defect (%)": mean_std([a["pixel_rate"] for a in alarms])[0] * 100,
            "image AUROC (%)": mean_std([r[split]["image_auroc"] for r in records])[0] * 100,
            "wall minutes per run": mean_std([r["wall_seconds"] / 60 for r in records])[0],
            "training images/s": mean_std([r["train_images_per_second"] for r in records])[0],
            "best epoch": mean_std([r["best_epoch"] for r in records])[0],
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    return table


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


def ladder_summary(ladder: pd.DataFrame, steps: dict[str, Sequence[dict]], split: str = "test") -> pd.DataFrame:
    """The ladder in one table, in percent: per rung (rows, in order) the out-of-fold mIoU and defect
    mIoU with their 95 % intervals and fold mean ± std (from :func:`ladder_table`), and each defect
    class's out-of-fold IoU."""
    classes = class_names(next(iter(steps.values()))[0])
    rows = {}
    for name, records in steps.items():
        pooled = pool_records(records, split)
        row = {}
        for key, label in (("miou", "mIoU"), ("defect_miou", "defect mIoU")):
            r = ladder.loc[name]
            row.update({label: pct(r[key]), f"{label} interval": interval_text((r[f"{key} low"], r[f"{key} high"])),
                        f"{label} per fold": f"{pct(r[f'{key} fold mean'])} ± {pct(r[f'{key} fold std'])}"})
        row.update({f"IoU {c}": pct(pooled[split]["iou"][c]) for c in classes[1:]})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("recipe")


def ladder_step_intervals(steps: dict[str, Sequence[dict]], split: str = "test",
                           keys: Sequence[str] = ("miou", "defect_miou"), n_boot: int = 1000) -> pd.DataFrame:
    """Each rung of the ladder minus the rung before, out of fold, with a paired region bootstrap.

    Both rungs' records are pooled (:func:`pool_records`), so every image of
    their folds counts once, and the two pools are scored on the same
    resampled region groups.  Returns, per step (``"<rung> minus <rung before>"``,
    in order), ``<key>`` (the difference), ``<key> low`` and ``<key> high`` as
    fractions and ``<key> folds ahead`` (how many folds the later rung wins).

    Raises:
        ValueError: two neighbouring rungs do not cover the same folds.
    """
    rows = {}
    rungs = list(steps)
    for before, after in zip(rungs, rungs[1:]):
        folds_before = sorted(r["fold"] for r in steps[before])
        folds_after = sorted(r["fold"] for r in steps[after])
        if folds_before != folds_after:
            raise ValueError(f"ladder rungs {before!r} (folds {folds_before}) and {after!r} (folds {folds_after}) "
                             "do not cover the same folds")
        pooled_a, pooled_b = pool_records(steps[before], split), pool_records(steps[after], split)
        cms_a, cms_b, groups = aligned_confusions(pooled_a, pooled_b, split)
        interval = paired_bootstrap_interval(cms_a, cms_b, class_names(pooled_a), groups, tuple(keys), n_boot)
        by_fold = {r["fold"]: r for r in steps[before]}
        row = {}
        for key in keys:
            ahead = sum(metric(r, split, key) > metric(by_fold[r["fold"]], split, key) for r in steps[after])
            row.update({key: metric(pooled_b, split, key) - metric(pooled_a, split, key),
                        f"{key} low": interval[key][0], f"{key} high": interval[key][1],
                        f"{key} folds ahead": f"{ahead} of {len(folds_after)}"})
        rows[f"{after} minus {before}"] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("step")


def ladder_step_table(steps: pd.DataFrame, keys: Sequence[tuple[str, str]] = (
        ("miou", "mIoU"), ("defect_miou", "defect mIoU"))) -> pd.DataFrame:
    """:func:`ladder_step_intervals` as text in points: ``+d [low, high]`` per metric, and the folds ahead."""
    table = pd.DataFrame({f"{label} step (points)": [f"{100 * row[key]:+.1f} [{100 * row[f'{key} low']:+.1f}, "
                                                     f"{100 * row[f'{key} high']:+.1f}]" for _, row in steps.iterrows()]
                          for key, label in keys}, index=steps.index)
    table[f"folds ahead ({keys[0][1]})"] = steps[f"{keys[0][0]} folds ahead"]
    return table


def per_class_table(records: Sequence[dict], splits: Sequence[str] = ("val", "test"),
                    n_boot: int = 1000) -> pd.DataFrame:
    """Out-of-fold IoU and Dice per class (rows), and mIoU and defect mIoU, for each split side by side.

    Each split is pooled over ``records`` (:func:`pool_records`: with five folds, every image once) and
    gets, per metric, its value and its 95 % region-group bootstrap interval, in percent. Validation is
    where each run's checkpoint was chosen, so it reads high; test only reports.
    """
    classes = class_names(records[0])
    rows = {c: {} for c in [*classes, "mIoU (6 classes)", "defect mIoU (5 classes)"]}
    for split in splits:
        pooled = pool_records(records, split)
        keys = ("miou", "defect_miou", *(f"IoU {c}" for c in classes), *(f"Dice {c}" for c in classes))
        interval = group_bootstrap(pooled, split, keys, n_boot)
        name = "validation" if split == "val" else split
        for c in classes:
            rows[c].update({
                f"{name} IoU": pct(pooled[split]["iou"][c]), f"{name} IoU interval": interval_text(interval[f"IoU {c}"]),
                f"{name} Dice": pct(pooled[split]["dice"][c]),
                f"{name} Dice interval": interval_text(interval[f"Dice {c}"])})
        for key, label in (("miou", "mIoU (6 classes)"), ("defect_miou", "defect mIoU (5 classes)")):
            rows[label].update({f"{name} IoU": pct(pooled[split][key]), f"{name} IoU interval": interval_text(interval[key]),
                                f"{name} Dice": "", f"{name} Dice interval": ""})
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.rename_axis(f"out of fold, {pooled[split]['images']} images")


def seed_table(records: Sequence[dict], split: str = "val", keys: Sequence[str] = ("miou", "defect_miou")) -> pd.DataFrame:
    """Per metric (rows): each fold's mean over its seeds with their spread, in percent; the mean ± std
    over folds of those means; and the largest seed spread (what a difference must beat)."""
    rows = []
    for key in keys:
        per_fold = seed_means(records, split, key)
        mean, std = mean_std([v["mean"] for v in per_fold.values()])
        row = {"metric": LABELS.get(key, key)}
        row.update({f"fold {f} ({v['seeds']} seeds)": f"{pct(v['mean'])} (spread {pct(v['spread'])})"
                    for f, v in per_fold.items()})
        row["mean ± std over folds"] = f"{pct(mean)} ± {pct(std)}"
        row["largest seed spread"] = pct(max(v["spread"] for v in per_fold.values()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def campaign_runs_table(arms: dict[str, Sequence[dict]]) -> pd.DataFrame:
    """One row per run of a campaign (arm, fold, seed), in percent: validation mIoU and defect mIoU, the
    convergence statistic the rule reads, the best step, and test mIoU and defect mIoU shown beside as
    ``(not used)``; the best validation mIoU is marked. Where a record has them, the validation image
    AUROC and false alarms (:func:`false_alarms`: defect-free images called defective) are shown too; the
    rule does not read them. No wall time: runs of one campaign may have had different machines
    (``benchmarks/run_cost.py`` compares costs)."""
    rows = {}
    for arm, records in arms.items():
        for r in sorted(records, key=lambda r: (r["fold"], r["seed"])):
            conv = run_convergence(r)
            alarms = false_alarms(r, "val") if "val" in r.get("per_image", {}) else {"images": 0}
            rows[(arm, r["fold"], r["seed"])] = {
                "val mIoU": pct(metric(r, "val", "miou")), "val defect mIoU": pct(metric(r, "val", "defect_miou")),
                "val image AUROC": pct(metric(r, "val", "image_auroc")) if "image_auroc" in r["val"] else "",
                "val false alarms (%)": pct(alarms["image_rate"]) if alarms["images"] else "",
                "gain of the best over the last fifth (points)": f"{100 * conv['best_gain_last_fifth']:+.1f}",
                "best step": conv["best_step"],
                "test mIoU (not used)": pct(metric(r, "test", "miou")),
                "test defect mIoU (not used)": pct(metric(r, "test", "defect_miou")),
            }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["arm", "fold", "seed"])
    return mark_best(table, {"val mIoU": "max"}) if len(table) else table


def campaign_verdict_table(verdicts: pd.DataFrame, changes: dict[str, str]) -> pd.DataFrame:
    """:func:`defectlib.selection.campaign_verdicts` for reading: what each arm changes, its paired gains
    in points with a sign, the seed spread it had to beat, and the decision."""
    table = pd.DataFrame(index=verdicts.index)
    table["changes"] = [changes.get(a, "") for a in verdicts.index]
    for column in verdicts.columns:
        if column.startswith("gain on fold") or column == "mean gain":
            table[f"{column} (points)"] = [f"{100 * v:+.1f}" if np.isfinite(v) else "" for v in verdicts[column]]
    table["seed spread (points)"] = [f"{100 * v:.1f}" if np.isfinite(v) else "" for v in verdicts["seed spread"]]
    table["decision"] = verdicts["decision"]
    return table


def budget_table(runs_by_budget: dict[int, dict[str, Sequence[dict]]]) -> pd.DataFrame:
    """Validation mIoU of the same arms trained at several budgets, one row per arm and fold (first seeds:
    seed = fold), one column per budget in steps, in percent; blank where an arm has no run at a budget.

    ``runs_by_budget`` maps a budget to ``{arm: records}``; an arm keeps its name across budgets.
    """
    rows: dict[tuple[str, int], dict[str, str]] = {}
    for steps, arms in sorted(runs_by_budget.items()):
        for arm, records in arms.items():
            for r in records:
                if r["seed"] == r["fold"]:
                    rows.setdefault((arm, r["fold"]), {})[f"{steps} steps"] = pct(metric(r, "val", "miou"))
    columns = [f"{steps} steps" for steps in sorted(runs_by_budget)]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).fillna("")
    if len(table):
        table.index = pd.MultiIndex.from_tuples(table.index, names=["arm", "fold"])
    return table.sort_index()


def target_table(reached: dict[str, tuple[float, float, float] | None], targets: dict[str, float]) -> pd.DataFrame:
    """Each target (rows) beside what was reached, in percent (chapter 7).

    ``reached`` maps a target's name to ``(value, low, high)`` (shares; the 95 % interval may be NaN) or
    to ``None`` while its runs are missing; ``targets`` maps the same names to the share aimed at. A target
    is "met" when the point value reaches it, and the interval says whether it is clear of the target.
    """
    rows = {}
    for name, target in targets.items():
        value = reached.get(name)
        if value is None:
            rows[name] = {"target (%)": pct(target), "reached (%)": "not yet measured", "95 % interval": "",
                          "met": "not yet"}
            continue
        point, low, high = value
        rows[name] = {"target (%)": pct(target), "reached (%)": pct(point),
                      "95 % interval": interval_text((low, high)) if np.isfinite(low) else "",
                      "met": ("yes" if point >= target else "no")
                      + (" (interval clear of it)" if np.isfinite(low) and (low > target or high < target) else "")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target")
