"""Finding, fetching, validating and loading the Magnetic Tile dataset.

Introduced in chapter 01 (EDA) and chapter 02 (labeling).

The upstream layout is ``MT_<Class>/Imgs/<name>.jpg`` (8-bit grayscale image)
with ``<name>.png`` beside it (8-bit mask, 0 background, 255 defect).  This
module turns that layout into class-index masks (see :data:`CLASSES`) and into
a PyTorch :class:`~torch.utils.data.Dataset`.
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

#: Pixel classes; the index is the value in a class-index mask.
CLASSES: tuple[str, ...] = ("background", "Blowhole", "Break", "Crack", "Fray", "Uneven")
#: Image-level categories of the dataset, including defect-free ``Free``.
CATEGORIES: tuple[str, ...] = ("Blowhole", "Break", "Crack", "Fray", "Uneven", "Free")
DEFECT_CLASSES: tuple[str, ...] = CLASSES[1:]

UPSTREAM_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"
UPSTREAM_URL = (
    "https://github.com/abin24/Magnetic-tile-defect-datasets./archive/"
    f"{UPSTREAM_COMMIT}.zip"
)
ENV_DATA_DIR = "DEFECTLIB_DATA_DIR"
#: Mask pixels at or above this value are defect.  Upstream masks are 0/255
#: except for a few anti-aliased edge pixels (see chapter 02).
MASK_THRESHOLD = 128
#: Largest share of a mask's pixels allowed to be neither 0 nor 255 before the
#: mask is rejected as "not a binary mask" (upstream's worst mask is far below).
MAX_INTERMEDIATE_FRACTION = 0.05

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
            f"Magnetic Tile dataset not found; set {ENV_DATA_DIR} or place it in {local}"
        )
    return install_dataset(UPSTREAM_URL, local)


def sample_dataset() -> Path:
    """The tiny committed subset (a few images per category) in upstream layout."""
    return project_root() / "data" / "sample"


# ----------------------------------------------------------------------------
# Reading and validating files
# ----------------------------------------------------------------------------

def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an ``uint8`` array of shape ``(H, W)`` (grayscale).

    Raises:
        DatasetError: if the file cannot be decoded completely.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError([f"{path}: unreadable or truncated image ({exc})"], "Bad image") from exc


def read_binary_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an upstream 0/255 mask as a boolean ``(H, W)`` array (threshold 128).

    Raises:
        DatasetError: unreadable file, not 8-bit single-channel, size differing
            from ``shape``, or too many values other than 0 and 255.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError([f"{path}: unreadable or truncated mask ({exc})"], "Bad mask") from exc
    problems = check_mask_array(arr, mode, path, shape)
    if problems:
        raise DatasetError(problems, "Bad mask")
    return arr.astype(bool) if mode == "1" else arr >= MASK_THRESHOLD


def check_mask_array(arr: np.ndarray, mode: str, path: Path, shape: tuple[int, int] | None) -> list[str]:
    """Problems with a decoded mask (empty list if fine)."""
    if mode not in ("L", "1") or arr.ndim != 2:
        return [f"{path}: mask must be 8-bit single-channel (or 1-bit), got mode {mode} with shape {arr.shape}"]
    if shape is not None and arr.shape != tuple(shape):
        return [f"{path}: mask size {arr.shape[1]}x{arr.shape[0]} differs from image size {shape[1]}x{shape[0]}"]
    if mode == "1":
        return []
    other = np.count_nonzero((arr != 0) & (arr != 255))
    if other > MAX_INTERMEDIATE_FRACTION * arr.size:
        return [f"{path}: {other} of {arr.size} pixels are neither 0 nor 255; expected a 0/255 mask"]
    return []


@dataclass(frozen=True)
class Sample:
    """One image/mask pair of the Magnetic Tile dataset."""

    image: Path
    mask: Path
    category: str  # one of CATEGORIES

    @property
    def name(self) -> str:
        """``<MT_Class>/<stem>``: unique across the dataset."""
        return f"MT_{self.category}/{self.image.stem}"

    @property
    def label(self) -> int:
        """Pixel class index of the defect (0 for Free)."""
        return CLASSES.index(self.category) if self.category in CLASSES else 0

    @property
    def exp(self) -> int:
        """Lighting set-up ``k`` of ``exp<k>_num_<n>``."""
        m = _NAME_RE.search(self.image.stem)
        return int(m["exp"]) if m else -1

    @property
    def num(self) -> int:
        """Capture number ``n`` of ``exp<k>_num_<n>``."""
        m = _NAME_RE.search(self.image.stem)
        return int(m["num"]) if m else -1


def list_samples(root: str | Path) -> list[Sample]:
    """List image/mask pairs in upstream layout, sorted by name (no decoding).

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
        samples += [Sample(jpgs[s], pngs[s], category) for s in sorted(jpgs.keys() & pngs.keys())]
    if problems:
        raise DatasetError(problems, f"Invalid dataset at {root}")
    if not samples:
        raise DatasetError([f"{root}: no MT_<Class>/Imgs/*.jpg images found"], "Empty dataset")
    return samples


def validate_pairs(pairs: Iterable[tuple[Path, Path]], progress: bool = False) -> None:
    """Decode every image and mask and check sizes and mask values.

    Raises:
        DatasetError: listing every bad file at once.
    """
    problems = []
    for image_path, mask_path in tqdm(list(pairs), desc="validate", disable=not progress):
        try:
            image = read_image(image_path)
            read_binary_mask(mask_path, image.shape)
        except DatasetError as exc:
            problems += exc.problems
    if problems:
        raise DatasetError(problems, "Invalid dataset")


def validate_dataset(root: str | Path, progress: bool = False) -> list[Sample]:
    """List and fully check a dataset folder in upstream layout; return its samples."""
    samples = list_samples(root)
    validate_pairs(((s.image, s.mask) for s in samples), progress)
    return samples


def class_index_mask(sample: Sample) -> np.ndarray:
    """The ``uint8`` class-index mask of a sample: 0 background, else its class."""
    image = Image.open(sample.image)
    binary = read_binary_mask(sample.mask, (image.height, image.width))
    return binary.astype(np.uint8) * sample.label


# ----------------------------------------------------------------------------
# PyTorch datasets
# ----------------------------------------------------------------------------

def to_network_input(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A grayscale image as the RGB-pretrained encoder expects it.

    The gray channel is repeated three times, scaled to [0, 1], then
    normalised per channel with ``mean`` and ``std``.

    Shape:
        - ``image``: ``(H, W)`` uint8; output ``(3, H, W)`` float32.
    """
    rgb = np.repeat(np.asarray(image)[..., None], 3, axis=2).astype(np.float32) / 255.0
    rgb = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


class SegmentationDataset(Dataset):
    """Images and class-index masks with an albumentations transform on both.

    Each item is a dict with ``image`` (float tensor ``(3, H, W)``, the gray
    channel repeated and normalised by ``normalize``), ``mask`` (long tensor
    ``(H, W)``) and ``meta`` (``path``, ``category``, ``label``, ``height``,
    ``width`` of the original image).

    Args:
        pairs: ``(image path, mask path, label)``; ``label`` is the class of
            the defect pixels of that mask (0 = defect-free image).
        transform: albumentations transform applied to image and mask
            (masks are always resampled nearest-neighbour by albumentations).
        normalize: ``(mean, std)`` per RGB channel, in [0, 1] units.
        categories: optional category names per pair, for the metadata.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path, int]],
        transform: Callable | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] = ((0.5,) * 3, (0.5,) * 3),
        categories: Sequence[str] | None = None,
    ):
        self.pairs = list(pairs)
        self.transform = transform
        self.mean = np.asarray(normalize[0], dtype=np.float32)
        self.std = np.asarray(normalize[1], dtype=np.float32)
        self.categories = list(categories) if categories else [CLASSES[p[2]] for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Native-resolution ``(image uint8 (H, W), class-index mask uint8 (H, W))``."""
        image_path, mask_path, label = self.pairs[index]
        image = read_image(image_path)
        mask = read_binary_mask(mask_path, image.shape).astype(np.uint8) * label
        return image, mask

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        height, width = image.shape
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {
            "image": to_network_input(image, self.mean, self.std),
            "mask": torch.from_numpy(np.asarray(mask, dtype=np.int64)),
            "meta": {
                "path": str(self.pairs[index][0]),
                "category": self.categories[index],
                "label": self.pairs[index][2],
                "height": height,
                "width": width,
            },
        }


class MagneticTileDataset(SegmentationDataset):
    """The Magnetic Tile dataset (or a subset of it) as a segmentation dataset.

    Args:
        samples: the samples to serve, e.g. from :func:`list_samples` filtered
            by a split (see :mod:`defectlib.splits`).
        transform, normalize: as in :class:`SegmentationDataset`.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] = ((0.5,) * 3, (0.5,) * 3)):
        self.samples = list(samples)
        super().__init__([(s.image, s.mask, s.label) for s in self.samples], transform, normalize,
                         [s.category for s in self.samples])


def folder_pairs(images_dir: str | Path, masks_dir: str | Path, defect_label: int = 1) -> list[tuple[Path, Path, int]]:
    """Pair ``images_dir/<stem>.*`` with ``masks_dir/<stem>.png`` for your own data.

    Masks are 0/255 (or 0/1 mode-"1") binary PNGs; defect pixels get
    ``defect_label``.  Every file is decoded and checked.

    Raises:
        DatasetError: empty folder, non-image file, missing pair, bad size or values.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    problems = []
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            problems.append(f"{d}: not a directory")
    if problems:
        raise DatasetError(problems, "No dataset")
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not images:
        raise DatasetError([f"{images_dir}: folder holds no images"], "Empty dataset")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    pairs = []
    for p in images:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{p}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        elif p.stem not in masks:
            problems.append(f"{p}: no mask {masks_dir / (p.stem + '.png')}")
        else:
            pairs.append((p, masks[p.stem], defect_label))
    if problems:
        raise DatasetError(problems, f"Invalid dataset at {images_dir}")
    validate_pairs((i, m) for i, m, _ in pairs)
    return pairs


class FolderDataset(SegmentationDataset):
    """Your own data: ``images_dir/<stem>.<ext>`` with ``masks_dir/<stem>.png``.

    Every pair is decoded and validated up front (see :func:`folder_pairs`);
    defect pixels of the 0/255 masks get class ``defect_label``.

    Args:
        images_dir, masks_dir: the two folders.
        transform, normalize: as in :class:`SegmentationDataset`.
        defect_label: class index for defect pixels (1..5 to reuse a Magnetic Tile model's classes).
    """

    def __init__(self, images_dir: str | Path, masks_dir: str | Path, transform: Callable | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] = ((0.5,) * 3, (0.5,) * 3), defect_label: int = 1):
        super().__init__(folder_pairs(images_dir, masks_dir, defect_label), transform, normalize)
