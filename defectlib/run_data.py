"""The data of a run: which samples, which fold partition, which parts, and the datasets the model sees.

Introduced in chapter 03 (baseline).

A config names its dataset (Magnetic Tile, found or downloaded by
:mod:`defectlib.download`, or a folder of your own) and its partition; run
*k* tests on fold *k*, validates on fold *k + 1* and trains on the rest
(:func:`defectlib.splits.fold_split`).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from .classes import CATEGORIES
from .data import Sample, SegmentationDataset, describe_dataset, list_dataset, list_samples
from .download import find_dataset, sample_dataset
from .errors import DatasetError
from .models import encoder_normalization
from .paths import config_results_dir, current_profile, write_json
from .preprocess import Preprocessing
from .splits import fold_split, load_split, make_random_folds, select, split_path
from .transforms import build_augmentation


def dataset_samples(cfg: dict, notify: bool = True) -> list[Sample]:
    """All samples of the config's dataset.

    Magnetic Tile is found by :func:`defectlib.download.find_dataset` (downloaded
    in the full profile if it is nowhere).  Only the smoke profile falls back
    to the committed ``data/sample``, and says so.

    Raises:
        FileNotFoundError: the dataset is nowhere (full profile), naming where it looked.
        DatasetError: a folder that does not hold a valid dataset.
    """
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


def split_data(cfg: dict, samples: list[Sample], root: Path | None = None) -> tuple[dict, Path]:
    """The fold partition of the config's dataset and its path.

    Magnetic Tile uses the committed partition (``data.split``).  A folder
    dataset uses its ``splits.json`` when present; otherwise a seeded,
    image-level 5-fold partition is written under ``<results>/splits/``.
    """
    if cfg["data"]["dataset"] == "magnetic_tile":
        path = split_path(cfg["data"]["split"])
        return load_split(path), path
    own = Path(cfg["data"]["root"]) / "splits.json"
    if own.is_file():
        payload = load_split(own)
        if len(payload["folds"]) < 3:
            raise DatasetError([f"{own}: {len(payload['folds'])} fold(s); a run needs 3 or more (test, "
                                f"validation and training parts)"], "Bad split file")
        check_split_names(payload, samples, own)
        return payload, own
    names = sorted(s.name for s in samples)
    if len(names) < 5:
        raise DatasetError([f"{cfg['data']['root']}: {len(names)} image(s) cannot make the 5 folds of a run "
                            f"(test, validation and training parts); add images, or write a splits.json "
                            f"with 3 or more folds (see the README)"], "Too few images")
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    path = Path(root or config_results_dir(cfg)) / "splits" / f"{Path(cfg['data']['root']).name}-{digest}.json"
    if not path.is_file():
        write_json(path, {"dataset": str(cfg["data"]["root"]),
                          "method": "random image-level 5-fold partition (no split file in the folder)",
                          "parameters": {"n_folds": 5, "seed": 0},
                          "folds": make_random_folds(samples), "groups": {n: n for n in names}})
    return load_split(path), path


def fold_samples(cfg: dict, fold: int, samples: list[Sample] | None = None,
                 splits_payload: dict | None = None) -> dict[str, list[Sample]]:
    """Samples of ``train``, ``val`` and ``test`` for run ``fold`` of a config.

    The smoke profile keeps ``data.max_per_category`` images per category and part.
    """
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


def check_split_names(payload: dict, samples: list[Sample], path: Path) -> None:
    """Every name a split file lists must be an image of the dataset.

    Raises:
        DatasetError: naming the split file, how many names match no image, and the first few.
    """
    known = {s.name for s in samples}
    listed = [n for names in payload["folds"].values() for n in names]
    unknown = [n for n in listed if n not in known]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise DatasetError([f"{path}: {len(unknown)} of {len(listed)} names match no image of the dataset "
                            f"({shown}); names are image stems for a folder dataset"], "Bad split file")


def part_samples(cfg: dict, part: str, fold: int) -> list[Sample]:
    """The samples of one part (``train``, ``val``, ``test``) of run ``fold``, or ``all`` of the dataset.

    Raises:
        DatasetError: the part holds no image (naming the dataset and the part).
    """
    samples = dataset_samples(cfg)
    chosen = samples if part == "all" else fold_samples(cfg, fold, samples)[part]
    if not chosen:
        where = cfg["data"]["root"] or "Magnetic Tile"
        raise DatasetError([f"{where}: no images in part {part!r} of fold {fold}"], "Empty split")
    return chosen


def make_dataset(cfg: dict, samples: list[Sample], train: bool = False, progress: bool = False,
                 desc: str = "decode") -> SegmentationDataset:
    """A :class:`~defectlib.data.SegmentationDataset` as the config's model sees it.

    ``train=True``: the config's augmentation (on crops, for native input), no
    native masks; else no augmentation and native masks kept (for evaluation).
    """
    data = cfg["data"]
    prep = Preprocessing.from_config(cfg, *encoder_normalization(cfg["model"]["encoder"]))
    crop = data["crop_size"] if prep.native and train else None
    dataset = SegmentationDataset(samples, prep=prep, crop_size=crop, num_classes=len(data["classes"]),
                                  keep_native=not train, progress=progress, desc=desc)
    if train:  # copy-paste cuts its defects from the decoded training images
        dataset.transform = build_augmentation(data["augment"], crop or data["image_size"], images=dataset.images,
                                               masks=dataset.masks)
    return dataset


def report_samples(per_category_smoke: int = 8) -> list[Sample]:
    """The Magnetic Tile samples for a notebook: all of them in ``full``; in ``smoke``
    the first ``per_category_smoke`` per category (from ``data/sample`` when the
    full dataset is absent, with a note).  Chapters 01 and 02 use it.
    """
    profile = current_profile()
    samples = dataset_samples({"data": {"dataset": "magnetic_tile", "root": None}, "profile": profile})
    if profile == "full":
        return samples
    return [s for c in CATEGORIES for s in [x for x in samples if x.category == c][:per_category_smoke]]
