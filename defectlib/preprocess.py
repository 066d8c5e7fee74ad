"""Preprocessing: the one path from an image's pixels to the network's input, and from its output back.

Introduced with the native-resolution engine (the confirmatory chapter).

Two input modes (``data.input``):

- ``square``: every image resized to ``image_size x image_size`` (area
  interpolation), the logits resized back to the image's size;
- ``native``: every image at its own size times ``scale``; training on crops
  of it, prediction on the whole image padded to a multiple of the network's
  stride (:data:`STRIDE`), in overlapping tiles with Gaussian blending where
  it is larger than ``tile_size``.

:class:`Preprocessing` holds the settings and is built from a config or from
an exported ONNX model's metadata, so training, evaluation, ``predict`` and
ONNX Runtime inference prepare an image with the same code.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Every architecture's output stride: native inputs are padded to a multiple of it.
STRIDE = 32
#: Share of a tile that overlaps its neighbour in sliding-window inference.
TILE_OVERLAP = 0.5

#: ``forward(batch (N, 3, h, w)) -> logits (N, C, h, w)``: any backend (PyTorch, ONNX Runtime).
Forward = Callable[[torch.Tensor], torch.Tensor]


def to_network_input(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A grayscale image as the RGB-pretrained encoder expects it.

    The gray channel is repeated three times, scaled to [0, 1], then
    normalised per channel with ``mean`` and ``std``.

    Shape:
        - ``image``: ``(H, W)`` uint8; output ``(3, H, W)`` float32.
    """
    gray = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (gray.expand(3, *gray.shape) - mean_t) / std_t


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for one model (see the module docstring).

    Attributes:
        input: ``square`` or ``native``.
        image_size: side of the square input.
        scale: global scale factor of the native input.
        tile_size: largest side predicted in one piece (native input).
        mean, std: per-channel normalisation the encoder's weights expect.
    """

    input: str
    image_size: int
    scale: float
    tile_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_config(cls, cfg: dict, mean: Sequence[float], std: Sequence[float]) -> Preprocessing:
        """The preprocessing of a resolved config (normalisation from its encoder, passed in)."""
        d = cfg["data"]
        return cls(d.get("input", "square"), d["image_size"], d.get("scale", 1.0), d.get("tile_size", 1024),
                   tuple(mean), tuple(std))

    @classmethod
    def from_metadata(cls, meta: dict) -> Preprocessing:
        """The preprocessing written into an exported model (older exports: square input)."""
        return cls(meta.get("input_mode", "square"), int(meta["image_size"]), float(meta.get("scale", 1.0)),
                   int(meta.get("tile_size", 1024)), tuple(meta["mean"]), tuple(meta["std"]))

    def metadata(self) -> dict:
        """The settings as plain values, for an exported model's metadata (``input`` named ``input_mode``)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        values["input_mode"] = values.pop("input")
        return values

    @property
    def native(self) -> bool:
        return self.input == "native"

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` the network sees for an image of native size ``(height, width)`` (before padding)."""
        if not self.native:
            return self.image_size, self.image_size
        if self.scale == 1.0:
            return height, width
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def resize(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Image (area interpolation when shrinking, bilinear when enlarging) and mask (nearest) at the input size."""
        h, w = self.input_size(*image.shape[:2])
        if (h, w) == image.shape[:2]:
            return image, mask
        shrink = h * w <= image.shape[0] * image.shape[1]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink or not self.native else cv2.INTER_LINEAR)
        if mask is not None:
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        return image, mask

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """A grayscale ``(H, W)`` uint8 image as the network's input ``(3, h, w)`` (not yet padded)."""
        return to_network_input(self.resize(image)[0], self.mean, self.std)

    def forward(self, forward: Forward, batch: torch.Tensor) -> torch.Tensor:
        """Logits of prepared inputs: as they are for square input; padded, and tiled if large, for native."""
        if not self.native:
            return forward(batch)
        return tiled_logits(forward, batch, self.tile_size)


def pad_to_stride(batch: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Zero-pad (the mean gray after normalisation) the bottom and right of a batch to multiples of ``stride``.

    Shape:
        - ``batch``: ``(N, 3, h, w)``; output ``(N, 3, ceil(h / stride) * stride, ...)``.
    """
    h, w = batch.shape[-2:]
    return F.pad(batch, (0, -w % stride, 0, -h % stride))


def _gaussian_window(size: int, sigma_fraction: float = 0.125) -> torch.Tensor:
    """1-D Gaussian weights over a tile side (nnU-Net's choice: sigma 1/8 of the tile), never zero."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / (sigma_fraction * size)) ** 2)
    return w / w.max() + 1e-3


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile origins covering ``[0, length)``: every ``step``, the last one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _tile_grid(height: int, width: int, tile_size: int, overlap: float, stride: int):
    """Padded size ``(ph, pw)``, tile size ``(th, tw)`` and tile origins ``(ys, xs)`` of sliding-window inference."""
    ph, pw = math.ceil(height / stride) * stride, math.ceil(width / stride) * stride
    th, tw = min(tile_size, ph), min(tile_size, pw)
    sh = max(stride, int(th * (1 - overlap)) // stride * stride)
    sw = max(stride, int(tw * (1 - overlap)) // stride * stride)
    return (ph, pw), (th, tw), (_starts(ph, th, sh), _starts(pw, tw, sw))


def tiled_logits(forward: Forward, batch: torch.Tensor, tile_size: int, overlap: float = TILE_OVERLAP,
                 stride: int = STRIDE) -> torch.Tensor:
    """Logits of a batch of any size: padded to ``stride``, in one piece up to ``tile_size``, else in
    overlapping square tiles whose logits are averaged with Gaussian weights; cropped back to the input.

    Shape:
        - ``batch``: ``(N, 3, h, w)`` prepared inputs; output ``(N, C, h, w)``.
    """
    h, w = batch.shape[-2:]
    padded = pad_to_stride(batch, stride)
    (ph, pw), (tile_h, tile_w), (ys, xs) = _tile_grid(h, w, tile_size, overlap, stride)
    if len(ys) * len(xs) == 1:
        return forward(padded)[..., :h, :w]
    weight = _gaussian_window(tile_h)[:, None] * _gaussian_window(tile_w)[None, :]
    total = norm = None
    for y in ys:
        for x in xs:
            out = forward(padded[..., y:y + tile_h, x:x + tile_w]).float()
            if total is None:
                total = torch.zeros(out.shape[0], out.shape[1], ph, pw)
                norm = torch.zeros(ph, pw)
            total[..., y:y + tile_h, x:x + tile_w] += out.cpu() * weight
            norm[y:y + tile_h, x:x + tile_w] += weight
    return (total / norm)[..., :h, :w]


def tile_count(height: int, width: int, tile_size: int, overlap: float = TILE_OVERLAP, stride: int = STRIDE) -> int:
    """How many forward passes :func:`tiled_logits` makes for an input of ``(height, width)``."""
    _, _, (ys, xs) = _tile_grid(height, width, tile_size, overlap, stride)
    return len(ys) * len(xs)
