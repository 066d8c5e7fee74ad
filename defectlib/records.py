"""A typed view of a run record: the accessors notebooks and report helpers read records through.

Introduced in chapter 03 (baseline).

A run record is the JSON file :func:`defectlib.experiments.train_run` writes
(one per config, fold and seed).  Its layout is an API: rather than key
paths scattered over chapters, these functions name what a reader wants
from a record, so a change of layout is a change here.  Pooled records
(:func:`defectlib.stats.pool_records`) answer the split-level accessors too.
"""
from __future__ import annotations

from pathlib import Path

from .metrics import metric_value
from .paths import config_results_dir, project_root


def metric(record: dict, split: str, key: str) -> float:
    """One metric of a split: ``miou``, ``defect_miou``..., or ``IoU <class>`` / ``Dice <class>``."""
    return metric_value(record[split], key)


def class_names(record: dict) -> list[str]:
    """The pixel class names of the record's dataset, background first."""
    return list(record["config"]["data"]["classes"])


def per_image(record: dict, split: str) -> dict:
    """The per-image table of a split: ``names``, ``scores`` and flattened ``confusion`` matrices."""
    return record["per_image"][split]


def curve(record: dict, key: str = "val_miou") -> list[float]:
    """One quantity per epoch of the training history (``train_loss``, ``val_miou``, ``val_defect_miou``...)."""
    return [epoch[key] for epoch in record["history"]]


def convergence(history: list[dict], best_epoch: int | None = None) -> dict:
    """Has validation mIoU flattened by the end of the budget?  From a run's per-epoch (or per-period) history.

    Returns:
        ``last_fifth_gain``: mean validation mIoU over the last fifth of the
        schedule minus its mean over the fifth before (a smoothed slope; near 0
        when the curve has flattened, positive while it still rises);
        ``best_gain_last_fifth``: the best validation mIoU of the whole run minus
        the best before its last fifth (what the last fifth added to the
        checkpoint a run keeps; 0 when no evaluation of the last fifth beat the
        best before it, however the evaluations scatter below it);
        ``best_at``: where the best validation mIoU fell, as a fraction of the
        schedule (1.0: the last evaluation); ``best_step``: its optimizer step
        (None in histories without steps); ``evaluations``: how many there were.
    """
    values = [e["val_miou"] for e in history]
    n = len(values)
    fifth = max(1, n // 5)
    last, before = values[n - fifth:], values[max(0, n - 2 * fifth):n - fifth] or values[:1]
    best = best_epoch if best_epoch is not None else 1 + max(range(n), key=values.__getitem__)
    step = history[best - 1].get("step") if n else None
    best_before = max(values[:n - fifth] or values[:1])
    return {"last_fifth_gain": sum(last) / len(last) - sum(before) / len(before),
            "best_gain_last_fifth": max(values) - best_before, "best_at": best / n,
            "best_step": step, "evaluations": n}


def run_convergence(record: dict) -> dict:
    """:func:`convergence` of a record: stored in records from version 0.3; a statistic a record
    predates is computed from its history."""
    return {**convergence(record["history"], record.get("best_epoch")), **(record.get("convergence") or {})}


def checkpoint_file(record: dict, results_root: Path | None = None) -> Path:
    """Where the run's checkpoint lies (it may be absent: checkpoints are not all committed)."""
    root = Path(results_root or config_results_dir(record["config"]))
    return root / record["checkpoint"]["path"]


def split_file(record: dict) -> Path:
    """The fold partition the run was made on, as an absolute path."""
    path = Path(record["split_file"])
    return path if path.is_absolute() else project_root() / path
