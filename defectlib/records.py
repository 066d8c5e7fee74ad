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
from .paths import project_root, results_dir


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


def checkpoint_file(record: dict, results_root: Path | None = None) -> Path:
    """Where the run's checkpoint lies (it may be absent: checkpoints are not all committed)."""
    root = Path(results_root or results_dir(record["config"].get("profile")))
    return root / record["checkpoint"]["path"]


def split_file(record: dict) -> Path:
    """The fold partition the run was made on, as an absolute path."""
    path = Path(record["split_file"])
    return path if path.is_absolute() else project_root() / path
