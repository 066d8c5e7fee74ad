import socket

import pytest
import torch

from defectlib.models import (OFFLINE_WEIGHTS, build_model, encoder_normalization, imagenet_classifier,
                              lite0_imagenet_state_dict)


def _imagenet_class(model, image, encoder="tf_efficientnet_lite0"):
    mean, std = encoder_normalization(encoder)
    size = model.pretrained_cfg["input_size"][1:]
    x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255.0
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        return int(model(x).argmax())


@pytest.mark.parametrize("encoder", sorted(OFFLINE_WEIGHTS))
def test_mapped_classifier_recognises_skimage_pictures(encoder):
    skimage_data = pytest.importorskip("skimage.data")
    model = imagenet_classifier(encoder)
    assert _imagenet_class(model, skimage_data.chelsea(), encoder) == 285  # Egyptian cat
    assert _imagenet_class(model, skimage_data.coffee(), encoder) == 967   # espresso


def test_normalisation_comes_from_timm_config():
    assert encoder_normalization() == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_segmentation_encoder_holds_the_mapped_tensors():
    model = build_model("unet", pretrained=True)
    weights = lite0_imagenet_state_dict()
    encoder = model.encoder.model.state_dict()
    assert len(encoder) == 288  # all but conv_head, bn2 and the classifier
    for name, tensor in encoder.items():
        assert torch.equal(tensor, weights[name]), name


@pytest.mark.parametrize("architecture", ["unet", "unetplusplus", "fpn", "deeplabv3plus"])
def test_architectures_build_offline(monkeypatch, architecture):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = build_model(architecture, num_classes=6, pretrained=True).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 6, 64, 64)


def test_pretrained_other_encoder_is_refused():
    with pytest.raises(ValueError, match="offline ImageNet weights"):
        build_model("unet", encoder="resnet18", pretrained=True)


def test_flip_tta_averages_the_flipped_back_outputs():
    from defectlib.models import with_tta

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)           # not flip-equivariant: its kernel is asymmetric
    x = torch.randn(2, 3, 8, 10)
    with torch.no_grad():
        expected = (conv(x) + conv(x.flip(-1)).flip(-1) + conv(x.flip(-2)).flip(-2)
                    + conv(x.flip((-2, -1))).flip((-2, -1))) / 4
        assert torch.allclose(with_tta(conv, x, "flips"), expected, atol=1e-6)
        assert not torch.allclose(with_tta(conv, x, "flips"), conv(x), atol=1e-3)
        assert torch.equal(with_tta(conv, x, "none"), conv(x))
        # a flip-equivariant network (a symmetric kernel) is unchanged by flip TTA
        sym = torch.nn.Conv2d(3, 2, 3, padding=1, bias=False)
        sym.weight.copy_(torch.ones_like(sym.weight))
        assert torch.allclose(with_tta(sym, x, "flips"), sym(x), atol=1e-5)
    with pytest.raises(ValueError, match="rot90"):
        with_tta(conv, x, "rot90")
