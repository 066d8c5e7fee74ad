"""Reading, validating and serving image/mask pairs: Magnetic Tile and your own.

Introduced in chapter 01 (EDA) and chapter 02 (labeling).

Two layouts are understood:

- **Magnetic Tile**: ``MT_<Class>/Imgs/<name>.jpg`` (8-bit grayscale image)
  with ``<name>.png`` beside it (mask, 0 background, 255 defect);
- **folder**: ``images/<stem>.<ext>`` with ``masks/<stem>.png``, described by an
  optional ``dataset.yaml`` (``classes``, ``mask_format``).

The mask contract is the same for both (see :func:`decode_mask`).  Every file
is decoded once per dataset object (:class:`SegmentationDataset`).  Finding
and downloading Magnetic Tile is :mod:`defectlib.download`'s.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .classes import CATEGORIES, CLASSES
from .errors import DatasetError
from .preprocess import Preprocessing, to_network_input

#: Mask pixels at or above this value are defect in a 0/255 mask.  Upstream
#: masks are 0/255 except for a few anti-aliased edge pixels (see chapter 02).
MASK_THRESHOLD = 128
#: Mask formats a dataset can declare (see :func:`decode_mask`).
MASK_FORMATS = ("binary", "index")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_NAME_RE = re.compile(r"exp(?P<exp>\d+)_num_(?P<num>\d+)")


# ----------------------------------------------------------------------------
# Reading and validating files
# ----------------------------------------------------------------------------

#: Notes printed once per process (colour images converted to gray).
_ANNOUNCED = {"colour": False}

#: Largest image (in pixels) decoded by default; larger files are refused
#: before decoding (PIL's own limit would otherwise abort with a warning).
MAX_PIXELS = 50_000_000


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer image of more than 8 bits to 0..255 by its own range."""
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_image(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image as an ``uint8`` array of shape ``(H, W)`` (grayscale).

    Colour images are converted to gray; 16-bit (and 32-bit integer) images
    are scaled to 8 bits by their own range, never clipped.

    Raises:
        DatasetError: the file cannot be decoded completely, is larger than
            ``max_pixels``, or holds floating-point pixels.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise DatasetError([f"{path}: {im.width}x{im.height} image is larger than the limit of "
                                    f"{max_pixels / 1e6:g} Mpx"], "Image too large")
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return _to_uint8(np.asarray(im))
            if im.mode == "F":
                raise DatasetError([f"{path}: floating-point image (mode F); expected 8- or 16-bit"], "Bad image")
            if im.mode not in ("L", "1", "P", "LA") and not _ANNOUNCED["colour"]:
                _ANNOUNCED["colour"] = True
                print(f"note: {path.name} and other colour images are converted to gray ({im.mode} to L); the "
                      "encoder sees the gray channel three times", file=sys.stderr)
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError([f"{path}: unreadable or truncated image ({exc})"], "Bad image") from exc


def decode_mask(arr: np.ndarray, mode: str, path: Path, mask_format: str = "binary", label: int = 1,
                num_classes: int | None = None) -> np.ndarray:
    """Apply the mask contract to a decoded mask; return a ``uint8`` class-index mask.

    ``binary`` masks (defect pixels get class ``label``) may be:

    - 1-bit (PIL mode ``1``);
    - 0/1;
    - 0/255, with or without anti-aliased edge values (several distinct
      values between 0 and 255 besides a value of at least 128, as in
      Magnetic Tile's masks): thresholded at :data:`MASK_THRESHOLD`.

    ``index`` masks hold class indices ``0..num_classes-1`` directly.  Any
    other value set (e.g. ``{0, 7}``) is an error, whatever its share of pixels.

    Raises:
        DatasetError: naming ``path`` and the values found.
    """
    if mode == "1":
        return arr.astype(np.uint8) * label if mask_format == "binary" else arr.astype(np.uint8)
    if mode not in ("L", "P") or arr.ndim != 2:
        raise DatasetError([f"{path}: mask must be single-channel 8-bit or 1-bit, got mode {mode} "
                            f"with shape {arr.shape}"], "Bad mask")
    values = np.unique(arr)
    shown = ", ".join(map(str, values[:8].tolist())) + (", ..." if len(values) > 8 else "")
    if mask_format == "index":
        if num_classes is None or values.max() >= num_classes:
            raise DatasetError([f"{path}: class-index mask holds values {{{shown}}}; expected 0..{(num_classes or 1) - 1} "
                                f"(one per declared class)"], "Bad mask")
        return arr.astype(np.uint8)
    if mode == "P":
        raise DatasetError([f"{path}: palette mask; save binary masks as 8-bit grayscale (0/255 or 0/1)"], "Bad mask")
    value_set = set(values.tolist())
    if value_set <= {0, 1}:
        return arr.astype(np.uint8) * label
    if value_set <= {0, 255} or (values.max() >= MASK_THRESHOLD and len(values) >= 3):
        return (arr >= MASK_THRESHOLD).astype(np.uint8) * label
    raise DatasetError([f"{path}: binary mask holds values {{{shown}}}; expected 0/255, 0/1 or 1-bit "
                        "(declare mask_format: index with the class list for class-index masks)"], "Bad mask")


def read_mask(path: str | Path, shape: tuple[int, int] | None = None, mask_format: str = "binary",
              label: int = 1, num_classes: int | None = None) -> np.ndarray:
    """Read a mask file as a ``uint8`` class-index mask (see :func:`decode_mask`).

    Raises:
        DatasetError: unreadable file, size differing from ``shape``, or values
            outside the contract; the message names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "RGB":  # accept gray masks saved as RGB, if the channels agree
                rgb = np.asarray(im)
                if (rgb == rgb[..., :1]).all():
                    im, mode = im.convert("L"), "L"
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError([f"{path}: unreadable or truncated mask ({exc})"], "Bad mask") from exc
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise DatasetError([f"{path}: mask size {arr.shape[1]}x{arr.shape[0]} differs from image size "
                            f"{shape[1]}x{shape[0]}"], "Bad mask")
    return decode_mask(arr, mode, path, mask_format, label, num_classes)


def read_binary_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask as a boolean ``(H, W)`` array (see :func:`decode_mask`)."""
    return read_mask(path, shape) > 0


@dataclass(frozen=True)
class Sample:
    """One image/mask pair.

    Attributes:
        image, mask: file paths.
        category: image-level category (Magnetic Tile's ``MT_<category>``, or
            ``image`` in a folder dataset).
        label: class index of the defect pixels of a binary mask.
        mask_format: ``binary`` or ``index`` (see :func:`decode_mask`).
        key: unique name; Magnetic Tile's is ``MT_<category>/<stem>``.
    """

    image: Path
    mask: Path
    category: str
    label: int = 0
    mask_format: str = "binary"
    key: str | None = None

    @property
    def name(self) -> str:
        """Unique name of the sample across its dataset (used by split files)."""
        return self.key or f"MT_{self.category}/{self.image.stem}"

    @property
    def exp(self) -> int:
        """Lighting set-up ``k`` of ``exp<k>_num_<n>`` (-1 for other names)."""
        m = _NAME_RE.search(self.image.stem)
        return int(m["exp"]) if m else -1

    @property
    def num(self) -> int:
        """Capture number ``n`` of ``exp<k>_num_<n>`` (-1 for other names)."""
        m = _NAME_RE.search(self.image.stem)
        return int(m["num"]) if m else -1

    def load(self, num_classes: int | None = None, max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
        """Native-resolution ``(image uint8 (H, W), class-index mask uint8 (H, W))``."""
        image = read_image(self.image, max_pixels)
        return image, read_mask(self.mask, image.shape, self.mask_format, self.label, num_classes)


def mt_label(category: str) -> int:
    """Class index of a Magnetic Tile category's defect pixels (0 for Free)."""
    return CLASSES.index(category) if category in CLASSES else 0


def list_samples(root: str | Path) -> list[Sample]:
    """List image/mask pairs in Magnetic Tile layout, sorted by name (no decoding).

    Raises:
        DatasetError: empty or missing folder, an image without a mask, a mask
            without an image, or a file that is neither.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError([f"{root}: not a directory"], "No dataset")
    samples, problems = [], []
    for category in CATEGORIES:
        folder = root / f"MT_{category}" / "Imgs"
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        jpgs = {p.stem: p for p in files if p.suffix.lower() == ".jpg"}
        pngs = {p.stem: p for p in files if p.suffix.lower() == ".png"}
        for p in files:
            if p.suffix.lower() not in (".jpg", ".png"):
                problems.append(f"{p}: not an image/mask file (expected <name>.jpg or <name>.png)")
        for stem in sorted(jpgs.keys() - pngs.keys()):
            problems.append(f"{jpgs[stem]}: image has no mask {stem}.png")
        for stem in sorted(pngs.keys() - jpgs.keys()):
            problems.append(f"{pngs[stem]}: mask has no image {stem}.jpg")
        samples += [Sample(jpgs[s], pngs[s], category, mt_label(category)) for s in sorted(jpgs.keys() & pngs.keys())]
    if problems:
        raise DatasetError(problems, f"Invalid dataset at {root}")
    if not samples:
        raise DatasetError([f"{root}: no MT_<Class>/Imgs/*.jpg images found"], "Empty dataset")
    return samples


# ----------------------------------------------------------------------------
# Your own data: folder datasets
# ----------------------------------------------------------------------------

DATASET_FILE = "dataset.yaml"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset folder holds.

    Attributes:
        root: the folder.
        layout: ``magnetic_tile`` (``MT_<Class>/Imgs``) or ``folder`` (``images/`` + ``masks/``).
        classes: pixel class names, background first.
        mask_format: ``binary`` (defect pixels are class 1) or ``index``.
    """

    root: Path
    layout: str
    classes: tuple[str, ...]
    mask_format: str = "binary"


def describe_dataset(root: str | Path, classes: Sequence[str] | None = None,
                     mask_format: str | None = None) -> DatasetSpec:
    """The :class:`DatasetSpec` of a folder, from its layout, its ``dataset.yaml`` and the arguments.

    A folder dataset without ``dataset.yaml`` or arguments is binary with
    classes ``(background, defect)``.  Arguments override the file.

    Raises:
        DatasetError: not a directory, unknown layout, or a bad ``dataset.yaml``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError([f"{root}: not a directory"], "No dataset")
    if any(root.glob("MT_*/Imgs")):
        return DatasetSpec(root, "magnetic_tile", CLASSES, "binary")
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise DatasetError([f"{root}: expected images/ and masks/ folders (or the Magnetic Tile layout MT_<Class>/Imgs)"],
                           "Unknown dataset layout")
    declared: dict = {}
    spec_file = root / DATASET_FILE
    if spec_file.is_file():
        try:
            declared = yaml.safe_load(spec_file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DatasetError([f"{spec_file}: malformed YAML ({exc})"], "Bad dataset description") from exc
        unknown = set(declared) - {"classes", "mask_format"} if isinstance(declared, dict) else {"<not a mapping>"}
        if unknown:
            raise DatasetError([f"{spec_file}: unknown key(s) {sorted(unknown)}; expected classes, mask_format"],
                               "Bad dataset description")
    classes = tuple(classes or declared.get("classes") or ("background", "defect"))
    mask_format = mask_format or declared.get("mask_format", "binary")
    problems = []
    if mask_format not in MASK_FORMATS:
        problems.append(f"{spec_file}: mask_format {mask_format!r}; expected one of {MASK_FORMATS}")
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(isinstance(c, str) for c in classes):
        problems.append(f"{spec_file}: classes must be two or more distinct names, background first; got {list(classes)}")
    if mask_format == "binary" and len(classes) != 2:
        problems.append(f"{spec_file}: a binary mask_format needs exactly two classes (background, defect); "
                        f"got {list(classes)}")
    if problems:
        raise DatasetError(problems, "Bad dataset description")
    return DatasetSpec(root, "folder", classes, mask_format)


def list_dataset(spec: DatasetSpec) -> list[Sample]:
    """Image/mask pairs of a dataset folder, sorted by name (no decoding).

    Raises:
        DatasetError: listing every file without a partner, non-image file, or an empty folder.
    """
    if spec.layout == "magnetic_tile":
        return list_samples(spec.root)
    images_dir, masks_dir = spec.root / "images", spec.root / "masks"
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    masks = {p.stem: p for p in masks_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    problems, samples = [], []
    for p in images:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{p}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        elif p.stem not in masks:
            problems.append(f"{p}: no mask {masks_dir / (p.stem + '.png')}")
        else:
            samples.append(Sample(p, masks[p.stem], "image", 1, spec.mask_format, key=p.stem))
    for stem in sorted(masks.keys() - {p.stem for p in images}):
        problems.append(f"{masks[stem]}: mask has no image in {images_dir}")
    if problems:
        raise DatasetError(problems, f"Invalid dataset at {spec.root}")
    if not samples:
        raise DatasetError([f"{images_dir}: folder holds no images"], "Empty dataset")
    return samples


def validate_samples(samples: Sequence[Sample], num_classes: int | None = None, progress: bool = False) -> None:
    """Decode every image and mask and apply the mask contract.

    Raises:
        DatasetError: listing every bad file at once.
    """
    problems = []
    for s in tqdm(samples, desc="validate", disable=not progress):
        try:
            s.load(num_classes)
        except DatasetError as exc:
            problems += exc.problems
    if problems:
        raise DatasetError(problems, "Invalid dataset")


def validate_pairs(pairs: Iterable[tuple[Path, Path]], progress: bool = False) -> None:
    """Decode every ``(image, binary mask)`` pair and check sizes and mask values.

    Raises:
        DatasetError: listing every bad file at once.
    """
    validate_samples([Sample(Path(i), Path(m), "image", 1) for i, m in pairs], progress=progress)


def validate_dataset(root: str | Path, progress: bool = False) -> list[Sample]:
    """List and fully check a dataset folder (either layout); return its samples."""
    spec = describe_dataset(root)
    samples = list_dataset(spec)
    validate_samples(samples, len(spec.classes), progress)
    return samples


def class_index_mask(sample: Sample) -> np.ndarray:
    """The ``uint8`` class-index mask of a sample at native size."""
    return sample.load()[1]


# ----------------------------------------------------------------------------
# PyTorch dataset
# ----------------------------------------------------------------------------

class SegmentationDataset(Dataset):
    """Samples decoded and brought to the network's input size once, served with an optional augmentation.

    At construction every image and mask is decoded once (with a progress
    bar), checked, and resized as ``prep`` says (:class:`~defectlib.preprocess.Preprocessing`:
    ``image_size x image_size``, or the native size times ``scale``); native-size
    masks are kept too when ``keep_native`` (for evaluation at native resolution).

    An item is a dict with ``image`` (float tensor ``(3, h, w)``, the gray
    channel repeated and normalised), ``mask`` (long tensor ``(h, w)``) and
    ``index``.  With native input, an index ``(i, y, x)`` (from
    :class:`defectlib.training.CropSampler`) serves the ``crop_size`` crop of
    image ``i`` whose top-left corner is ``(y, x)``, padded with the mean gray
    (and background) where the image is smaller; a plain index serves the whole image.

    Args:
        samples: the samples to serve.
        image_size: side ``S`` of the square network input (ignored when ``prep`` is given).
        normalize: ``(mean, std)`` per RGB channel, in [0, 1] units (ignored when ``prep`` is given).
        transform: albumentations transform applied to the resized image (or crop) and mask.
        num_classes: number of classes (checks class-index masks).
        keep_native: keep native-size masks (``native_mask(i)``).
        progress: show a progress bar while decoding.
        prep: the preprocessing (default: square ``image_size`` input with ``normalize``).
        crop_size: side of the training crops of native input.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int = 256,
                 normalize: tuple[Sequence[float], Sequence[float]] = ((0.5,) * 3, (0.5,) * 3),
                 transform: Callable | None = None, num_classes: int | None = None,
                 keep_native: bool = False, progress: bool = False, desc: str = "decode",
                 prep: Preprocessing | None = None, crop_size: int | None = None):
        self.samples = list(samples)
        self.prep = prep or Preprocessing("square", image_size, 1.0, 1024, tuple(normalize[0]), tuple(normalize[1]))
        self.image_size = self.prep.image_size
        self.crop_size = crop_size
        self.mean, self.std = self.prep.mean, self.prep.std
        self.transform = transform
        self.images, self.masks, self.native_masks, self.sizes = [], [], [], []
        self.pixel_counts = np.zeros(max(num_classes or 0, 1), dtype=np.int64)
        problems = []
        for s in tqdm(self.samples, desc=desc, disable=not progress, leave=False):
            try:
                image, mask = s.load(num_classes)
            except DatasetError as exc:
                problems += exc.problems
                continue
            self.sizes.append(image.shape)
            small, small_mask = self.prep.resize(image, mask)
            self.images.append(small)
            self.masks.append(small_mask)
            counts = np.bincount(mask.ravel(), minlength=len(self.pixel_counts))
            if len(counts) > len(self.pixel_counts):
                self.pixel_counts = np.pad(self.pixel_counts, (0, len(counts) - len(self.pixel_counts)))
            self.pixel_counts += counts
            if keep_native:
                self.native_masks.append(mask)
        if problems:
            raise DatasetError(problems, "Invalid dataset")
        self.has_defect = np.array([m.any() for m in self.masks], dtype=bool)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, seed: int) -> None:
        """Re-seed the augmentation (called by the training loop at each epoch)."""
        if self.transform is not None and hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed)

    def native_mask(self, index: int) -> np.ndarray:
        """The class-index mask at the image's native size (needs ``keep_native``)."""
        return self.native_masks[index]

    def crop(self, index: int, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``crop_size`` window of image ``index`` at ``(y, x)`` (smaller where the image is)."""
        c = self.crop_size
        return self.images[index][y:y + c, x:x + c], self.masks[index][y:y + c, x:x + c]

    def __getitem__(self, index) -> dict:
        if isinstance(index, (tuple, list)):
            i, y, x = (int(v) for v in index)
            image, mask = self.crop(i, y, x)
        else:
            i = int(index)
            image, mask = self.images[i], self.masks[i]
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        tensor = to_network_input(image, self.mean, self.std)
        target = torch.from_numpy(np.asarray(mask, dtype=np.int64))
        if isinstance(index, (tuple, list)):   # pad a crop of a small image to the full crop size
            dh, dw = self.crop_size - tensor.shape[1], self.crop_size - tensor.shape[2]
            if dh or dw:
                tensor = torch.nn.functional.pad(tensor, (0, dw, 0, dh))
                target = torch.nn.functional.pad(target, (0, dw, 0, dh))
        return {"image": tensor, "mask": target, "index": i}
