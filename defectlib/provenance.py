"""Provenance of a run: the code's git commit and the environment it ran in.

Introduced in chapter 03 (baseline); every run record carries both.
"""
from __future__ import annotations

import platform
import subprocess

import albumentations
import numpy
import segmentation_models_pytorch
import timm
import torch

from .paths import project_root


def git_commit() -> str | None:
    """Commit of the project checkout, with ``+dirty`` if tracked files differ from it (None outside git)."""
    try:
        root = project_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(device: torch.device | str = "cpu") -> dict:
    """Package versions and the device a run computes on (``cpu``, or ``cuda`` with the GPU's name)."""
    device = torch.device(device)
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
        "albumentations": albumentations.__version__,
        "numpy": numpy.__version__,
        "device": device.type,
        **({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
