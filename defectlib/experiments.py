"""The run store: runs trained or reused, their records written, checkpoints restored, evaluated and predicted.

Introduced in chapter 03 (baseline).

A *run* is a resolved config (:mod:`defectlib.config`) plus a fold and a
seed.  :func:`get_run` returns the stored record with the same config hash,
fold and seed, or trains the run now (:func:`train_run`: prepare the data,
build model, loss and loader, :func:`defectlib.training.fit`, evaluate the
best weights, write the record).  The record holds the resolved config and
its hash, fold, seed, git commit, package versions, device and precision,
wall time (summed over the processes of a run resumed from ``last.pt``, with the
epoch it resumed from), per-epoch history, best-epoch validation metrics, test metrics,
per-image counts of validation and test, and the checkpoint path with its
SHA-256 (read it through :mod:`defectlib.records`).

A run's checkpoint can be evaluated again (:func:`get_evaluation`, with
test-time augmentation) or its masks predicted (:func:`get_predictions`);
both results are stored like records.  Where records, checkpoints and the
profiles live is :mod:`defectlib.paths`'.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import distributed
from .config import config_hash, load_config, resolve_config
from .data import SegmentationDataset, read_image
from .errors import DatasetError
from .inference import Predictor
from .losses import build_loss, class_weights_from_frequencies
from .metrics import SegmentationMeter
from .models import load_checkpoint, model_from_config, prepare, resolve_precision, run_precision, save_checkpoint
from .paths import config_results_dir, relative_to_project, sha256_file, write_json
from .provenance import environment, git_commit
from .records import checkpoint_file, convergence
from .run_data import dataset_samples, fold_samples, make_dataset, split_data
from .training import CropSampler, DefectBalancedSampler, FitResult, Schedule, evaluate, fit, set_seed


# ----------------------------------------------------------------------------
# Where a run is stored
# ----------------------------------------------------------------------------

def run_id(cfg: dict, fold: int, seed: int) -> str:
    """``<name>-<hash>-fold<k>-seed<s>``: the file stem of a run's record and checkpoint."""
    return f"{cfg['name']}-{config_hash(cfg)}-fold{fold}-seed{seed}"


def record_path(cfg: dict, fold: int, seed: int, root: Path | None = None) -> Path:
    """``<results>/runs/<run id>.json``."""
    return Path(root or config_results_dir(cfg)) / "runs" / f"{run_id(cfg, fold, seed)}.json"


def checkpoint_path(cfg: dict, fold: int, seed: int, root: Path | None = None) -> Path:
    """``<results>/checkpoints/<run id>.pt``."""
    return Path(root or config_results_dir(cfg)) / "checkpoints" / f"{run_id(cfg, fold, seed)}.pt"


def read_record(cfg: dict, fold: int, seed: int, root: Path | None = None) -> dict | None:
    """The stored record of a config, fold and seed, or None."""
    path = record_path(cfg, fold, seed, root)
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------
# Training a run, step by step
# ----------------------------------------------------------------------------

@dataclass
class RunData:
    """What :func:`prepare_data` assembles for a run: its parts and their decoded datasets."""

    parts: dict[str, list]
    split_file: Path
    train: SegmentationDataset
    val: SegmentationDataset | None     # None on ranks other than 0, which only train
    test: SegmentationDataset | None    # None also when the config does not evaluate test
    seconds: float                      # decoding time of the three datasets


def prepare_data(cfg: dict, fold: int, root: Path, ctx: distributed.Context, progress: bool) -> RunData:
    """Samples, partition and decoded datasets of run ``fold``; rank 0 alone decodes validation and test.

    Raises:
        DatasetError: a part of the fold holds no image.
    """
    if not ctx.is_main:
        distributed.barrier(ctx)   # rank 0 first: it may download the dataset or write a missing partition
    samples = dataset_samples(cfg, notify=ctx.is_main)
    payload, split_file = split_data(cfg, samples, root)
    if ctx.is_main:
        distributed.barrier(ctx)
    parts = fold_samples(cfg, fold, samples, payload)
    for part, chosen in parts.items():
        if not chosen:
            raise DatasetError([f"{split_file}: fold {fold}: the {part} part holds no image"], "Empty split")
    t0 = time.time()
    train = make_dataset(cfg, parts["train"], train=True, progress=progress, desc="decode train")
    val = test = None
    if ctx.is_main:
        val = make_dataset(cfg, parts["val"], progress=progress, desc="decode val")
        if cfg["evaluate_test"]:
            test = make_dataset(cfg, parts["test"], progress=progress, desc="decode test")
    return RunData(parts, split_file, train, val, test, time.time() - t0)


def build_loss_for(cfg: dict, pixel_counts=None) -> tuple[torch.nn.Module, torch.Tensor | None]:
    """The config's loss; class weights come from the training pixel counts when asked for."""
    lc = cfg["loss"]
    weights = class_weights_from_frequencies(pixel_counts, lc["weight_power"]) if lc["class_weights"] else None
    return build_loss(lc["name"], weights, lc["params"]), weights


@dataclass
class RunParts:
    """What :func:`build_run` makes from a config: model, loss, training loader and schedule."""

    model: torch.nn.Module
    loss: torch.nn.Module
    class_weights: torch.Tensor | None
    loader: DataLoader
    schedule: Schedule


def build_run(cfg: dict, train: SegmentationDataset, seed: int, ctx: distributed.Context) -> RunParts:
    """Model, loss (class weights from the training pixels), balanced loader and schedule of a run.

    An epoch budget samples every defect image and ``free_per_epoch`` defect-free
    ones per epoch (:class:`~defectlib.training.DefectBalancedSampler`); a step
    budget draws ``val_every`` batches per validation period
    (:class:`~defectlib.training.CropSampler`: crops for native input), and one
    period stands for an epoch of the history.
    """
    tc, o, data = cfg["train"], cfg["optimizer"], cfg["data"]
    if tc["steps"] is None:
        sampler = DefectBalancedSampler(train.has_defect, data["free_per_epoch"], seed, ctx.rank, ctx.world_size)
        periods = tc["epochs"]
    else:
        sampler = CropSampler(train.masks, train.crop_size, tc["val_every"] * tc["batch_size"],
                              data["defect_crop_fraction"], data["free_per_epoch"], seed, ctx.rank, ctx.world_size)
        periods = tc["steps"] // tc["val_every"]
    loader = DataLoader(train, batch_size=tc["batch_size"] // ctx.world_size, sampler=sampler)
    loss, weights = build_loss_for(cfg, train.pixel_counts)
    schedule = Schedule(periods, o["lr"], o["weight_decay"], o["warmup_fraction"], tc["patience"])
    return RunParts(model_from_config(cfg), loss.to(ctx.device), weights, loader, schedule)


def evaluate_best(model: torch.nn.Module, data: RunData, cfg: dict, precision: str,
                  progress: bool) -> dict[str, tuple[dict, dict, float]]:
    """Validation (and test) metrics of the best weights: ``{part: (metrics, per-image table, seconds)}``."""
    evals = {}
    for part, ds in (("val", data.val), ("test", data.test)):
        if ds is None:
            continue
        meter = SegmentationMeter(cfg["data"]["classes"])
        t0 = time.time()
        metrics = evaluate(model, ds, cfg["data"]["classes"], precision=precision,
                           channels_last=cfg["train"]["channels_last"], progress=progress, desc=part, meter=meter)
        evals[part] = (metrics, meter.per_image_table(), time.time() - t0)
    return evals


def write_record(cfg: dict, fold: int, seed: int, root: Path, *, model: torch.nn.Module, data: RunData,
                 parts: RunParts, result: FitResult, evals: dict, precision: str, commit: str | None,
                 world_size: int, started: float, device: torch.device) -> dict:
    """Save the best checkpoint and write the run's record beside it; return the record."""
    ckpt = checkpoint_path(cfg, fold, seed, root)
    save_checkpoint(ckpt, model.to(memory_format=torch.contiguous_format), cfg, fold=fold, seed=seed,
                    epoch=result.best_epoch)
    record = {
        "run_id": run_id(cfg, fold, seed),
        "config": cfg,
        "config_hash": config_hash(cfg),
        "fold": fold,
        "seed": seed,
        "world_size": world_size,
        "git_commit": commit,
        "environment": environment(device),
        "precision": precision,
        "wall_seconds": time.time() - started + result.earlier_seconds,
        "resumed_from_epoch": result.resumed_from_epoch,
        "data_seconds": data.seconds,
        "train_seconds": result.train_seconds,
        "val_seconds": sum(e["val_seconds"] for e in result.history),
        "train_images_per_second": result.train_images / max(result.train_seconds, 1e-9),
        "split_file": relative_to_project(data.split_file),
        "split_sizes": {k: len(v) for k, v in data.parts.items()},
        "class_weights": parts.class_weights.tolist() if parts.class_weights is not None else None,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "convergence": convergence(result.history, result.best_epoch),
        "val": evals["val"][0],
        "test": evals["test"][0] if "test" in evals else None,
        "test_seconds": evals["test"][2] if "test" in evals else None,
        "per_image": {part: table for part, (_, table, _) in evals.items()},
        "checkpoint": {"path": os.path.relpath(ckpt, root), "sha256": sha256_file(ckpt)},
    }
    write_json(record_path(cfg, fold, seed, root), record)
    return record


def train_run(cfg: dict, fold: int = 0, seed: int | None = None, progress: bool = True,
              results_root: Path | None = None, stop_after_epoch: int | None = None) -> dict:
    """Train one run, write its record and best checkpoint, and return the record.

    Resumes from ``<results>/work/<run id>/last.pt`` when present; a failed run
    leaves no empty folders.

    Args:
        cfg: resolved config (see :func:`defectlib.config.load_config`).
        fold: test fold ``k`` (validation ``k + 1 mod 5``).
        seed: the run's seed (default: the fold).
        progress: show tqdm bars.
        results_root: override of the results directory.
        stop_after_epoch: stop (without a record) after this epoch, as if killed; used to test resuming.

    Under ``torchrun`` (see :mod:`defectlib.distributed`) every process
    trains its share of each epoch; rank 0 validates, evaluates and writes
    the checkpoint and the record (with ``world_size``), which every rank returns.
    """
    ctx = distributed.init()
    seed = fold if seed is None else seed
    started = time.time()
    commit = git_commit()  # the code that trains, even if the checkout changes during the run
    root = Path(results_root or config_results_dir(cfg))
    tc = cfg["train"]
    if tc["batch_size"] % ctx.world_size:
        raise ValueError(f"train.batch_size {tc['batch_size']} is not a multiple of the {ctx.world_size} processes")
    precision = run_precision(tc["precision"])
    set_seed(seed, distributed.threads_per_process(ctx, tc["threads"]))
    progress = progress and ctx.is_main

    data = prepare_data(cfg, fold, root, ctx, progress)
    parts = build_run(cfg, data.train, seed, ctx)
    work = root / "work" / run_id(cfg, fold, seed)
    created = not work.exists()
    if ctx.is_main:
        work.mkdir(parents=True, exist_ok=True)
    distributed.barrier(ctx)
    try:
        result = fit(parts.model, parts.loss, parts.loader, data.val, parts.schedule, cfg["data"]["classes"],
                     seed=seed, precision=precision, channels_last=tc["channels_last"], work_dir=work,
                     progress=progress, stop_after_epoch=stop_after_epoch, ctx=ctx)
    except BaseException:
        if ctx.is_main and created and work.is_dir() and not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)
        raise
    if result is None:
        return {}
    if not ctx.is_main:
        return distributed.broadcast(None, ctx)
    model = parts.model
    model.load_state_dict(result.best_state)
    evals = evaluate_best(model, data, cfg, precision, progress)
    record = write_record(cfg, fold, seed, root, model=model, data=data, parts=parts, result=result, evals=evals,
                          precision=precision, commit=commit, world_size=ctx.world_size, started=started,
                          device=ctx.device)
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


def fold_runs(cfg: dict, folds: Sequence[int], seed_offset: int = 0, *, train: bool | None = None,
              results_root: Path | None = None) -> list[dict]:
    """The runs of a resolved config on ``folds``, each seeded with its fold plus ``seed_offset``.

    With ``train`` (default: only in the smoke profile, where runs are short) a missing run is trained now
    (:func:`get_run`); otherwise missing runs are left out, so a chapter shows what has landed and a long
    campaign trains in its own queue.
    """
    train = cfg.get("profile") == "smoke" if train is None else train
    if train:
        return [get_run(cfg, fold, fold + seed_offset, results_root=results_root) for fold in folds]
    return [r for fold in folds if (r := read_record(cfg, fold, fold + seed_offset, results_root)) is not None]


# ----------------------------------------------------------------------------
# A run's checkpoint: restored, evaluated again, its masks predicted
# ----------------------------------------------------------------------------

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
    target = checkpoint_file(record, results_root)
    if target.is_file() and sha256_file(target) == record["checkpoint"]["sha256"]:
        return target
    with tempfile.TemporaryDirectory(prefix="defectlib-restore-") as tmp:
        again = train_run(record["config"], record["fold"], record["seed"], progress=progress, results_root=Path(tmp))
        if again["checkpoint"]["sha256"] != record["checkpoint"]["sha256"]:
            raise ValueError(f"run {record['run_id']}: retrained weights differ from the record's (SHA-256 "
                             f"{again['checkpoint']['sha256'][:12]}... vs {record['checkpoint']['sha256'][:12]}...); "
                             "the checkpoint cannot be restored on this machine")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint_file(again, Path(tmp)), target)
    return target


def _run_checkpoint(record: dict, results_root: Path | None, purpose: str, restore: bool = False) -> tuple[Path, str]:
    """A run's checkpoint file and its SHA-256, checked against the record.

    With ``restore``, a missing checkpoint is first trained again (:func:`restore_checkpoint`).

    Raises:
        FileNotFoundError: the checkpoint is not in ``<results>/checkpoints`` (checkpoints are
            local; train the run again with ``--retrain``).
        ValueError: the file is not the checkpoint the record names (its SHA-256 differs).
    """
    ckpt = checkpoint_file(record, results_root)
    if restore and not ckpt.is_file():
        restore_checkpoint(record, results_root=results_root)
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint of run {record['run_id']} not found; "
                                f"train the run again with --retrain to {purpose}")
    digest = sha256_file(ckpt)
    if digest != record["checkpoint"]["sha256"]:
        raise ValueError(f"{ckpt}: SHA-256 {digest[:12]}... differs from the record's; not the run's checkpoint")
    return ckpt, digest


def evaluate_checkpoint(checkpoint: str | Path, samples: list, *, cfg: dict | None = None,
                        precision: str = "auto", tta: str = "none", progress: bool = True,
                        desc: str = "evaluate") -> tuple[dict, dict]:
    """Metrics of a checkpoint on ``samples`` at native resolution: ``(metrics, per-image table)``.

    The one evaluation path of a stored model: :func:`get_evaluation` and the
    command line's ``evaluate`` both use it.  ``cfg`` (default: the
    checkpoint's own) says how the images are prepared.

    Raises:
        CheckpointError: the file is not a defectlib checkpoint.
        ValueError: no samples.
    """
    model, saved = load_checkpoint(checkpoint)
    cfg = cfg or saved
    dataset = make_dataset(cfg, samples, progress=progress, desc=f"decode {desc}")
    meter = SegmentationMeter(cfg["data"]["classes"])
    device = distributed.default_device()
    model = prepare(model.to(device), cfg["train"]["channels_last"])
    metrics = evaluate(model, dataset, cfg["data"]["classes"], precision=resolve_precision(precision, device.type),
                       channels_last=cfg["train"]["channels_last"],
                       progress=progress, desc=desc, meter=meter, tta=tta)
    return metrics, meter.per_image_table()


def evaluation_path(record: dict, split: str, tta: str, root: Path | None = None) -> Path:
    """Where :func:`get_evaluation` keeps a run's evaluation: ``<results>/evals/<run id>-<split>-tta-<mode>.json``."""
    root = Path(root or config_results_dir(record["config"]))
    return root / "evals" / f"{record['run_id']}-{split}-tta-{tta}.json"


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
    path = evaluation_path(record, split, tta, results_root)
    if path.is_file():
        return json.loads(path.read_text())
    ckpt, digest = _run_checkpoint(record, results_root, f"evaluate it with tta={tta}")
    t0 = time.time()
    chosen = fold_samples(record["config"], record["fold"])[split]
    metrics, table = evaluate_checkpoint(ckpt, chosen, precision=record["precision"], tta=tta, progress=progress,
                                         desc=f"{split}, tta {tta}")
    result = {"run_id": record["run_id"], "fold": record["fold"], "split": split, "tta": tta,
              "checkpoint_sha256": digest, "git_commit": git_commit(), "seconds": time.time() - t0,
              "metrics": metrics, "per_image": table}
    write_json(path, result)
    return result


def predictions_path(record: dict, split: str, tta: str, root: Path | None = None) -> Path:
    """Where :func:`get_predictions` keeps a run's masks: ``<results>/predictions/<run id>-<split>-tta-<mode>.npz``."""
    root = Path(root or config_results_dir(record["config"]))
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


def validation_with_tta(record: dict, tta: str) -> dict:
    """The record with its validation re-evaluated under ``tta`` (quietly): what a selection rule compares
    (:func:`defectlib.selection.choose_final`)."""
    return record_with_tta(record, tta, ("val",), progress=False)
