"""The training loop: seeding, data per config, early stopping, resume, evaluation.

Introduced in chapter 03 (baseline).

Each epoch sees every defect image of the training split plus a fresh random
sample of ``data.free_per_epoch`` defect-free images (the Free class is 72 %
of the images).  The checkpoint with the best validation mIoU is kept; the
test split is evaluated only after training, for the record, never to choose.

Reproducibility: all randomness of epoch ``e`` (Free sample, shuffling,
augmentation, dropout) is drawn from generators seeded with ``(seed, e)``, so
a run resumed from its last epoch checkpoint ends with the same record as an
uninterrupted one on the same machine.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import experiments as ex
from .data import CATEGORIES, MagneticTileDataset, Sample, find_dataset, list_samples, sample_dataset, sha256_file
from .losses import build_loss, class_weights_from_frequencies
from .metrics import SegmentationMeter
from .models import build_model, encoder_normalization
from .splits import load_split, select
from .transforms import build_transform


def set_seed(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and PyTorch and fix the number of CPU threads."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def dataset_samples(cfg: dict) -> dict[str, list[Sample]]:
    """Samples of train/val/test for a config (the committed split).

    The smoke profile keeps ``data.max_per_category`` images per category and
    split, and falls back to the committed ``data/sample`` when the full
    dataset is absent.
    """
    data = cfg.get("data", {})
    limit = data.get("max_per_category")
    try:
        root = find_dataset(data.get("root"), download=limit is None)
    except FileNotFoundError:
        root = sample_dataset()
    samples = list_samples(root)
    split = load_split()
    out = {}
    for name in ("train", "val", "test"):
        chosen = select(samples, name, split)
        if limit:
            chosen = [s for c in CATEGORIES for s in [x for x in chosen if x.category == c][:limit]]
        out[name] = chosen
    return out


def eval_dataset(cfg: dict, samples: list[Sample]) -> MagneticTileDataset:
    """Samples served as the config's model sees them at evaluation (resize, no augmentation)."""
    return MagneticTileDataset(samples, build_transform(cfg["data"]["image_size"]),
                               encoder_normalization(cfg["model"]["encoder"]))


def pixel_counts(samples: list[Sample], num_classes: int = 6) -> np.ndarray:
    """Pixels per class over the samples' native-resolution masks."""
    ds = MagneticTileDataset(samples)
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.load(i)[1].ravel(), minlength=num_classes)
    return counts


def build_from_config(cfg: dict, train_samples: list[Sample] | None = None):
    """``(model, loss)`` for a config; class weights come from ``train_samples``."""
    m = cfg["model"]
    model = build_model(m["architecture"], m["encoder"], 6, m.get("pretrained", True), m.get("decoder_channels"))
    weights = None
    if cfg["loss"]["name"] == "weighted_ce" or cfg["loss"].get("class_weights"):
        weights = class_weights_from_frequencies(pixel_counts(train_samples or []), cfg["loss"].get("weight_power", 0.5))
    kwargs = {k: v for k, v in cfg["loss"].items() if k not in ("name", "class_weights", "weight_power")}
    return model, build_loss(cfg["loss"]["name"], weights, **kwargs)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Softmax probabilities resized back to each image's native ``(H, W)``.

    Shape:
        - ``images``: ``(N, 3, h, w)`` normalised network inputs.
        - output: N tensors ``(C, H_i, W_i)``.
    """
    logits = model(images)
    return [F.interpolate(l[None], size=s, mode="bilinear", align_corners=False)[0].softmax(0)
            for l, s in zip(logits, sizes)]


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: MagneticTileDataset, batch_size: int = 16, progress: bool = False,
             desc: str = "evaluate", meter: SegmentationMeter | None = None) -> dict:
    """Metrics of ``model`` on ``dataset`` at each image's native resolution (see :mod:`defectlib.metrics`).

    Pass a ``meter`` to keep the per-image counts (e.g. for bootstrap intervals).
    """
    model.eval()
    meter = meter if meter is not None else SegmentationMeter()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    index = 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        sizes = list(zip(batch["meta"]["height"].tolist(), batch["meta"]["width"].tolist()))
        for probs in predict_probs(model, batch["image"], sizes):
            meter.update(probs, dataset.load(index)[1])
            index += 1
    return meter.compute()


def _make_optimizer(cfg: dict, model: torch.nn.Module, steps: int):
    """AdamW with linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0."""
    o = cfg["optimizer"]
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], weight_decay=o.get("weight_decay", 0.0))
    warmup = max(1, int(o.get("warmup_fraction", 0.1) * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _save_atomic(payload: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def train(cfg: dict, seed: int = 0, progress: bool = True, results_root: Path | None = None,
          stop_after_epoch: int | None = None) -> dict:
    """Train one run, write its record and best checkpoint, and return the record.

    Resumes from ``<results>/work/<run id>/last.pt`` when present.

    Args:
        cfg: resolved config (see :func:`defectlib.experiments.load_config`).
        seed: the run's seed.
        progress: show tqdm bars.
        results_root: override of the results directory.
        stop_after_epoch: stop (without a record) after this epoch, as if killed;
            used to test resuming.
    """
    t_start = time.time()
    commit = ex.git_commit()  # the code that trains, even if the checkout changes during the run
    root = Path(results_root or ex.results_dir(cfg.get("profile")))
    rid = ex.run_id(cfg, seed)
    work = root / "work" / rid
    work.mkdir(parents=True, exist_ok=True)
    tc, dc = cfg["train"], cfg["data"]
    set_seed(seed, tc.get("threads"))

    splits = dataset_samples(cfg)
    normalize = encoder_normalization(cfg["model"]["encoder"])
    defect_train = [s for s in splits["train"] if s.category != "Free"]
    free_train = [s for s in splits["train"] if s.category == "Free"]
    n_free = min(dc.get("free_per_epoch", len(free_train)), len(free_train))
    steps_per_epoch = -(-(len(defect_train) + n_free) // tc["batch_size"])
    train_tf = build_transform(dc["image_size"], dc.get("augment", "none"))
    val_ds = eval_dataset(cfg, splits["val"])

    model, loss_fn = build_from_config(cfg, splits["train"])
    optimizer, scheduler = _make_optimizer(cfg, model, steps_per_epoch * tc["epochs"])
    state = {"epoch": 0, "history": [], "best_miou": -1.0, "best_epoch": None, "best_val": None,
             "bad_epochs": 0, "train_seconds": 0.0, "train_images": 0}
    last = work / "last.pt"
    if last.is_file():
        saved = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]

    best_path = work / "best.pt"
    for epoch in range(state["epoch"] + 1, tc["epochs"] + 1):
        if state["bad_epochs"] >= tc.get("patience", tc["epochs"]):
            break
        es = _epoch_seed(seed, epoch)
        torch.manual_seed(es)
        rng = np.random.default_rng(es)
        train_tf.set_random_seed(es)
        chosen = defect_train + [free_train[i] for i in rng.choice(len(free_train), n_free, replace=False)]
        loader = DataLoader(MagneticTileDataset(chosen, train_tf, normalize), batch_size=tc["batch_size"],
                            shuffle=True, drop_last=False, generator=torch.Generator().manual_seed(es))
        model.train()
        t0, losses = time.time(), []
        bar = tqdm(loader, desc=f"epoch {epoch}/{tc['epochs']}", disable=not progress, leave=False)
        for batch in bar:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), batch["mask"])
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        train_time = time.time() - t0
        val = evaluate(model, val_ds, progress=progress, desc="validate")
        state["train_seconds"] += train_time
        state["train_images"] += len(chosen)
        state["history"].append({
            "epoch": epoch, "train_loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
            "val_miou": val["miou"], "val_defect_miou": val["defect_miou"],
            "val_binary_defect_iou": val["binary_defect_iou"], "val_image_auroc": val["image_auroc"],
            "train_seconds": train_time, "images": len(chosen),
        })
        if progress:
            tqdm.write(f"epoch {epoch}: loss {np.mean(losses):.4f}  val mIoU {val['miou']:.4f}  "
                       f"defect mIoU {val['defect_miou']:.4f}  ({train_time:.0f}s)")
        if val["miou"] > state["best_miou"]:
            state.update(best_miou=val["miou"], best_epoch=epoch, best_val=val, bad_epochs=0)
            _save_atomic({"model": model.state_dict(), "config": cfg, "seed": seed, "epoch": epoch}, best_path)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "state": state}, last)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {}

    best = torch.load(best_path, map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    test = None
    if cfg.get("evaluate_test", False):
        test = evaluate(model, eval_dataset(cfg, splits["test"]), progress=progress, desc="test")
    ckpt = ex.checkpoint_path(cfg, seed, root)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best_path, ckpt.with_name(ckpt.name + ".tmp"))
    ckpt.with_name(ckpt.name + ".tmp").replace(ckpt)
    record = {
        "run_id": rid,
        "config": cfg,
        "config_hash": ex.config_hash(cfg),
        "seed": seed,
        "git_commit": commit,
        "environment": ex.environment(),
        "wall_seconds": time.time() - t_start,
        "train_seconds": state["train_seconds"],
        "train_images_per_second": state["train_images"] / max(state["train_seconds"], 1e-9),
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "val": state["best_val"],
        "test": test,
        "checkpoint": {"path": os.path.relpath(ckpt, root), "sha256": sha256_file(ckpt)},
    }
    ex.write_json(ex.record_path(cfg, seed, root), record)
    shutil.rmtree(work, ignore_errors=True)
    return record


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Model (eval mode) and config from a checkpoint written by :func:`train`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    cfg = saved["config"]
    m = cfg["model"]
    model = build_model(m["architecture"], m["encoder"], 6, pretrained=False, decoder_channels=m.get("decoder_channels"))
    model.load_state_dict(saved["model"])
    return model.eval(), cfg
