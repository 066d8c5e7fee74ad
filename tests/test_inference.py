import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defectlib.inference import bilinear_weights, native_prediction


@pytest.mark.parametrize("out_size, in_size", [(7, 3), (632, 256), (256, 256), (100, 256)])
def test_bilinear_weights_match_torch_interpolate(out_size, in_size):
    x = torch.randn(in_size, dtype=torch.float64)
    ours = bilinear_weights(out_size, in_size).double() @ x
    ref = F.interpolate(x[None, None], size=out_size, mode="linear", align_corners=False)[0, 0]
    assert torch.allclose(ours, ref, atol=1e-6)


def test_banded_prediction_equals_full_resolution_softmax():
    logit = torch.randn(6, 16, 16, generator=torch.Generator().manual_seed(0)) * 3
    size = (203, 157)
    mask, score = native_prediction(logit, size, band_rows=37)
    probs = F.interpolate(logit[None], size=size, mode="bilinear", align_corners=False)[0].softmax(0)
    assert (mask == probs.argmax(0).numpy()).mean() > 0.9999
    assert score == pytest.approx(float((1 - probs[0]).max()), abs=1e-5)
    assert mask.dtype == np.uint8 and mask.shape == size
