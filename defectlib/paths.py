"""Where things live: the project root, the profiles, the results folder; atomic JSON and file hashes.

Introduced in chapter 03 (baseline).  A leaf module: it imports nothing
from the package, so anything may use it.

Profiles (``$DEFECTLIB_PROFILE``): ``full`` (default) writes records and
checkpoints under ``results/``; ``smoke`` (set by CI) shrinks every run (see
:data:`defectlib.config.SMOKE_OVERRIDES`) and writes only to a temporary
directory.  Runs on your own data (a ``folder`` dataset) write into
``defectlib-results/`` inside that dataset's folder, never into the project.
``$DEFECTLIB_RESULTS_DIR`` overrides the results folder in every case.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from .errors import ConfigError

ENV_PROFILE = "DEFECTLIB_PROFILE"
ENV_RESULTS = "DEFECTLIB_RESULTS_DIR"
PROFILES = ("full", "smoke")


def project_root() -> Path:
    """The repository holding this package (where ``data/``, ``configs/`` and ``results/`` live)."""
    return Path(__file__).resolve().parent.parent


def current_profile() -> str:
    """``full`` or ``smoke``, from ``$DEFECTLIB_PROFILE``.

    Raises:
        ConfigError: the variable names another profile.
    """
    name = os.environ.get(ENV_PROFILE, "full")
    if name not in PROFILES:
        raise ConfigError(f"{ENV_PROFILE}={name!r}; expected one of {PROFILES}")
    return name


def results_dir(profile: str | None = None) -> Path:
    """Where records and checkpoints go: ``$DEFECTLIB_RESULTS_DIR``, else ``results/``, or a temp dir for smoke."""
    if os.environ.get(ENV_RESULTS):
        return Path(os.environ[ENV_RESULTS])
    if (profile or current_profile()) == "smoke":
        return Path(tempfile.gettempdir()) / "defectlib-smoke"
    return project_root() / "results"


OWN_RESULTS = "defectlib-results"


def config_results_dir(cfg: dict) -> Path:
    """Where a run of ``cfg`` keeps its records: :func:`results_dir`, except that a run on your own
    data (``data.dataset: folder``) writes into ``<data.root>/defectlib-results`` (full profile,
    no ``$DEFECTLIB_RESULTS_DIR``), so that nothing about your images lands in the project."""
    data = cfg.get("data") or {}
    profile = cfg.get("profile")
    if data.get("dataset") == "folder" and data.get("root") and not os.environ.get(ENV_RESULTS) \
            and (profile or current_profile()) == "full":
        return Path(data["root"]).resolve() / OWN_RESULTS
    return results_dir(profile)


def assets_dir() -> Path | None:
    """``assets/`` (README figures) in the full profile; None in smoke, which writes nothing into the project."""
    return project_root() / "assets" if current_profile() == "full" else None


def relative_to_project(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, else absolute (as records store paths)."""
    path = Path(path).resolve()
    root = project_root()
    return os.path.relpath(path, root) if path.is_relative_to(root) else str(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_NUMBER_LIST = re.compile(r"\[\s+((?:-?[\d.eE+-]+|NaN|Infinity|-Infinity)(?:,\s+(?:-?[\d.eE+-]+|NaN|Infinity|-Infinity))*)\s+\]")


def write_json(path: str | Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename (a kill never leaves half a file).

    Indented for reading, with lists of numbers kept on one line (per-image
    confusion matrices would otherwise take a line per number).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                            json.dumps(payload, indent=1))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
