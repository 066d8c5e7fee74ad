"""Prediction on arbitrary images: class-index masks, overlays and a summary CSV.

Introduced in chapter 03 (baseline); used by ``python -m defectlib predict``.
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

from .data import CLASSES, IMAGE_SUFFIXES, DatasetError, read_image, to_network_input
from .models import encoder_normalization
from .training import load_checkpoint, predict_probs
from .transforms import build_transform
from .viz import overlay


@dataclass
class Prediction:
    """Result for one image: class-index mask at native size and summary values."""

    path: Path
    mask: np.ndarray
    defect_class: str
    defect_fraction: float
    score: float


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


class Predictor:
    """A trained model with its preprocessing, ready for single images."""

    def __init__(self, checkpoint: str | Path):
        self.model, self.config = load_checkpoint(checkpoint)
        size = self.config["data"]["image_size"]
        self.transform = build_transform(size)
        self.mean, self.std = encoder_normalization(self.config["model"]["encoder"])

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """Class probabilities ``(C, H, W)`` at the native size of a grayscale ``(H, W)`` image."""
        batch = to_network_input(self.transform(image=image)["image"], self.mean, self.std)[None]
        return predict_probs(self.model, batch, [image.shape])[0]

    def predict(self, path: str | Path) -> Prediction:
        """Predict one image file (raises :class:`DatasetError` if unreadable)."""
        image = read_image(path)
        probs = self(image)
        mask = probs.argmax(0).numpy().astype(np.uint8)
        defect = mask[mask > 0]
        name = CLASSES[int(np.bincount(defect).argmax())] if defect.size else "none"
        return Prediction(Path(path), mask, name, float(defect.size / mask.size), float((1 - probs[0]).max()))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def predict_to_folder(checkpoint: str | Path, inputs: Iterable[str | Path], out_dir: str | Path,
                      progress: bool = True) -> tuple[list[Prediction], list[str]]:
    """Predict every input and write ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``predictions.csv``.

    Unreadable inputs are reported and skipped; every file is written atomically.
    Inputs sharing a file stem get ``<stem>_2``, ``<stem>_3``... (see the CSV's
    ``output_stem`` column).

    Returns:
        ``(predictions, failures)``, failures as ``"<path>: <reason>"`` strings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(checkpoint)
    results, failures, used, output_stems = [], [], set(), []
    for path in tqdm(expand_inputs(inputs), desc="predict", disable=not progress):
        try:
            if not path.is_file():
                raise DatasetError([f"{path}: no such file"], "Bad input")
            pred = predictor.predict(path)
        except DatasetError as exc:
            failures += exc.problems
            continue
        stem = _output_stem(path, used)
        _write_atomic(out_dir / f"{stem}_mask.png", _png_bytes(pred.mask))
        _write_atomic(out_dir / f"{stem}_overlay.png", _png_bytes(overlay(read_image(path), pred.mask)))
        results.append(pred)
        output_stems.append(stem)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "output_stem", "defect_class", "defect_area_fraction", "defect_score"])
    for p, stem in zip(results, output_stems):
        writer.writerow([str(p.path), stem, p.defect_class, f"{p.defect_fraction:.6f}", f"{p.score:.6f}"])
    _write_atomic(out_dir / "predictions.csv", buf.getvalue().encode())
    return results, failures
