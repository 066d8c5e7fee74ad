"""ONNX export of a checkpoint, and an ONNX Runtime model with the same interface.

Introduced in the book's "Deploying the model" page; used by
``python -m defectlib export`` and ``predict --backend onnxruntime``.

The exported graph maps a normalised batch ``(N, 3, H, W)`` (the gray channel
repeated, ``(x / 255 - mean) / std``) to logits ``(N, C, H, W)``; the batch
size and the image size are dynamic (H and W multiples of 32).  Everything a
user needs to feed it is in the model's metadata: class names,
normalisation, the training input size, and the config hash of the run.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import config_hash
from .errors import OnnxModelError
from .models import encoder_normalization, load_checkpoint
from .paths import sha256_file
from .preprocess import Preprocessing

#: Prefix of the metadata keys written into an exported model.
META_PREFIX = "defectlib."
OPSET = 18


def _set_metadata(model, meta: dict) -> None:
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)


def export_onnx(checkpoint: str | Path, out: str | Path) -> Path:
    """Export a defectlib checkpoint to one self-contained ONNX file (written atomically).

    Returns:
        The path of the written model.

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    import onnx

    checkpoint, out = Path(checkpoint), Path(out)
    model, cfg = load_checkpoint(checkpoint)
    model = model.float().eval()
    mean, std = encoder_normalization(cfg["model"]["encoder"])
    prep = Preprocessing.from_config(cfg, mean, std)
    size = prep.image_size if not prep.native else cfg["data"]["crop_size"]
    axes = {0: "batch", 2: "height", 3: "width"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        # The TorchScript exporter: the torch.export-based one spends over 5 minutes of shape reasoning
        # on this U-Net on two CPU cores, this one about a second, with the same outputs (tests/test_export.py).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), input_names=["image"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"image": axes, "logits": axes})
        proto = onnx.load(tmp)
        _set_metadata(proto, {"format": "defectlib-onnx-1", "classes": list(cfg["data"]["classes"]),
                              **prep.metadata(),
                              "input": "image (N, 3, H, W) float32: gray channel repeated, (x / 255 - mean) / std; "
                                       "H, W multiples of 32",
                              "output": "logits (N, C, H, W) float32; softmax over C gives class probabilities",
                              "config_hash": config_hash(cfg), "checkpoint_sha256": sha256_file(checkpoint)})
        onnx.save(proto, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class OnnxModel:
    """An exported model in an ONNX Runtime session, with its preprocessing from the metadata.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        threads: intra-op threads (default: all cores).

    Raises:
        OnnxModelError: missing file, not ONNX, or no defectlib metadata.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"not a defectlib ONNX model: {path} (no such file)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise OnnxModelError(f"not a defectlib ONNX model: {path} (ONNX Runtime cannot load it: "
                                 f"{str(exc).splitlines()[0][:200]})") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(META_PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}
        if self.metadata.get("format") != "defectlib-onnx-1":
            raise OnnxModelError(f"not a defectlib ONNX model: {path} (no defectlib metadata)")
        self.path = path
        self.classes = tuple(self.metadata["classes"])
        self.prep = Preprocessing.from_metadata(self.metadata)
        self.image_size, self.mean, self.std = self.prep.image_size, self.prep.mean, self.prep.std

    def logits(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits ``(N, C, H, W)`` of a normalised batch ``(N, 3, H, W)``."""
        array = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        (out,) = self.session.run(None, {"image": np.ascontiguousarray(array, dtype=np.float32)})
        return torch.from_numpy(out)
