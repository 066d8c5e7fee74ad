"""Finding, fetching, validating and loading datasets: Magnetic Tile and your own.

Introduced in chapter 01 (EDA) and chapter 02 (labeling).

Two layouts are understood:

- **Magnetic Tile**: ``MT_<Class>/Imgs/<name>.jpg`` (8-bit grayscale image)
  with ``<name>.png`` beside it (mask, 0 background, 255 defect);
- **folder**: ``images/<stem>.<ext>`` with ``masks/<stem>.png``, described by an
  optional ``dataset.yaml`` (``classes``, ``mask_format``).

The mask contract is the same for both (see :func:`decode_mask`).  Every file
is decoded once per dataset object (:class:`SegmentationDataset`).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .classes import CATEGORIES, CLASSES, DEFECT_CLASSES, FREE


UPSTREAM_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"
UPSTREAM_URL = (
    "https://github.com/abin24/Magnetic-tile-defect-datasets./archive/"
    f"{UPSTREAM_COMMIT}.zip"
)
ENV_DATA_DIR = "DEFECTLIB_DATA_DIR"
#: Mask pixels at or above this value are defect in a 0/255 mask.  Upstream
#: masks are 0/255 except for a few anti-aliased edge pixels (see chapter 02).
MASK_THRESHOLD = 128
#: Mask formats a dataset can declare (see :func:`decode_mask`).
MASK_FORMATS = ("binary", "index")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_NAME_RE = re.compile(r"exp(?P<exp>\d+)_num_(?P<num>\d+)")


class DatasetError(ValueError):
    """Raised for a dataset folder or file that is not what the loader expects.

    The message lists every offending file and what was wrong with it.
    """

    def __init__(self, problems: Sequence[str], header: str = "Invalid dataset"):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{header}: {len(self.problems)} problem(s)\n{shown}{more}")


def project_root() -> Path:
    """The repository holding this package (where ``data/`` and ``results/`` live)."""
    return Path(__file__).resolve().parent.parent


def manifest_path() -> Path:
    """The committed SHA-256 manifest of every upstream file."""
    return project_root() / "data" / "magnetic_tile.sha256"


def read_manifest(path: Path | None = None) -> dict[str, str]:
    """Read a ``sha256sum``-style manifest into ``{relative path: digest}``."""
    path = Path(path or manifest_path())
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest
    return entries


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_manifest(root: Path, manifest: dict[str, str] | None = None, progress: bool = True) -> None:
    """Check every file listed in the manifest against its SHA-256.

    Raises:
        DatasetError: naming each missing file and each file whose digest differs.
    """
    manifest = manifest if manifest is not None else read_manifest()
    problems = []
    for name, digest in tqdm(sorted(manifest.items()), desc="verify sha256", disable=not progress):
        path = Path(root) / name
        if not path.is_file():
            problems.append(f"{path}: missing (listed in the manifest)")
        elif sha256_file(path) != digest:
            problems.append(f"{path}: SHA-256 mismatch (expected {digest[:12]}...)")
    if problems:
        raise DatasetError(problems, header=f"Checksum verification failed for {root}")


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar:
            while block := response.read(1 << 16):
                out.write(block)
                bar.update(len(block))


def _dataset_root_in(folder: Path) -> Path:
    """The folder holding ``MT_*`` directories (an archive wraps them in one level)."""
    if any(folder.glob("MT_*")):
        return folder
    for child in folder.iterdir():
        if child.is_dir() and any(child.glob("MT_*")):
            return child
    raise DatasetError([f"{folder}: no MT_<Class> folders found"], header="Not a Magnetic Tile dataset")


def install_dataset(source: str | Path, dest: Path, manifest: dict[str, str] | None = None) -> Path:
    """Install the dataset from a URL, a local ``.zip`` archive or a directory.

    The files are unpacked into a temporary folder beside ``dest``, every file is
    checked against the manifest, and only then is the folder renamed to
    ``dest``.  A failed or interrupted install leaves nothing at ``dest``.

    Args:
        source: ``http(s)://`` URL, path to a zip archive, or dataset directory.
        dest: where the verified dataset should end up; must not exist yet.
        manifest: ``{relative path: sha256}``; the committed manifest by default.

    Returns:
        ``dest``.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it or pass it as the dataset path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        src = str(source)
        if src.startswith(("http://", "https://")):
            archive = work / "archive.zip"
            _download(src, archive)
        else:
            archive = Path(src)
        unpacked = work / "unpacked"
        if archive.is_dir():
            shutil.copytree(archive, unpacked)
        else:
            try:
                with zipfile.ZipFile(archive) as zf:
                    for member in tqdm(zf.infolist(), desc="extract"):
                        zf.extract(member, unpacked)
            except zipfile.BadZipFile as exc:
                raise DatasetError([f"{archive}: not a readable zip archive ({exc})"], "Bad archive") from exc
        root = _dataset_root_in(unpacked)
        verify_manifest(root, manifest)
        os.replace(root, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def find_dataset(path: str | Path | None = None, download: bool = True) -> Path:
    """Locate the Magnetic Tile dataset, downloading it if it is nowhere.

    Looks, in order, at ``path``, ``$DEFECTLIB_DATA_DIR``, ``data/magnetic-tile``
    in the project, and ``../shared/datasets/magnetic-tile`` beside the project.
    If none exists and ``download`` is true, the upstream archive at the pinned
    commit is downloaded into ``data/magnetic-tile`` and verified.

    ``path`` (or the variable) may also point to a zip archive, which is then
    verified and unpacked into ``data/magnetic-tile``.
    """
    local = project_root() / "data" / "magnetic-tile"
    explicit = path or os.environ.get(ENV_DATA_DIR)
    if explicit:
        explicit = Path(explicit).expanduser()
        if explicit.is_dir():
            return explicit
        if explicit.is_file():
            return local if local.is_dir() else install_dataset(explicit, local)
        raise FileNotFoundError(f"{explicit}: dataset path does not exist")
    for candidate in (local, project_root().parent / "shared" / "datasets" / "magnetic-tile"):
        if candidate.is_dir():
            return candidate
    if not download:
        raise FileNotFoundError(
            f"Magnetic Tile dataset not found (looked at ${ENV_DATA_DIR}, {local}, "
            f"{project_root().parent / 'shared' / 'datasets' / 'magnetic-tile'}); set {ENV_DATA_DIR}, "
            "or run `python -m defectlib data` to download and verify it"
        )
    return install_dataset(UPSTREAM_URL, local)


def sample_dataset() -> Path:
    """The tiny committed subset (a few images per category) in upstream layout."""
    return project_root() / "data" / "sample"



# ----------------------------------------------------------------------------
# Reading and validating files
# ----------------------------------------------------------------------------

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
    import yaml

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

def to_network_input(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A grayscale image as the RGB-pretrained encoder expects it.

    The gray channel is repeated three times, scaled to [0, 1], then
    normalised per channel with ``mean`` and ``std``.

    Shape:
        - ``image``: ``(H, W)`` uint8; output ``(3, H, W)`` float32.
    """
    gray = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (gray.expand(3, *gray.shape) - mean_t) / std_t


class SegmentationDataset(Dataset):
    """Samples decoded and resized once, served with an optional augmentation.

    At construction every image and mask is decoded once (with a progress
    bar), checked, and resized to ``image_size`` (area interpolation for images,
    nearest for masks); native-size masks are kept too when ``keep_native``
    (for evaluation at native resolution).

    Each item is a dict with ``image`` (float tensor ``(3, S, S)``, the gray
    channel repeated and normalised by ``normalize``), ``mask`` (long tensor
    ``(S, S)``) and ``index``.

    Args:
        samples: the samples to serve.
        image_size: side ``S`` of the square network input.
        normalize: ``(mean, std)`` per RGB channel, in [0, 1] units.
        transform: albumentations transform applied to the resized image and mask.
        num_classes: number of classes (checks class-index masks).
        keep_native: keep native-size masks (``native_mask(i)``).
        progress: show a progress bar while decoding.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int,
                 normalize: tuple[Sequence[float], Sequence[float]] = ((0.5,) * 3, (0.5,) * 3),
                 transform: Callable | None = None, num_classes: int | None = None,
                 keep_native: bool = False, progress: bool = False, desc: str = "decode"):
        import cv2

        self.samples = list(samples)
        self.image_size = image_size
        self.mean, self.std = tuple(normalize[0]), tuple(normalize[1])
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
            self.images.append(cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA))
            self.masks.append(cv2.resize(mask, (image_size, image_size), interpolation=cv2.INTER_NEAREST))
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

    def __getitem__(self, index: int) -> dict:
        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {"image": to_network_input(image, self.mean, self.std),
                "mask": torch.from_numpy(np.asarray(mask, dtype=np.int64)),
                "index": index}
