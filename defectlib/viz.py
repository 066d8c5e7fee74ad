"""Plots shared by the notebooks and the README, in the report's one palette (:mod:`defectlib.overlays`).

Introduced in chapter 01 (EDA); the training plots in chapter 03 (baseline).
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle
import numpy as np
import seaborn as sns

from .classes import CLASSES
from .metrics import class_iou_per_image, confusion_matrix
from . import tables
from .overlays import CLASS_COLORS, ERROR_COLORS, ERROR_LABELS, FALLBACK_COLORS, FREE_COLOR, error_map, overlay


#: Font size (pt) of every text in a figure.  The book shows a figure up to 11 inches wide in a
#: column of about 790 px, i.e. at 0.48 of its 150-dpi size: 14 pt then displays at about 10 pt.
FONT_PT = 14


#: Resolution of figures stored as JPEG photographs (:func:`glue_figure`).
PHOTO_DPI = 110


def setup() -> None:
    """The report's look: 150-dpi figures, text of at least 10 pt as displayed, light grid; and every
    DataFrame a notebook displays drawn by :func:`defectlib.tables.to_html`.

    Figures should be at most 11 inches wide (see :data:`FONT_PT`).
    """
    tables.register()

    mpl.rcParams.update({"figure.dpi": 150, "savefig.dpi": 150, "font.size": FONT_PT, "axes.titlesize": FONT_PT,
                         "axes.labelsize": FONT_PT, "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT,
                         "legend.fontsize": FONT_PT, "legend.title_fontsize": FONT_PT,
                         "axes.grid": True, "grid.alpha": 0.3})


def palette(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Matplotlib colours (0-1 RGB) for class or category names, from the report's palette."""
    colors = {**CLASS_COLORS, "Free": FREE_COLOR}
    return {n: tuple(c / 255 for c in colors.get(n, FALLBACK_COLORS[k % len(FALLBACK_COLORS)]))
            for k, n in enumerate(names)}


def glue_figure(name: str, fig, photo: bool = False) -> None:
    """Hand a figure to the book as a numbered, captioned figure (myst-nb ``glue``), and close it.

    The notebook's next markdown cell places it with ``{glue:figure} name``
    and its caption.  ``photo=True`` stores it as JPEG (quality 85, 110 dpi:
    still 1.5 pixels per displayed pixel in the book's column) instead of
    PNG: grids of photographs are several times smaller so, with no visible loss.
    """
    from IPython.display import Image   # the book's glue; optional outside a notebook
    from myst_nb import glue

    if photo:
        buf = io.BytesIO()
        fig.savefig(buf, format="jpeg", dpi=PHOTO_DPI, pil_kwargs={"quality": 85}, bbox_inches="tight")
        glue(name, Image(data=buf.getvalue(), format="jpeg"), display=False)
    else:
        glue(name, fig, display=False)
    plt.close(fig)


def plot_history(records: Sequence[dict], keys: Sequence[str] = ("train_loss", "val_miou", "val_defect_miou"), ax=None):
    """Learning curves of one or more run records, one panel per history key."""

    axes = ax if ax is not None else plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))[1]
    for key, a in zip(keys, np.atleast_1d(axes)):
        for r in records:
            h = r["history"]
            a.plot([e["epoch"] for e in h], [e[key] for e in h], marker=".", label=f"run {r.get('fold', '-')}")
        a.set_xlabel("epoch")
        a.set_ylabel(key.replace("_", " ").replace("val ", "validation ").replace("miou", "mIoU"))
    np.atleast_1d(axes)[-1].legend()
    return axes


def plot_confusion(cm: np.ndarray, class_names: Sequence[str] = CLASSES, ax=None, normalize: bool = True):
    """Heat map of a pixel confusion matrix (rows truth, normalised per row)."""

    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
    sns.heatmap(shown, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=ax, annot_kws={"size": FONT_PT - 2})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return ax


class Plain(str):
    """A string that shows without quotes when glued into the book's text.

    Glued text is pasted as it is, not parsed as Markdown, so its code backticks are dropped.
    """

    def __repr__(self) -> str:
        return str(self).replace("`", "")


def plot_class_heatmap(ious, highlight: str | None = None, label: str = "test IoU (%)", ax=None):
    """Heat map of per-class IoU in percent, arms (rows) by classes (columns).

    ``ious`` is a DataFrame such as :func:`defectlib.report.class_iou_table` times 100;
    the ``highlight`` arm's label is marked as the winner.
    """

    ax = ax or plt.subplots(figsize=(9.5, 0.55 * len(ious) + 1.5))[1]
    sns.heatmap(ious, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, cbar_kws={"label": label},
                annot_kws={"size": FONT_PT - 2}, ax=ax)
    ax.set_xlabel("class")
    ax.set_ylabel("arm")
    ax.set_yticklabels([f"{a} (winner)" if a == highlight else a for a in ious.index], rotation=0)
    return ax


def plot_paired_intervals(intervals, reference: str, keys: Sequence[str] = ("miou", "defect_miou"),
                          labels: Sequence[str] = ("test mIoU", "test defect mIoU")):
    """Forest plot of :func:`defectlib.report.paired_intervals`: per arm, one point per run
    with its interval, in points, against the reference (vertical line at 0)."""

    arms = list(dict.fromkeys(intervals["arm"]))
    folds = sorted(set(intervals["fold"]))
    colors = dict(zip(folds, sns.color_palette("colorblind", max(len(folds), 3))))
    positions = {arm: k for k, arm in enumerate(reversed(arms))}
    fig, axes = plt.subplots(1, len(keys), figsize=(11, 0.5 * len(arms) + 2), sharey=True, squeeze=False)
    for ax, key, label in zip(axes[0], keys, labels):
        for row in intervals[intervals["metric"] == key].itertuples():
            y = positions[row.arm] + 0.22 * (folds.index(row.fold) - (len(folds) - 1) / 2)
            ax.errorbar(100 * row.difference, y, fmt="o", color=colors[row.fold], capsize=3, label=f"run {row.fold}",
                        xerr=[[100 * (row.difference - row.low)], [100 * (row.high - row.difference)]])
        ax.axvline(0, color="0.3", lw=1)
        ax.set_xlabel(f"{label}: arm − {reference} (points)")
    axes[0, 0].set_yticks(list(positions.values()), list(positions))
    handles = dict(zip(*reversed(axes[0, 0].get_legend_handles_labels())))
    axes[0, -1].legend(handles.values(), handles.keys(), loc="lower right")
    return fig


def _curve_label(key: str) -> str:
    """A history key as a label: ``val_defect_miou`` -> ``validation defect mIoU``."""
    return key.replace("val_", "validation ").replace("_", " ").replace("miou", "mIoU").replace("iou", "IoU")


def plot_arm_curves(arms: dict, keys: Sequence[str] = ("val_miou", "val_defect_miou", "val_binary_defect_iou"),
                    highlight: Sequence[str] = ()):
    """Validation curves of every arm, each the mean over its runs per epoch, one panel per key;
    the ``highlight`` arms are drawn thicker."""

    fig, axes = plt.subplots(1, len(keys), figsize=(11, 5.4), sharex=True, squeeze=False)
    colors = dict(zip(arms, sns.color_palette("tab10", len(arms))))
    for ax, key in zip(axes[0], keys):
        for arm, records in arms.items():
            n = min(len(r["history"]) for r in records)
            curve = np.mean([[e[key] for e in r["history"][:n]] for r in records], axis=0)
            ax.plot(range(1, n + 1), 100 * curve, color=colors[arm], lw=2.6 if arm in highlight else 1.0, label=arm)
        ax.set_xlabel("epoch")
        ax.set_title(_curve_label(key))
    axes[0, 0].set_ylabel("percent")
    rows = -(-len(arms) // 5)
    fig.tight_layout(rect=(0, 0.08 * rows, 1, 1))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=5, bbox_to_anchor=(0.5, 0))
    return fig


def plot_predictions(rows: Sequence[tuple[str, object]], predictors: dict, classes: Sequence[str] = CLASSES):
    """Image, truth and each predictor's prediction, one row per ``(class name, sample)``.

    ``predictors`` maps a label to a :class:`defectlib.inference.Predictor`;
    each prediction is titled with its IoU for the row's class on that image.
    """

    ncols = 2 + len(predictors)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.6 * ncols, 2.6 * len(rows)), squeeze=False)
    for ax_row, (name, sample) in zip(axes, rows):
        image, truth = sample.load(len(classes))
        panels = [(image, name), (overlay(image, truth, outline=2, classes=classes), "truth")]
        for label, predictor in predictors.items():
            pred, _ = predictor.predict_array(image)
            cm = confusion_matrix(pred, truth, len(classes))
            iou = class_iou_per_image(cm[None], list(classes).index(name))[0]
            panels.append((overlay(image, pred.astype(np.uint8), outline=2, classes=classes),
                           f"{label}: {100 * iou:.0f} %"))
        for ax, (panel, title) in zip(ax_row, panels):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None)
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_ladder(ladder, keys: Sequence[str] = ("miou", "defect_miou"),
                labels: Sequence[str] = ("test mIoU (6 classes)", "test defect mIoU (5 classes)")):
    """The ladder of :func:`defectlib.report.ladder_table`: per recipe, the out-of-fold value with its
    95 % interval, one panel per metric, recipes in order from left to right."""

    fig, axes = plt.subplots(1, len(keys), figsize=(11, 4.2), squeeze=False)
    x = np.arange(len(ladder))
    for ax, key, label in zip(axes[0], keys, labels):
        value = 100 * ladder[key].to_numpy(float)
        low, high = 100 * ladder[f"{key} low"].to_numpy(float), 100 * ladder[f"{key} high"].to_numpy(float)
        ax.errorbar(x, value, yerr=[value - low, high - value], fmt="o-", capsize=4, color="#4c72b0")
        for xi, v in zip(x, value):
            ax.annotate(f"{v:.1f}", (xi, v), textcoords="offset points", xytext=(8, -4))
        ax.set_xticks(x, list(ladder.index), rotation=15)
        ax.set_ylabel(f"{label} (%)")
        ax.set_xlim(-0.4, len(ladder) - 0.4)
    fig.tight_layout()
    return fig


def plot_budget_curves(runs_by_budget: dict[int, dict[str, Sequence[dict]]], key: str = "val_miou"):
    """Validation curves of the same arms trained at several budgets, one panel per fold (first seeds:
    seed = fold): colour is the arm, line style the budget, the x axis the optimizer step, and each run's
    chosen checkpoint (its best validation) is ringed.

    ``runs_by_budget`` maps a budget in steps to ``{arm: records}`` as for
    :func:`defectlib.report.budget_table`.
    """

    runs = [(steps, arm, r) for steps, arms in sorted(runs_by_budget.items()) for arm, records in arms.items()
            for r in records if r["seed"] == r["fold"]]
    folds = sorted({r["fold"] for _, _, r in runs})
    arms = list(dict.fromkeys(arm for _, arm, _ in runs))
    styles = dict(zip(sorted(runs_by_budget), ("-", "--", ":", "-.")))
    fig, axes = plt.subplots(1, max(len(folds), 1), figsize=(11, 4.4), sharey=True, squeeze=False)
    panel, handles = dict(zip(folds, axes[0])), {}
    for steps, arm, r in runs:
        ax, color = panel[r["fold"]], f"C{arms.index(arm)}"
        x, y = [e["step"] for e in r["history"]], [100 * e[key] for e in r["history"]]
        handles[(steps, arms.index(arm))], = ax.plot(x, y, styles[steps], color=color, lw=1.4,
                                                     label=f"{arm}, {steps} steps")
        best = int(np.argmax(y))   # training keeps the first best (a strict rise)
        ax.plot(x[best], y[best], "o", mfc="none", mec=color, ms=9)
    for fold, ax in panel.items():
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("optimizer step")
    axes[0, 0].set_ylabel(_curve_label(key) + " (%)")
    handles = {h.get_label(): h for _, h in sorted(handles.items())}   # a legend column per budget
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=max(len(styles), 1), bbox_to_anchor=(0.5, 0))
    return fig


#: A defect covering less than this share of its image is shown zoomed (see :func:`zoom_box`).
ZOOM_BELOW = 0.02


def zoom_box(truth: np.ndarray, pred: np.ndarray | None = None, below: float = ZOOM_BELOW,
             min_side: int = 64) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of a view around a small defect, or ``None`` when there is nothing
    to zoom: the true defect covers at least ``below`` of the image, or no pixel is a defect.

    The view is the bounding box of the true defect (of the predicted one on a defect-free image), grown
    to twice its size and to at least ``min_side`` pixels, inside the image.
    """
    region = truth > 0
    if not region.any() and pred is not None:
        region = pred > 0
    if not region.any() or (truth > 0).mean() >= below:
        return None
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    box = []
    for first, last, size in ((rows[0], rows[-1], truth.shape[0]), (cols[0], cols[-1], truth.shape[1])):
        side = min(size, max(min_side, 2 * (last - first + 1)))
        start = int(np.clip((first + last + 1) // 2 - side // 2, 0, size - side))
        box += [start, start + side]
    return tuple(box)


def _view(image: np.ndarray, box: tuple[int, int, int, int] | None) -> tuple[tuple[slice, slice], str]:
    """The slices of ``box`` (the whole image when ``None``) and the suffix its panel titles get."""
    top, bottom, left, right = box or (0, image.shape[0], 0, image.shape[1])
    return (slice(top, bottom), slice(left, right)), " (zoomed)" if box else ""


def _draw_box(ax, box: tuple[int, int, int, int]) -> None:
    top, bottom, left, right = box
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                       edgecolor="white", linewidth=1.5, linestyle="--"))


def add_error_legend(fig, y: float = 0.0) -> None:
    """The one legend of :func:`defectlib.overlays.error_map`'s colours, below the figure's panels."""
    handles = [Patch(facecolor=np.asarray(ERROR_COLORS[k]) / 255, edgecolor="0.5", label=ERROR_LABELS[k])
               for k in ("found", "false", "missed")]
    fig.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, y), frameon=False,
               title="error map", fontsize=FONT_PT - 2, title_fontsize=FONT_PT - 2)


def plot_cases(cases: Sequence[dict], classes: Sequence[str] = CLASSES, width: float = 11.0):
    """One row per case: the image, its truth, each prediction, and the error map of the first prediction.

    A case is ``{"title": str, "image": (H, W) uint8, "truth": (H, W), "predictions": {label: (H, W)}}``,
    optionally with ``"box": (top, bottom, left, right)`` to zoom into; without one, a defect under
    :data:`ZOOM_BELOW` of the image is zoomed (:func:`zoom_box`). A zoomed row shows the whole image with
    the view marked, then the view. Each prediction is titled with its IoU of the image's true defect
    class (its count of defect pixels on a defect-free image). The error map's legend is drawn once, below.
    """

    ncols = 3 + max(len(c["predictions"]) for c in cases)
    side = width / ncols
    fig, axes = plt.subplots(len(cases), ncols, figsize=(width, side * len(cases) + 1.1), squeeze=False)
    for ax_row, case in zip(axes, cases):
        image, truth = case["image"], case["truth"].astype(np.uint8)
        first = next(iter(case["predictions"].values())).astype(np.uint8)
        box = case.get("box") or zoom_box(truth, first)
        view, zoomed = _view(image, box)
        present = np.bincount(truth.ravel(), minlength=len(classes))[1:]
        true_class = 1 + int(present.argmax()) if present.sum() else 0
        panels = [(image, case["title"]), (overlay(image, truth, outline=1, classes=classes)[view], f"truth{zoomed}")]
        for label, pred in case["predictions"].items():
            pred = pred.astype(np.uint8)
            if true_class:
                cm = confusion_matrix(pred, truth, len(classes))
                note = f"IoU {100 * class_iou_per_image(cm[None], true_class)[0]:.0f} %"
            else:
                note = f"{int((pred > 0).sum())} defect px"
            panels.append((overlay(image, pred, outline=1, classes=classes)[view], f"{label}: {note}"))
        panels.append((error_map(truth, first)[view], f"errors{zoomed}"))
        for k, (ax, (panel, title)) in enumerate(zip(ax_row, panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=FONT_PT - 2)
            ax.axis("off")
            if k == 0 and box:
                _draw_box(ax, box)
        for ax in ax_row[len(panels):]:
            ax.axis("off")
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    add_error_legend(fig)
    return fig


def plot_class_strip(columns: Sequence[dict], classes: Sequence[str] = CLASSES, width: float = 11.0):
    """One column per case, three rows: the image, its truth and the prediction.

    A column is ``{"title": str, "image": (H, W) uint8, "truth": (H, W), "pred": (H, W)}``. A defect
    under :data:`ZOOM_BELOW` of its image is zoomed (:func:`zoom_box`): the image row marks the view, the
    truth and prediction rows show it, so that a blowhole of a few pixels stays visible.
    """

    fig, axes = plt.subplots(3, len(columns), figsize=(width, 0.62 * width), squeeze=False)
    for k, column in enumerate(columns):
        image, truth, pred = column["image"], column["truth"].astype(np.uint8), column["pred"].astype(np.uint8)
        box = zoom_box(truth, pred)
        view, zoomed = _view(image, box)
        panels = [(image, column["title"]), (overlay(image, truth, outline=1, classes=classes)[view], f"truth{zoomed}"),
                  (overlay(image, pred, outline=1, classes=classes)[view], f"prediction{zoomed}")]
        for row, (panel, title) in enumerate(panels):
            ax = axes[row, k]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=FONT_PT - 2)
            ax.axis("off")
            if row == 0 and box:
                _draw_box(ax, box)
    fig.tight_layout()
    return fig
