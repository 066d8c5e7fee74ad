"""Configs, profiles and run records.

Introduced in chapter 03 (baseline).

A *run* is a config plus a seed.  Its JSON record holds the resolved config
and its hash, the seed, git commit, package versions, device, wall time,
per-epoch history, best-epoch validation metrics, test metrics where asked,
and the checkpoint path with its SHA-256.  :func:`get_run` returns the stored
record for a config hash and seed, and trains only when there is none.

Profiles (``$DEFECTLIB_PROFILE``): ``full`` (default) writes under
``results/``; ``smoke`` shrinks data, resolution and epochs (see
:data:`SMOKE_OVERRIDES`) and writes only to a temporary directory.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .data import project_root

ENV_PROFILE = "DEFECTLIB_PROFILE"
ENV_RESULTS = "DEFECTLIB_RESULTS_DIR"
PROFILES = ("full", "smoke")

#: Overrides applied to every config in the smoke profile (dotted keys).
SMOKE_OVERRIDES: dict[str, Any] = {
    "data.image_size": 64,
    "data.max_per_category": 3,
    "data.free_per_epoch": 2,
    "train.epochs": 2,
    "train.batch_size": 4,
}


def current_profile() -> str:
    """``full`` or ``smoke``, from ``$DEFECTLIB_PROFILE``."""
    name = os.environ.get(ENV_PROFILE, "full")
    if name not in PROFILES:
        raise ValueError(f"{ENV_PROFILE}={name!r}; expected one of {PROFILES}")
    return name


def results_dir(profile: str | None = None) -> Path:
    """Where records and checkpoints go: ``results/``, or a temp dir for smoke."""
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS])
    if (profile or current_profile()) == "smoke":
        return Path(tempfile.gettempdir()) / "defectlib-smoke"
    return project_root() / "results"


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[leaf] = value


def load_config(path: str | Path, profile: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Read a YAML config, apply profile and explicit dotted-key overrides.

    Raises:
        FileNotFoundError, ValueError: missing file or a config without ``name``.
    """
    path = Path(path)
    if not path.is_file() and not path.is_absolute():
        path = project_root() / path
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError(f"{path}: a config must be a mapping with a 'name'")
    return resolve_config(cfg, profile, overrides)


def resolve_config(cfg: dict, profile: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Copy of ``cfg`` with the profile's and the given overrides applied."""
    cfg = copy.deepcopy(cfg)
    profile = profile or current_profile()
    cfg["profile"] = profile
    for key, value in {**(SMOKE_OVERRIDES if profile == "smoke" else {}), **(overrides or {})}.items():
        _set_dotted(cfg, key, value)
    return cfg


def config_hash(cfg: dict) -> str:
    """Short SHA-256 of the config's canonical JSON (order of keys irrelevant)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def run_id(cfg: dict, seed: int) -> str:
    """``<name>-<hash>-seed<seed>``: the file stem of a run's record and checkpoint."""
    return f"{cfg['name']}-{config_hash(cfg)}-seed{seed}"


def record_path(cfg: dict, seed: int, root: Path | None = None) -> Path:
    return Path(root or results_dir(cfg.get("profile"))) / "runs" / f"{run_id(cfg, seed)}.json"


def checkpoint_path(cfg: dict, seed: int, root: Path | None = None) -> Path:
    return Path(root or results_dir(cfg.get("profile"))) / "checkpoints" / f"{run_id(cfg, seed)}.pt"


def git_commit() -> str | None:
    """Commit of the project checkout, with ``+dirty`` if files differ from it."""
    try:
        root = project_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment() -> dict:
    """Package versions and device of this process."""
    import albumentations
    import numpy
    import segmentation_models_pytorch
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
        "albumentations": albumentations.__version__,
        "numpy": numpy.__version__,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True) + "\n")
    tmp.replace(path)


def read_record(cfg: dict, seed: int, root: Path | None = None) -> dict | None:
    """The stored record of a config and seed, or None."""
    path = record_path(cfg, seed, root)
    return json.loads(path.read_text()) if path.is_file() else None


def get_run(config: str | Path | dict, seed: int = 0, *, retrain: bool = False, progress: bool = True,
            overrides: dict[str, Any] | None = None) -> dict:
    """The record of ``config`` + ``seed``: stored if it exists, else trained now.

    Args:
        config: path to a YAML config, or an already resolved config dict.
        seed: the run's seed.
        retrain: ignore a stored record.
        overrides: dotted-key overrides (e.g. ``{"train.epochs": 3}``).
    """
    from .training import train

    if not isinstance(config, dict):
        cfg = load_config(config, overrides=overrides)
    elif "profile" in config and not overrides:
        cfg = config  # already resolved
    else:
        cfg = resolve_config(config, config.get("profile"), overrides)
    if not retrain and (record := read_record(cfg, seed)) is not None:
        return record
    return train(cfg, seed, progress=progress)


def load_records(name: str | None = None, root: Path | None = None) -> list[dict]:
    """All stored records (of one config name if given), sorted by name and seed."""
    folder = Path(root or results_dir()) / "runs"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [r for r in records if name is None or r["config"]["name"] == name]


def report_samples(per_category_smoke: int = 8) -> list:
    """The dataset's samples for a notebook: all of them in ``full``; in ``smoke``
    the first ``per_category_smoke`` per category (from ``data/sample`` when the
    full dataset is absent).  Chapters 01 and 02 use it.
    """
    from .data import CATEGORIES, find_dataset, list_samples, sample_dataset

    if current_profile() == "full":
        return list_samples(find_dataset())
    try:
        root = find_dataset(download=False)
    except FileNotFoundError:
        root = sample_dataset()
    samples = list_samples(root)
    return [s for c in CATEGORIES for s in [x for x in samples if x.category == c][:per_category_smoke]]


def assets_dir() -> Path | None:
    """``assets/`` in the full profile; None in smoke (which writes nothing into the project)."""
    return project_root() / "assets" if current_profile() == "full" else None
