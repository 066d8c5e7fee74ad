"""The Magnetic Tile dataset: where it is found, how it is fetched, and its checksum manifest.

Introduced in chapter 01 (EDA).

:func:`find_dataset` looks at an explicit path, ``$DEFECTLIB_DATA_DIR``,
``data/magnetic-tile`` and ``../shared/datasets/magnetic-tile``; if the dataset
is nowhere it downloads the upstream archive at a pinned commit.  Every file
of an archive or download is checked against the committed SHA-256 manifest
before anything is used, and a failed install leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from .errors import DatasetError
from .paths import project_root, sha256_file

UPSTREAM_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"
UPSTREAM_URL = (
    "https://github.com/abin24/Magnetic-tile-defect-datasets./archive/"
    f"{UPSTREAM_COMMIT}.zip"
)
ENV_DATA_DIR = "DEFECTLIB_DATA_DIR"


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
