"""Prediction on arbitrary images: class-index masks, overlays and a summary CSV.

Introduced in chapter 03 (baseline); used by ``python -m defectlib predict``.

The model sees each image resized to its input size, as in training.  The
class probabilities are brought back to the image's native size band by band
(rows at a time, with the exact weights of bilinear interpolation), so the
memory of a large image's prediction stays bounded by one band, not by
``classes x height x width`` floats.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .data import IMAGE_SUFFIXES, MAX_PIXELS, read_image
from .errors import DatasetError, OutputError
from .export import OnnxModel
from .models import TTA_MODES, encoder_normalization, load_checkpoint, logits, prepare, resolve_precision, with_tta
from .overlays import overlay
from .preprocess import Preprocessing

#: Output rows computed at once when bringing probabilities to native size.
BAND_ROWS = 256
CSV_NAME = "predictions.csv"


@dataclass
class Prediction:
    """Result for one image: class-index mask at native size and summary values."""

    path: Path
    mask: np.ndarray
    defect_class: str                  # the defect class on most pixels ("none" without defect pixels)
    defect_fraction: float             # share of the image's pixels predicted as any defect
    score: float                       # highest defect probability over the pixels
    class_fractions: dict[str, float]  # share of the pixels of every defect class present


def bilinear_weights(out_size: int, in_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` matrix of 1-D bilinear interpolation, ``align_corners=False``.

    Identical to :func:`torch.nn.functional.interpolate`'s weights: output
    pixel ``i`` samples input coordinate ``(i + 0.5) * in / out - 0.5``,
    clamped at 0.
    """
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    frac = (src - i0).float()
    w = torch.zeros(out_size, in_size)
    rows = torch.arange(out_size)
    w[rows, i0] += 1 - frac
    w[rows, i1] += frac
    return w


def native_prediction(logit: torch.Tensor, size: tuple[int, int], band_rows: int = BAND_ROWS) -> tuple[np.ndarray, float]:
    """Arg-max mask at native size and the image score, computed band by band.

    Shape:
        - ``logit``: ``(C, h, w)`` float logits; output mask ``(H, W)`` uint8.

    The score is the highest defect probability ``1 - P(background)`` over the pixels.
    """
    height, width = size
    wy = bilinear_weights(height, logit.shape[1])
    wx = bilinear_weights(width, logit.shape[2])
    cols = torch.einsum("chw,Ww->chW", logit.float(), wx)  # (C, h, W)
    mask = np.empty((height, width), np.uint8)
    score = 0.0
    for r0 in range(0, height, band_rows):
        band = torch.einsum("Hh,chW->cHW", wy[r0:r0 + band_rows], cols)
        probs = band.softmax(0)
        mask[r0:r0 + band_rows] = probs.argmax(0).numpy().astype(np.uint8)
        score = max(score, float((1 - probs[0]).max()))
    return mask, score


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the image files they hold (sorted).

    In a folder, a ``<stem>.png`` beside a ``<stem>.jpg`` (or other non-PNG image)
    is taken for its mask, as in the Magnetic Tile layout, and skipped.
    """
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            non_png = {p.stem for p in files if p.suffix.lower() != ".png"}
            out += [p for p in files if not (p.suffix.lower() == ".png" and p.stem in non_png)]
        else:
            out.append(item)
    return out


def _output_stem(path: Path, used: set[str]) -> str:
    """The input's stem, made unique among this run's outputs (``name``, ``name_2``, ...)."""
    stem, k = path.stem, 1
    while stem in used:
        k += 1
        stem = f"{path.stem}_{k}"
    used.add(stem)
    return stem


#: Inference engines of :class:`Predictor`.
BACKENDS = ("torch", "onnxruntime")


class Predictor:
    """A trained model with its preprocessing, ready for single images.

    Args:
        checkpoint: a checkpoint written by defectlib, or with
            ``backend="onnxruntime"`` a model written by ``defectlib export``.
        precision: ``auto``, ``bf16`` or ``fp32`` (PyTorch backend; ONNX Runtime
            runs the exported model as it is).
        max_pixels: larger images are refused (:class:`DatasetError`).
        backend: ``torch`` or ``onnxruntime``.
        tta: ``none``, or ``flips`` to average the logits over the four flips of each image (4x the work).
    """

    def __init__(self, checkpoint: str | Path, precision: str = "auto", max_pixels: int | None = MAX_PIXELS,
                 backend: str = "torch", tta: str = "none"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        if tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}; choose from {TTA_MODES}")
        self.backend, self.max_pixels, self.tta = backend, max_pixels, tta
        if backend == "onnxruntime":
            self.onnx = OnnxModel(checkpoint)
            self.classes, self.prep = self.onnx.classes, self.onnx.prep
            self.precision = "fp32"
            return
        model, self.config = load_checkpoint(checkpoint)
        self.model = prepare(model)
        self.classes = tuple(self.config["data"]["classes"])
        self.prep = Preprocessing.from_config(self.config, *encoder_normalization(self.config["model"]["encoder"]))
        self.precision = resolve_precision(precision)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, h, w)`` of a normalised batch ``(N, 3, h, w)`` (averaged over flips with ``tta``)."""
        if self.backend == "onnxruntime":
            forward = self.onnx.logits
        else:
            def forward(x: torch.Tensor) -> torch.Tensor:
                return logits(self.model.eval(), x, self.precision)
        return with_tta(lambda x: self.prep.forward(forward, x), batch, self.tta)

    def predict_array(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``(class-index mask (H, W), score)`` for a grayscale ``(H, W)`` uint8 image."""
        return native_prediction(self.logits(self.prep.prepare(image)[None])[0], image.shape)

    def predict(self, path: str | Path) -> Prediction:
        """Predict one image file (raises :class:`DatasetError` if unreadable or too large)."""
        image = read_image(path, self.max_pixels)
        mask, score = self.predict_array(image)
        counts = np.bincount(mask.ravel(), minlength=len(self.classes))
        defect = counts[1:].sum()
        name = self.classes[1 + int(counts[1:].argmax())] if defect else "none"
        present = {self.classes[c]: float(counts[c] / mask.size) for c in range(1, len(self.classes)) if counts[c]}
        return Prediction(Path(path), mask, name, float(defect / mask.size), score, present)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def check_output_folder(out_dir: Path, inputs: Iterable[str | Path], overwrite: bool = False) -> None:
    """Refuse an output that is a file, an input folder, or holds an earlier run's outputs.

    Raises:
        OutputError: naming the path and the reason (``--overwrite`` lifts the last one).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: --out is a file, not a folder")
    for item in map(Path, inputs):
        if item.is_dir() and item.resolve() == out_dir.resolve():
            raise OutputError(f"{out_dir}: --out is an input folder; a later run would predict its own outputs")
    if (out_dir / CSV_NAME).exists() and not overwrite:
        raise OutputError(f"{out_dir}: holds an earlier run's outputs ({CSV_NAME}); pass --overwrite to replace them")


def predict_to_folder(checkpoint: str | Path, inputs: Iterable[str | Path], out_dir: str | Path,
                      overwrite: bool = False, max_pixels: int | None = MAX_PIXELS, precision: str = "auto",
                      progress: bool = True, backend: str = "torch", tta: str = "none") -> tuple[list[dict], list[str]]:
    """Predict every input and write ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``predictions.csv``.

    The checkpoint and the output folder are checked before any work
    (:class:`~defectlib.models.CheckpointError`, :class:`OutputError`).
    Unreadable or too large inputs are reported and skipped; the CSV has a
    row for every input, with ``status`` ``ok`` or ``failed`` and the error.
    Every file is written atomically; inputs sharing a stem get ``<stem>_2``...
    Interrupted (Ctrl-C), it keeps the images finished so far, whole, writes
    their rows to the CSV and raises ``KeyboardInterrupt`` again.

    Raises:
        OutputError: the output folder is refused or cannot be created.
        DatasetError: the inputs hold no image file.

    Returns:
        ``(rows, failures)``: the CSV rows as dicts, and ``"<path>: <reason>"`` strings.
    """
    inputs = list(inputs)
    out_dir = Path(out_dir)
    check_output_folder(out_dir, inputs, overwrite)
    predictor = Predictor(checkpoint, precision, max_pixels, backend, tta)
    files = expand_inputs(inputs)
    if not files:
        raise DatasetError([f"{', '.join(map(str, inputs))}: no image files ({', '.join(IMAGE_SUFFIXES)})"], "No input")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from exc
    rows, failures, used = [], [], set()
    try:
        for path in tqdm(files, desc="predict", disable=not progress):
            rows.append(_predict_one(predictor, path, out_dir, used, max_pixels, failures))
    except KeyboardInterrupt:
        _write_csv(out_dir, rows)
        raise
    _write_csv(out_dir, rows)
    return rows, failures


def _predict_one(predictor: Predictor, path: Path, out_dir: Path, used: set[str], max_pixels: int | None,
                 failures: list[str]) -> dict:
    """Predict one input and write its mask and overlay; its CSV row (failures appended to ``failures``)."""
    row = {"image": str(path), "output_stem": "", "status": "failed", "error": "", "defect_class": "",
           "defect_area_fraction": "", "defect_score": "", "class_area_fractions": ""}
    written: list[Path] = []
    try:
        if not path.is_file():
            raise DatasetError([f"{path}: no such file"], "Bad input")
        pred = predictor.predict(path)
        stem = _output_stem(path, used)
        for name, array in ((f"{stem}_mask.png", pred.mask),
                            (f"{stem}_overlay.png", overlay(read_image(path, max_pixels), pred.mask,
                                                           classes=predictor.classes))):
            _write_atomic(out_dir / name, _png_bytes(array))
            written.append(out_dir / name)
        row.update(output_stem=stem, status="ok", defect_class=pred.defect_class,
                   defect_area_fraction=f"{pred.defect_fraction:.6f}", defect_score=f"{pred.score:.6f}",
                   class_area_fractions=";".join(f"{c}:{f:.6f}" for c, f in pred.class_fractions.items()))
    except DatasetError as exc:
        failures += exc.problems
        row["error"] = "; ".join(exc.problems)
    except MemoryError:
        failures.append(f"{path}: out of memory")
        row["error"] = "out of memory"
    except KeyboardInterrupt:
        for p in written:          # an image interrupted half-way leaves nothing behind
            p.unlink(missing_ok=True)
        raise
    return row


def _write_csv(out_dir: Path, rows: list[dict]) -> None:
    """``predictions.csv`` with a row per input handled (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["image", "status", "error"])
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(out_dir / CSV_NAME, buf.getvalue().encode())
