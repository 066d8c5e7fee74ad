"""Runs and their records: configs resolved, runs reused or trained, records written.

Introduced in chapter 03 (baseline).

A *run* is a resolved config plus a fold and a seed.  This module owns it:
it resolves the config against the schema (:mod:`defectlib.config`), hashes
the resolved config, returns a stored record with the same hash, fold and
seed, or builds the data, model and loss, calls
:func:`defectlib.training.fit`, evaluates the best weights and writes the
record.  The record holds the resolved config and its hash, fold, seed, git
commit, package versions, device and precision, wall time, per-epoch history,
best-epoch validation metrics, test metrics, per-image counts of validation
and test, and the checkpoint path with its SHA-256.

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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, parse_config, read_yaml, set_dotted
from .data import DatasetError, project_root, sha256_file
from .splits import write_json_atomic as write_json

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
        raise ConfigError(f"{ENV_PROFILE}={name!r}; expected one of {PROFILES}")
    return name


def results_dir(profile: str | None = None) -> Path:
    """Where records and checkpoints go: ``results/``, or a temp dir for smoke."""
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS])
    if (profile or current_profile()) == "smoke":
        return Path(tempfile.gettempdir()) / "defectlib-smoke"
    return project_root() / "results"


# ----------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------

def _dataset_classes(data: dict, where: str) -> tuple[list[str], str]:
    """Class names and mask format of the config's dataset."""
    from .classes import CLASSES
    from .data import describe_dataset

    if data["dataset"] == "magnetic_tile":
        return list(CLASSES), "binary"
    if not data["root"]:
        raise ConfigError(f"{where}: data.root: a folder dataset needs its folder")
    spec = describe_dataset(data["root"], data["classes"], data["mask_format"])
    return list(spec.classes), spec.mask_format


def resolve_config(raw: dict, profile: str | None = None, overrides: dict[str, Any] | None = None,
                   where: str = "<config>") -> dict:
    """Validate a config mapping, apply the profile's and the given dotted-key overrides, fill defaults.

    Raises:
        ConfigError: unknown key, wrong type or value (naming ``where`` and the key).
    """
    raw = copy.deepcopy(raw)
    profile = profile or raw.pop("profile", None) or current_profile()
    if profile not in PROFILES:
        raise ConfigError(f"{where}: profile {profile!r}; expected one of {PROFILES}")
    raw.pop("profile", None)
    for key, value in {**(SMOKE_OVERRIDES if profile == "smoke" else {}), **(overrides or {})}.items():
        set_dotted(raw, key, value)
    cfg = parse_config(raw, where)
    cfg["data"]["classes"], cfg["data"]["mask_format"] = _dataset_classes(cfg["data"], where)
    from .losses import build_loss

    try:  # check the loss's name and parameters now, not after the data are loaded
        build_loss(cfg["loss"]["name"], None, cfg["loss"]["params"])
    except ValueError as exc:
        raise ConfigError(f"{where}: loss: {exc}") from exc
    from .transforms import parse_augment

    try:
        parse_augment(cfg["data"]["augment"])
    except ValueError as exc:
        raise ConfigError(f"{where}: data.augment: {exc}") from exc
    cfg["profile"] = profile
    return cfg


def on_partition(cfg: dict, partition: str) -> dict:
    """``cfg`` on another fold partition of its dataset: ``grouped`` (region groups) or ``random`` (image level).

    The random partition exists to measure, once, how much a random split
    flatters a recipe (chapter 6). Its config gets ``-random`` appended to
    its name, so its runs are stored and named apart; ``grouped`` returns
    ``cfg`` unchanged when it already is on the grouped folds.
    """
    if partition == cfg["data"]["split"]:
        return cfg
    name = cfg["name"].removesuffix("-random") + ("-random" if partition == "random" else "")
    return resolve_config(cfg, cfg.get("profile"), {"data.split": partition, "name": name})


def _config_path(path: str | Path) -> Path:
    """A config path as given, or relative to the project root when it is not found as given."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (project_root() / path).is_file():
        return project_root() / path
    return path


def load_config(path: str | Path, profile: str | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Read, validate and resolve a YAML config (relative paths also from the project root).

    Raises:
        ConfigError: missing file, malformed YAML (with line), or a config that does not fit the schema.
    """
    path = _config_path(path)
    return resolve_config(read_yaml(path), profile, overrides, where=str(path))


def load_family(path: str | Path, profile: str | None = None) -> dict[str, dict]:
    """The arms of an experiment family: ``{arm: resolved config}``.

    A family YAML names a ``base`` config and its ``arms``.  An arm is either
    the path of another config, used as it is (so that its stored runs are
    reused; e.g. the baseline as the reference arm), or a mapping of
    dotted-key overrides of the base, whose config is named
    ``<family>-<arm>``::

        family: loss
        base: configs/baseline.yaml
        arms:
          ce: configs/baseline.yaml
          dice: {loss.name: dice}

    Raises:
        ConfigError: a malformed family file or arm (naming the file and the arm).
    """
    path = _config_path(path)
    raw = read_yaml(path)
    unknown = set(raw) - {"family", "description", "base", "arms"}
    if unknown or not isinstance(raw.get("arms"), dict) or not isinstance(raw.get("base"), str):
        raise ConfigError(f"{path}: a family needs 'family', 'base' (a config path) and 'arms' (a mapping)"
                          + (f"; unknown key(s) {sorted(unknown)}" if unknown else ""))
    base = read_yaml(_config_path(raw["base"]))
    arms = {}
    for arm, spec in raw["arms"].items():
        where = f"{path}: arms.{arm}"
        if isinstance(spec, str):
            arms[arm] = load_config(spec, profile)
        elif isinstance(spec, dict):
            arm_raw = copy.deepcopy(base)
            arm_raw["name"] = f"{raw.get('family', path.stem)}-{arm}"
            for key, value in spec.items():   # part of the arm's config, so the smoke profile still shrinks it
                set_dotted(arm_raw, key, value)
            arms[arm] = resolve_config(arm_raw, profile, where=where)
        else:
            raise ConfigError(f"{where}: expected a config path or a mapping of overrides, got {spec!r}")
    return arms


def config_hash(cfg: dict) -> str:
    """Short SHA-256 of the *resolved* config's canonical JSON (every default included)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def run_id(cfg: dict, fold: int, seed: int) -> str:
    """``<name>-<hash>-fold<k>-seed<s>``: the file stem of a run's record and checkpoint."""
    return f"{cfg['name']}-{config_hash(cfg)}-fold{fold}-seed{seed}"


def record_path(cfg: dict, fold: int, seed: int, root: Path | None = None) -> Path:
    return Path(root or results_dir(cfg.get("profile"))) / "runs" / f"{run_id(cfg, fold, seed)}.json"


def checkpoint_path(cfg: dict, fold: int, seed: int, root: Path | None = None) -> Path:
    return Path(root or results_dir(cfg.get("profile"))) / "checkpoints" / f"{run_id(cfg, fold, seed)}.pt"


# ----------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------

def git_commit() -> str | None:
    """Commit of the project checkout, with ``+dirty`` if tracked files differ from it."""
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------
# Data of a run
# ----------------------------------------------------------------------------

def dataset_samples(cfg: dict, notify: bool = True) -> list:
    """All samples of the config's dataset.

    Magnetic Tile is found by :func:`defectlib.data.find_dataset` (downloaded
    in the full profile if it is nowhere).  Only the smoke profile falls back
    to the committed ``data/sample``, and says so.

    Raises:
        FileNotFoundError: the dataset is nowhere (full profile), naming where it looked.
        DatasetError: a folder that does not hold a valid dataset.
    """
    from .data import describe_dataset, find_dataset, list_dataset, list_samples, sample_dataset

    data = cfg["data"]
    if data["dataset"] == "folder":
        return list_dataset(describe_dataset(data["root"], data["classes"], data["mask_format"]))
    smoke = cfg.get("profile") == "smoke"
    try:
        root = find_dataset(data["root"], download=not smoke)
    except FileNotFoundError:
        if not smoke or data["root"]:
            raise
        root = sample_dataset()
        if notify:
            print(f"smoke profile: Magnetic Tile not found, using the committed sample in {root}", file=sys.stderr)
    return list_samples(root)


def split_data(cfg: dict, samples: list, root: Path | None = None) -> tuple[dict, Path]:
    """The fold partition of the config's dataset and its path.

    Magnetic Tile uses the committed partition (``data.split``).  A folder
    dataset uses its ``splits.json`` when present; otherwise a seeded,
    image-level 5-fold partition is written under ``<results>/splits/``.
    """
    from .splits import load_split, make_random_folds, split_path

    if cfg["data"]["dataset"] == "magnetic_tile":
        path = split_path(cfg["data"]["split"])
        return load_split(path), path
    own = Path(cfg["data"]["root"]) / "splits.json"
    if own.is_file():
        return load_split(own), own
    names = sorted(s.name for s in samples)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    path = Path(root or results_dir(cfg.get("profile"))) / "splits" / f"{Path(cfg['data']['root']).name}-{digest}.json"
    if not path.is_file():
        write_json(path, {"dataset": str(cfg["data"]["root"]),
                                 "method": "random image-level 5-fold partition (no split file in the folder)",
                                 "parameters": {"n_folds": 5, "seed": 0},
                                 "folds": make_random_folds(samples), "groups": {n: n for n in names}})
    return load_split(path), path


def fold_samples(cfg: dict, fold: int, samples: list | None = None, splits_payload: dict | None = None) -> dict[str, list]:
    """Samples of ``train``, ``val`` and ``test`` for run ``fold`` of a config.

    The smoke profile keeps ``data.max_per_category`` images per category and part.
    """
    from .splits import fold_split, select

    samples = samples if samples is not None else dataset_samples(cfg)
    splits_payload = splits_payload or split_data(cfg, samples)[0]
    limit = cfg["data"]["max_per_category"]
    out = {}
    for part, names in fold_split(fold, splits_payload).items():
        chosen = select(samples, names)
        if limit:
            cats = dict.fromkeys(s.category for s in chosen)
            chosen = [s for c in cats for s in [x for x in chosen if x.category == c][:limit]]
        out[part] = chosen
    return out


def make_dataset(cfg: dict, samples: list, train: bool = False, progress: bool = False, desc: str = "decode"):
    """A :class:`~defectlib.data.SegmentationDataset` as the config's model sees it.

    ``train=True``: the config's augmentation, no native masks; else no
    augmentation and native masks kept (for evaluation).
    """
    from .data import SegmentationDataset
    from .models import encoder_normalization
    from .transforms import build_augmentation

    size = cfg["data"]["image_size"]
    dataset = SegmentationDataset(samples, size, encoder_normalization(cfg["model"]["encoder"]),
                                  num_classes=len(cfg["data"]["classes"]), keep_native=not train,
                                  progress=progress, desc=desc)
    if train:  # copy-paste cuts its defects from the decoded training images
        dataset.transform = build_augmentation(cfg["data"]["augment"], size, images=dataset.images,
                                               masks=dataset.masks)
    return dataset


def build_loss_for(cfg: dict, pixel_counts=None):
    """The config's loss; class weights come from the training pixel counts when asked for."""
    from .losses import build_loss, class_weights_from_frequencies

    lc = cfg["loss"]
    weights = class_weights_from_frequencies(pixel_counts, lc["weight_power"]) if lc["class_weights"] else None
    return build_loss(lc["name"], weights, lc["params"]), weights


# ----------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------

def read_record(cfg: dict, fold: int, seed: int, root: Path | None = None) -> dict | None:
    """The stored record of a config, fold and seed, or None."""
    path = record_path(cfg, fold, seed, root)
    return json.loads(path.read_text()) if path.is_file() else None


def train_run(cfg: dict, fold: int = 0, seed: int | None = None, progress: bool = True,
              results_root: Path | None = None, stop_after_epoch: int | None = None) -> dict:
    """Train one run, write its record and best checkpoint, and return the record.

    Resumes from ``<results>/work/<run id>/last.pt`` when present; a failed run
    leaves no empty folders.

    Args:
        cfg: resolved config (see :func:`load_config`).
        fold: test fold ``k`` (validation ``k + 1 mod 5``).
        seed: the run's seed (default: the fold).
        progress: show tqdm bars.
        results_root: override of the results directory.
        stop_after_epoch: stop (without a record) after this epoch, as if killed; used to test resuming.

    Under ``torchrun`` (see :mod:`defectlib.distributed`) every process
    trains its share of each epoch; rank 0 validates, evaluates and writes
    the checkpoint and the record (with ``world_size``), which every rank returns.
    """
    import torch
    from torch.utils.data import DataLoader

    from . import distributed
    from .models import model_from_config, resolve_precision, save_checkpoint
    from .training import DefectBalancedSampler, Schedule, evaluate, fit, set_seed

    ctx = distributed.init()
    seed = fold if seed is None else seed
    t_start = time.time()
    commit = git_commit()  # the code that trains, even if the checkout changes during the run
    root = Path(results_root or results_dir(cfg.get("profile")))
    rid = run_id(cfg, fold, seed)
    tc, classes = cfg["train"], cfg["data"]["classes"]
    if tc["batch_size"] % ctx.world_size:
        raise ValueError(f"train.batch_size {tc['batch_size']} is not a multiple of the {ctx.world_size} processes")
    precision = resolve_precision(tc["precision"], ctx.device.type)
    set_seed(seed, distributed.threads_per_process(ctx, tc["threads"]))
    progress = progress and ctx.is_main

    if not ctx.is_main:
        distributed.barrier(ctx)   # rank 0 first: it may download the dataset or write a missing partition
    samples = dataset_samples(cfg, notify=ctx.is_main)
    payload, split_file = split_data(cfg, samples, root)
    if ctx.is_main:
        distributed.barrier(ctx)
    parts = fold_samples(cfg, fold, samples, payload)
    for part, chosen in parts.items():
        if not chosen:
            raise DatasetError([f"fold {fold}: the {part} part holds no image"], "Empty split")
    t_data = time.time()
    train_ds = make_dataset(cfg, parts["train"], train=True, progress=progress, desc="decode train")
    val_ds = test_ds = None
    if ctx.is_main:
        val_ds = make_dataset(cfg, parts["val"], progress=progress, desc="decode val")
        if cfg["evaluate_test"]:
            test_ds = make_dataset(cfg, parts["test"], progress=progress, desc="decode test")
    data_seconds = time.time() - t_data
    sampler = DefectBalancedSampler(train_ds.has_defect, cfg["data"]["free_per_epoch"], seed,
                                    ctx.rank, ctx.world_size)
    loader = DataLoader(train_ds, batch_size=tc["batch_size"] // ctx.world_size, sampler=sampler)
    loss_fn, weights = build_loss_for(cfg, train_ds.pixel_counts)
    loss_fn = loss_fn.to(ctx.device)
    model = model_from_config(cfg)
    o = cfg["optimizer"]
    schedule = Schedule(tc["epochs"], o["lr"], o["weight_decay"], o["warmup_fraction"], tc["patience"])

    work = root / "work" / rid
    created = not work.exists()
    if ctx.is_main:
        work.mkdir(parents=True, exist_ok=True)
    distributed.barrier(ctx)
    try:
        result = fit(model, loss_fn, loader, val_ds, schedule, classes, seed=seed, precision=precision,
                     channels_last=tc["channels_last"], work_dir=work, progress=progress,
                     stop_after_epoch=stop_after_epoch, ctx=ctx)
    except BaseException:
        if ctx.is_main and created and work.is_dir() and not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)
        raise
    if result is None:
        return {}
    if not ctx.is_main:
        return distributed.broadcast(None, ctx)
    model.load_state_dict(result.best_state)
    from .metrics import SegmentationMeter

    evals = {}
    for part, ds in (("val", val_ds), ("test", test_ds)):
        if ds is None:
            continue
        meter = SegmentationMeter(classes)
        t0 = time.time()
        metrics = evaluate(model, ds, classes, precision=precision, channels_last=tc["channels_last"],
                           progress=progress, desc=part, meter=meter)
        evals[part] = (metrics, meter.per_image_table(), time.time() - t0)
    ckpt = checkpoint_path(cfg, fold, seed, root)
    save_checkpoint(ckpt, model.to(memory_format=torch.contiguous_format), cfg, fold=fold, seed=seed,
                    epoch=result.best_epoch)
    record = {
        "run_id": rid,
        "config": cfg,
        "config_hash": config_hash(cfg),
        "fold": fold,
        "seed": seed,
        "world_size": ctx.world_size,
        "git_commit": commit,
        "environment": environment(),
        "precision": precision,
        "wall_seconds": time.time() - t_start,
        "data_seconds": data_seconds,
        "train_seconds": result.train_seconds,
        "val_seconds": sum(e["val_seconds"] for e in result.history),
        "train_images_per_second": result.train_images / max(result.train_seconds, 1e-9),
        "split_file": os.path.relpath(split_file, project_root()) if split_file.is_relative_to(project_root()) else str(split_file),
        "split_sizes": {k: len(v) for k, v in parts.items()},
        "class_weights": weights.tolist() if weights is not None else None,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "val": evals["val"][0],
        "test": evals["test"][0] if "test" in evals else None,
        "test_seconds": evals["test"][2] if "test" in evals else None,
        "per_image": {part: table for part, (_, table, _) in evals.items()},
        "checkpoint": {"path": os.path.relpath(ckpt, root), "sha256": sha256_file(ckpt)},
    }
    write_json(record_path(cfg, fold, seed, root), record)
    shutil.rmtree(work, ignore_errors=True)
    return distributed.broadcast(record, ctx)


def get_run(config: str | Path | dict, fold: int = 0, seed: int | None = None, *, retrain: bool = False,
            progress: bool = True, overrides: dict[str, Any] | None = None, results_root: Path | None = None) -> dict:
    """The record of ``config`` on ``fold`` with ``seed`` (default: the fold): stored if it exists, else trained now.

    Args:
        config: path to a YAML config, or a config dict (resolved or not).
        fold: the test fold.
        seed: the run's seed.
        retrain: ignore a stored record.
        overrides: dotted-key overrides (e.g. ``{"train.epochs": 3}``).
    """
    if not isinstance(config, dict):
        cfg = load_config(config, overrides=overrides)
    else:
        cfg = resolve_config(config, config.get("profile"), overrides)
    seed = fold if seed is None else seed
    if not retrain and (record := read_record(cfg, fold, seed, results_root)) is not None:
        return record
    return train_run(cfg, fold, seed, progress=progress, results_root=results_root)


def restore_checkpoint(record: dict, *, progress: bool = True, results_root: Path | None = None) -> Path:
    """Train a stored run again to get back its checkpoint, which is not committed.

    Training is deterministic for a config, fold and seed on one kind of
    machine, so the same run gives the same weights: the new checkpoint is
    kept only when its SHA-256 is the record's, and the stored record is
    left as it is. Costs a full training run.

    Raises:
        ValueError: the retrained weights differ from the record's (another
            machine or library version); nothing is kept.
    """
    root = Path(results_root or results_dir(record["config"].get("profile")))
    target = root / record["checkpoint"]["path"]
    if target.is_file() and sha256_file(target) == record["checkpoint"]["sha256"]:
        return target
    with tempfile.TemporaryDirectory(prefix="defectlib-restore-") as tmp:
        again = train_run(record["config"], record["fold"], record["seed"], progress=progress, results_root=Path(tmp))
        if again["checkpoint"]["sha256"] != record["checkpoint"]["sha256"]:
            raise ValueError(f"run {record['run_id']}: retrained weights differ from the record's (SHA-256 "
                             f"{again['checkpoint']['sha256'][:12]}... vs {record['checkpoint']['sha256'][:12]}...); "
                             "the checkpoint cannot be restored on this machine")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / again["checkpoint"]["path"], target)
    return target


def evaluation_path(record: dict, split: str, tta: str, root: Path | None = None) -> Path:
    """Where :func:`get_evaluation` keeps a run's evaluation: ``<results>/evals/<run id>-<split>-tta-<mode>.json``."""
    root = Path(root or results_dir(record["config"].get("profile")))
    return root / "evals" / f"{record['run_id']}-{split}-tta-{tta}.json"


def _run_checkpoint(record: dict, results_root: Path | None, purpose: str, restore: bool = False) -> tuple[Path, str]:
    """A run's checkpoint file and its SHA-256, checked against the record.

    With ``restore``, a missing checkpoint is first trained again (:func:`restore_checkpoint`).

    Raises:
        FileNotFoundError: the checkpoint is not in ``<results>/checkpoints`` (checkpoints are
            local; train the run again with ``--retrain``).
        ValueError: the file is not the checkpoint the record names (its SHA-256 differs).
    """
    root = Path(results_root or results_dir(record["config"].get("profile")))
    ckpt = root / record["checkpoint"]["path"]
    if restore and not ckpt.is_file():
        restore_checkpoint(record, results_root=root)
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint of run {record['run_id']} not found; "
                                f"train the run again with --retrain to {purpose}")
    digest = sha256_file(ckpt)
    if digest != record["checkpoint"]["sha256"]:
        raise ValueError(f"{ckpt}: SHA-256 {digest[:12]}... differs from the record's; not the run's checkpoint")
    return ckpt, digest


def get_evaluation(record: dict, split: str = "val", tta: str = "flips", *, progress: bool = True,
                   results_root: Path | None = None) -> dict:
    """A run's checkpoint evaluated again on its fold's ``split`` with test-time augmentation ``tta``.

    Stored, like run records, and returned from the store when present; the
    result holds ``metrics`` and the ``per_image`` table of the split (the
    shape of a record's ``val``/``test`` and ``per_image`` entries), with the
    checkpoint's SHA-256.

    Raises:
        FileNotFoundError: the run's checkpoint is not in ``<results>/checkpoints``
            (checkpoints are local; train the run again with ``--retrain``).
        ValueError: the checkpoint is not the one the record names (its SHA-256 differs).
    """
    from .metrics import SegmentationMeter
    from .models import load_checkpoint, prepare
    from .training import evaluate

    path = evaluation_path(record, split, tta, results_root)
    if path.is_file():
        return json.loads(path.read_text())
    ckpt, digest = _run_checkpoint(record, results_root, f"evaluate it with tta={tta}")
    t0 = time.time()
    model, cfg = load_checkpoint(ckpt)
    chosen = fold_samples(cfg, record["fold"])[split]
    dataset = make_dataset(cfg, chosen, progress=progress, desc=f"decode {split}")
    meter = SegmentationMeter(cfg["data"]["classes"])
    metrics = evaluate(prepare(model, cfg["train"]["channels_last"]), dataset, cfg["data"]["classes"],
                       precision=record["precision"], channels_last=cfg["train"]["channels_last"],
                       progress=progress, desc=f"{split}, tta {tta}", meter=meter, tta=tta)
    result = {"run_id": record["run_id"], "fold": record["fold"], "split": split, "tta": tta,
              "checkpoint_sha256": digest, "git_commit": git_commit(), "seconds": time.time() - t0,
              "metrics": metrics, "per_image": meter.per_image_table()}
    write_json(path, result)
    return result


def predictions_path(record: dict, split: str, tta: str, root: Path | None = None) -> Path:
    """Where :func:`get_predictions` keeps a run's masks: ``<results>/predictions/<run id>-<split>-tta-<mode>.npz``."""
    root = Path(root or results_dir(record["config"].get("profile")))
    return root / "predictions" / f"{record['run_id']}-{split}-tta-{tta}.npz"


def get_predictions(record: dict, split: str = "test", tta: str = "none", *, progress: bool = True,
                    restore: bool = False, results_root: Path | None = None) -> dict[str, np.ndarray]:
    """The class-index masks a run's checkpoint predicts for every image of its fold's ``split``, at native size.

    Stored, like evaluations, in one compressed ``.npz`` per run, split and
    test-time augmentation, so that a chapter can show a run's predictions
    after its checkpoint (which is not committed) is gone. Returns
    ``{image name: mask (H, W) uint8}``.

    With ``restore``, a run whose checkpoint is gone is trained again to
    get it back (:func:`restore_checkpoint`, a full training run).

    Raises:
        FileNotFoundError, ValueError: as :func:`get_evaluation`, when the masks must be computed.
    """
    from tqdm.auto import tqdm

    from .data import read_image
    from .inference import Predictor

    path = predictions_path(record, split, tta, results_root)
    if not path.is_file():
        ckpt, digest = _run_checkpoint(record, results_root, f"predict its {split} images with tta={tta}", restore)
        predictor = Predictor(ckpt, precision=record["precision"], max_pixels=None, tta=tta)
        chosen = fold_samples(predictor.config, record["fold"])[split]
        masks = {s.name: predictor.predict_array(read_image(s.image, None))[0]
                 for s in tqdm(chosen, desc=f"predict {split}, tta {tta}", disable=not progress)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, checkpoint_sha256=np.array(digest), names=np.array(list(masks)),
                            **{f"mask{k}": m for k, m in enumerate(masks.values())})
        os.replace(tmp, path)
    with np.load(path) as stored:
        return {str(name): stored[f"mask{k}"] for k, name in enumerate(stored["names"])}


def record_with_tta(record: dict, tta: str = "flips", splits: tuple[str, ...] = ("val", "test"), *,
                    progress: bool = True, results_root: Path | None = None) -> dict:
    """A copy of a run record whose ``splits`` metrics and per-image tables are those of
    :func:`get_evaluation` with ``tta``; ``tta`` is recorded in the copy. ``tta="none"`` returns the record."""
    if tta == "none":
        return record
    out = {**record, "per_image": dict(record["per_image"]), "tta": tta}
    for split in splits:
        evaluation = get_evaluation(record, split, tta, progress=progress, results_root=results_root)
        out[split] = evaluation["metrics"]
        out["per_image"][split] = evaluation["per_image"]
    return out


#: How an option of :func:`tta_options` names a test-time augmentation mode.
TTA_LABELS = {"flips": "flip TTA"}


def tta_options(arms: dict[str, list[dict]], modes: tuple[str, ...] = ("flips",), splits: tuple[str, ...] = ("val",),
                **kwargs) -> dict[str, list[dict]]:
    """The options a selection rule compares when test-time augmentation is a candidate.

    Each arm's records as trained, and for each mode the same records
    re-evaluated on ``splits`` with that augmentation (:func:`record_with_tta`;
    keyword arguments go to it): ``{"long": [...], "long + flip TTA": [...]}``.
    """
    options = {}
    for arm, records in arms.items():
        options[arm] = list(records)
        for mode in modes:
            options[f"{arm} + {TTA_LABELS[mode]}"] = [record_with_tta(r, mode, splits, **kwargs) for r in records]
    return options


def split_option(option: str) -> tuple[str, str]:
    """``(arm, test-time augmentation mode)`` of an option name of :func:`tta_options`."""
    arm, _, label = option.partition(" + ")
    modes = {v: k for k, v in TTA_LABELS.items()}
    if label and label not in modes:
        raise ValueError(f"{option!r}: unknown test-time augmentation {label!r}; known: {sorted(modes)}")
    return arm, modes[label] if label else "none"


def choose_final(candidates: dict[str, list[dict]], modes: tuple[str, ...] = ("flips",), **kwargs) -> dict:
    """Chapter 6's rule, one candidate at a time, on validation only.

    Step 1 picks the trained arm (:func:`defectlib.report.select_arm`); step 2
    compares that arm's runs with and without each test-time augmentation
    (:func:`tta_options`; keyword arguments go to it) under the same rule.
    Returns ``{"arm", "tta", "option", "arms", "tta_options"}``: the chosen arm, its
    test-time augmentation mode, the chosen option's name, and the two ranking tables.
    """
    from . import report

    arms, arm = report.ranking_table(candidates)
    options, option = report.ranking_table(tta_options({arm: candidates[arm]}, modes, **kwargs))
    return {"arm": arm, "tta": split_option(option)[1], "option": option, "arms": arms, "tta_options": options}


def check_winner_config(path: str | Path, arm_cfg: dict) -> str:
    """Check that the committed config at ``path`` is the selected arm: the same resolved config and hash.

    Returns a one-line summary; raises :class:`ConfigError` naming both hashes when they differ.
    """
    committed = load_config(path, arm_cfg.get("profile"))
    want, got = config_hash(arm_cfg), config_hash(committed)
    if got != want:
        raise ConfigError(f"{path}: config hash {got} ({committed['name']}), not the selected arm's {want} "
                          f"({arm_cfg['name']})")
    return f"{path}: {committed['name']}, config hash {got}, the selected arm's"


def load_records(name: str | None = None, root: Path | None = None) -> list[dict]:
    """All stored records (of one config name if given), sorted by file name."""
    folder = Path(root or results_dir()) / "runs"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [r for r in records if name is None or r["config"]["name"] == name]


def report_samples(per_category_smoke: int = 8) -> list:
    """The Magnetic Tile samples for a notebook: all of them in ``full``; in ``smoke``
    the first ``per_category_smoke`` per category (from ``data/sample`` when the
    full dataset is absent, with a note).  Chapters 01 and 02 use it.
    """
    from .classes import CATEGORIES

    profile = current_profile()
    samples = dataset_samples({"data": {"dataset": "magnetic_tile", "root": None}, "profile": profile})
    if profile == "full":
        return samples
    return [s for c in CATEGORIES for s in [x for x in samples if x.category == c][:per_category_smoke]]


def assets_dir() -> Path | None:
    """``assets/`` in the full profile; None in smoke (which writes nothing into the project)."""
    return project_root() / "assets" if current_profile() == "full" else None
