"""The training loop: explicit objects in, history and best weights out.

Introduced in chapter 03 (baseline).

:func:`fit` takes a model, a loss, a training loader and a validation
dataset; each epoch runs :func:`train_step` over the loader and
:func:`evaluate` on validation, keeps the weights with the best validation
mIoU, and writes a resumable ``last.pt`` into ``work_dir``.  It knows nothing
of configs or run records (see :mod:`defectlib.experiments`).

Reproducibility: all randomness of epoch ``e`` (which defect-free images,
shuffling, augmentation, dropout) is drawn from generators seeded with
``(seed, e)``, so a run resumed from its last epoch ends with the same
result as an uninterrupted one on the same machine.
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from . import distributed
from .data import SegmentationDataset
from .metrics import SegmentationMeter
from .models import logits, model_device, predict_probs, prepare


def set_seed(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and PyTorch and fix the number of CPU threads."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of all randomness of one epoch."""
    return seed * 100_003 + epoch


class DefectBalancedSampler(Sampler[int]):
    """Every image with a defect each epoch, plus ``free_per_epoch`` defect-free ones drawn afresh.

    Defect-free images are most of Magnetic Tile (72 %); showing all of them
    every epoch would spend most of the compute on images with nothing to
    segment.  Call :meth:`set_epoch` before each epoch (as with PyTorch's
    ``DistributedSampler``).

    With ``world_size > 1`` (multi-process training) every process draws the
    same epoch and takes every ``world_size``-th image from position ``rank``,
    the epoch padded with its first images to a multiple of ``world_size``, as
    PyTorch's ``DistributedSampler`` does.

    Args:
        has_defect: per image, whether its mask holds any defect pixel.
        free_per_epoch: defect-free images per epoch (None: all of them).
        seed: the run's seed (the same in every process).
        rank, world_size: this process's share of each epoch.
    """

    def __init__(self, has_defect: Sequence[bool], free_per_epoch: int | None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        flags = np.asarray(has_defect, bool)
        self.defect = np.nonzero(flags)[0]
        self.free = np.nonzero(~flags)[0]
        self.n_free = len(self.free) if free_per_epoch is None else min(free_per_epoch, len(self.free))
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-(len(self.defect) + self.n_free) // self.world_size)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(epoch_seed(self.seed, self.epoch))
        chosen = np.concatenate([self.defect, rng.choice(self.free, self.n_free, replace=False)])
        order = rng.permutation(chosen)
        if self.world_size > 1:
            order = np.resize(order, len(self) * self.world_size)[self.rank::self.world_size]
        return iter(order.tolist())


def _image_weights(has_defect: np.ndarray, free_per_epoch: int | None) -> np.ndarray:
    """Probability of drawing each image: every defect image alike, the defect-free ones together as
    often as ``free_per_epoch`` of them would be in an epoch of :class:`DefectBalancedSampler`."""
    n_free = int((~has_defect).sum())
    free_total = n_free if free_per_epoch is None else min(free_per_epoch, n_free)
    weights = np.where(has_defect, 1.0, free_total / max(n_free, 1))
    return weights / weights.sum() if weights.sum() else np.full(len(has_defect), 1 / max(len(has_defect), 1))


class CropSampler(Sampler):
    """Crops of a step-budget period: ``(image, y, x)`` top-left corners, or image indices for square input.

    Each period (one validation interval of a step budget) draws
    ``items`` crops afresh from ``(seed, period)``.  A share ``defect_fraction``
    is centred on a defect pixel: the class is drawn uniformly among the
    classes present, then an image holding it, then one of its pixels, and the
    crop is placed with that pixel within a quarter of the crop from its centre
    (clipped to the image), so that rare classes get crops as often as common
    ones.  The others are placed uniformly on an image drawn like
    :class:`DefectBalancedSampler`'s (every defect image alike, defect-free
    images together ``free_per_epoch`` times as often as one).  With square
    input (``crop_size`` None) it draws those images only.

    Args:
        masks: the training class-index masks at the input size.
        crop_size: side of the crops (None: square input, whole images).
        items: items per period (steps x batch size).
        defect_fraction: share of defect-centred crops.
        free_per_epoch: weight of the defect-free images (see above).
        seed, rank, world_size: as :class:`DefectBalancedSampler`.
    """

    def __init__(self, masks: Sequence[np.ndarray], crop_size: int | None, items: int, defect_fraction: float = 0.5,
                 free_per_epoch: int | None = 48, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.shapes = [m.shape for m in masks]
        self.crop_size, self.items, self.defect_fraction = crop_size, items, defect_fraction
        self.weights = _image_weights(np.array([m.any() for m in masks], bool), free_per_epoch)
        self.pixels: dict[int, list[tuple[int, np.ndarray]]] = {}   # class -> [(image, flat pixel indices)]
        for i, m in enumerate(masks):
            for c in np.unique(m):
                if c:
                    self.pixels.setdefault(int(c), []).append((i, np.flatnonzero(m == c)))
        self.seed, self.epoch, self.rank, self.world_size = seed, 0, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.items // self.world_size

    def _corner(self, rng: np.random.Generator, i: int, cy: int | None, cx: int | None) -> tuple[int, int, int]:
        h, w = self.shapes[i]
        c = self.crop_size
        if cy is None:
            return i, int(rng.integers(0, max(h - c, 0) + 1)), int(rng.integers(0, max(w - c, 0) + 1))
        jitter = rng.integers(-(c // 4), c // 4 + 1, size=2)
        return (i, int(np.clip(cy - c // 2 + jitter[0], 0, max(h - c, 0))),
                int(np.clip(cx - c // 2 + jitter[1], 0, max(w - c, 0))))

    def __iter__(self):
        rng = np.random.default_rng(epoch_seed(self.seed, self.epoch))
        classes = sorted(self.pixels)
        chosen = []
        for _ in range(len(self) * self.world_size):
            if self.crop_size is not None and classes and rng.random() < self.defect_fraction:
                holders = self.pixels[classes[int(rng.integers(len(classes)))]]
                i, flat = holders[int(rng.integers(len(holders)))]
                cy, cx = divmod(int(flat[int(rng.integers(len(flat)))]), self.shapes[i][1])
                chosen.append(self._corner(rng, i, cy, cx))
            else:
                i = int(rng.choice(len(self.weights), p=self.weights))
                chosen.append(i if self.crop_size is None else self._corner(rng, i, None, None))
        return iter(chosen[self.rank::self.world_size])


@dataclass
class Schedule:
    """Optimiser settings: AdamW, linear warm-up over ``warmup_fraction`` of the steps, cosine decay to 0."""

    epochs: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    patience: int | None = None   # epochs without a better validation mIoU before stopping; None: never

    def build(self, model: nn.Module, steps_per_epoch: int):
        steps = steps_per_epoch * self.epochs
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(1, int(self.warmup_fraction * steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_step(model: nn.Module, batch: dict, loss_fn: nn.Module, optimizer, scheduler,
               precision: str = "fp32", channels_last: bool = True) -> float:
    """One optimisation step on a batch (moved to the model's device); returns the loss."""
    model.train()
    device = model_device(model)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(logits(model, batch["image"].to(device), precision, channels_last), batch["mask"].to(device))
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


@torch.no_grad()
def eval_step(model: nn.Module, batch: dict, dataset: SegmentationDataset, meter: SegmentationMeter,
              precision: str = "fp32", channels_last: bool = True, tta: str = "none") -> None:
    """Predict a batch and add each image, at native resolution, to ``meter``."""
    model.eval()
    indices = batch["index"].tolist()
    sizes = [dataset.sizes[i] for i in indices]
    images = batch["image"].to(model_device(model))
    for i, probs in zip(indices, predict_probs(model, images, sizes, precision, channels_last, tta, dataset.prep)):
        meter.update(probs, dataset.native_mask(i), dataset.samples[i].name)


def evaluate(model: nn.Module, dataset: SegmentationDataset, class_names: Sequence[str], batch_size: int = 16,
             precision: str = "fp32", channels_last: bool = True, progress: bool = False, desc: str = "evaluate",
             meter: SegmentationMeter | None = None, tta: str = "none") -> dict:
    """Metrics of ``model`` on ``dataset`` at each image's native resolution (see :mod:`defectlib.metrics`).

    The dataset must keep native masks (``keep_native=True``).  Pass a
    ``meter`` to keep the per-image counts (e.g. for bootstrap intervals);
    ``tta="flips"`` averages the logits over the four flips of each image.

    Raises:
        ValueError: the dataset holds no image.
    """
    if len(dataset) == 0:
        raise ValueError("no images to evaluate")
    meter = meter if meter is not None else SegmentationMeter(class_names)
    if dataset.prep.native:   # images of their own sizes: one at a time
        batch_size = 1
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=desc, disable=not progress, leave=False):
        eval_step(model, batch, dataset, meter, precision, channels_last, tta)
    return meter.compute()


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    history: list[dict]
    best_epoch: int | None
    best_val: dict | None
    best_state: dict
    train_seconds: float
    train_images: int
    epochs_run: int
    resumed_from_epoch: int = 0     # the epoch ``last.pt`` held when this process started (0: a fresh run)
    earlier_seconds: float = 0.0    # training and validation wall time of a resumed run's earlier processes


def _save(payload: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def fit(model: nn.Module, loss_fn: nn.Module, train_loader: DataLoader, val_dataset: SegmentationDataset,
        schedule: Schedule, class_names: Sequence[str], *, seed: int = 0, precision: str = "fp32",
        channels_last: bool = True, work_dir: Path | None = None, progress: bool = True,
        stop_after_epoch: int | None = None, on_epoch: Callable[[dict], None] | None = None,
        ctx: distributed.Context = distributed.SINGLE) -> FitResult | None:
    """Train ``model`` and keep the weights with the best validation mIoU.

    Resumes from ``work_dir/last.pt`` when present.  Returns None when stopped
    by ``stop_after_epoch`` (used to test resuming).

    Args:
        model, loss_fn: the network (logits out) and a loss ``loss(y_pred, y_true)``.
        train_loader: batches of ``image``/``mask``; its sampler (and dataset)
            may have ``set_epoch``.
        val_dataset: validation data with native masks.
        schedule: optimiser settings and epoch budget.
        class_names: pixel classes, background first (for the metrics).
        seed: seeds every epoch's randomness.
        precision: ``bf16`` (autocast) or ``fp32``.
        channels_last: channels-last memory format for model and inputs.
        work_dir: where ``last.pt`` is written after every epoch.
        ctx: multi-process training (see :mod:`defectlib.distributed`): the
            model is wrapped in ``DistributedDataParallel``, rank 0 alone
            validates and writes ``last.pt``, and every rank receives its
            metrics.  ``train_loader`` must give each rank its share.
    """
    model = prepare(model.to(ctx.device), channels_last)
    net = model
    if ctx.enabled:
        net = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    progress = progress and ctx.is_main
    optimizer, scheduler = schedule.build(model, len(train_loader))
    state = {"epoch": 0, "history": [], "best_miou": -1.0, "best_epoch": None, "best_val": None,
             "bad_epochs": 0, "train_seconds": 0.0, "train_images": 0}
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    last = Path(work_dir) / "last.pt" if work_dir else None
    if last is not None and last.is_file():
        saved = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state, state = saved["best"], saved["state"]
    resumed_from, earlier, started = state["epoch"], state.get("elapsed_seconds", 0.0), time.time()
    for epoch in range(state["epoch"] + 1, schedule.epochs + 1):
        if schedule.patience is not None and state["bad_epochs"] >= schedule.patience:
            break
        es = epoch_seed(seed, epoch) + 1_000_003 * ctx.rank   # each process its own augmentation and dropout
        torch.manual_seed(es)
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        if hasattr(train_loader.dataset, "set_epoch"):
            train_loader.dataset.set_epoch(es)
        t0, losses, images = time.time(), [], 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{schedule.epochs}", disable=not progress, leave=False)
        for batch in bar:
            losses.append(train_step(net, batch, loss_fn, optimizer, scheduler, precision, channels_last))
            images += len(batch["image"])
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        loss_sum, steps, images = distributed.all_sum([float(np.sum(losses)), len(losses), images], ctx)
        images = int(images)
        train_time = time.time() - t0
        t1 = time.time()
        val = None
        if ctx.is_main:
            val = evaluate(model, val_dataset, class_names, precision=precision, channels_last=channels_last,
                           progress=progress, desc="validate")
        val = distributed.broadcast(val, ctx)
        entry = {"epoch": epoch, "step": epoch * len(train_loader), "train_loss": loss_sum / steps, "lr": scheduler.get_last_lr()[0],
                 "val_miou": val["miou"], "val_defect_miou": val["defect_miou"],
                 "val_binary_defect_iou": val["binary_defect_iou"], "val_image_auroc": val["image_auroc"],
                 "train_seconds": train_time, "val_seconds": time.time() - t1, "images": images}
        state["train_seconds"] += train_time
        state["train_images"] += images
        state["history"].append(entry)
        if progress:
            tqdm.write(f"epoch {epoch}: loss {entry['train_loss']:.4f}  val mIoU {val['miou']:.4f}  "
                       f"defect mIoU {val['defect_miou']:.4f}  ({train_time:.0f}s + {entry['val_seconds']:.0f}s)")
        if on_epoch is not None:
            on_epoch(entry)
        if val["miou"] > state["best_miou"]:
            state.update(best_miou=val["miou"], best_epoch=epoch, best_val=val, bad_epochs=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["elapsed_seconds"] = earlier + time.time() - started
        if last is not None and ctx.is_main:
            _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "best": best_state, "state": state}, last)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return None
    return FitResult(state["history"], state["best_epoch"], state["best_val"], best_state,
                     state["train_seconds"], state["train_images"], state["epoch"], resumed_from, earlier)
