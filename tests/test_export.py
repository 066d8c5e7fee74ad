"""ONNX export: parity with PyTorch, ONNX Runtime prediction, quantisation, errors."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from defectlib import cli, data, download, export, inference, models


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """The smoke run's checkpoint and its ONNX export."""
    record, root = trained_run
    checkpoint = root / record["checkpoint"]["path"]
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return checkpoint, out


def _sample_batch(size, mean, std):
    images = [data.read_image(s.image) for s in data.list_samples(download.sample_dataset())]
    return torch.stack([data.to_network_input(np.array(Image.fromarray(im).resize((size[1], size[0]))), mean, std)
                        for im in images])


@pytest.mark.parametrize("shape", [(64, 64), (96, 160)])
def test_onnx_probabilities_match_pytorch(exported, shape):
    checkpoint, path = exported
    model, _ = models.load_checkpoint(checkpoint)
    onnx_model = export.OnnxModel(path)
    batch = _sample_batch(shape, onnx_model.mean, onnx_model.std)     # every sample image, one batch
    with torch.no_grad():
        reference = model.float().eval()(batch).softmax(1)
    probs = onnx_model.logits(batch).softmax(1)
    assert probs.shape == reference.shape
    assert (probs - reference).abs().max().item() <= 1e-4
    assert (probs.argmax(1) == reference.argmax(1)).float().mean().item() >= 0.999


def test_onnx_metadata_describes_the_input(exported, smoke_config):
    _, path = exported
    meta = export.OnnxModel(path).metadata
    assert meta["classes"] == list(smoke_config["data"]["classes"])
    assert meta["image_size"] == smoke_config["data"]["image_size"]
    assert (tuple(meta["mean"]), tuple(meta["std"])) == models.encoder_normalization(smoke_config["model"]["encoder"])


def test_predict_with_onnxruntime_gives_the_pytorch_outputs(exported, tmp_path):
    checkpoint, path = exported
    inputs = [str(s.image) for s in data.list_samples(download.sample_dataset())]
    rows_pt, _ = inference.predict_to_folder(checkpoint, inputs, tmp_path / "pt", precision="fp32", progress=False)
    assert cli.main(["predict", "--checkpoint", str(path), "--backend", "onnxruntime", *inputs,
                     "--out", str(tmp_path / "ort")]) == 0
    with open(tmp_path / "ort" / inference.CSV_NAME) as f:
        rows_ort = list(csv.DictReader(f))
    assert [r["image"] for r in rows_ort] == [r["image"] for r in rows_pt] and len(rows_pt) > 5
    same = total = 0
    for row in rows_pt:
        a = np.asarray(Image.open(tmp_path / "pt" / f"{row['output_stem']}_mask.png"))
        b = np.asarray(Image.open(tmp_path / "ort" / f"{row['output_stem']}_mask.png"))
        same, total = same + (a == b).sum(), total + a.size
    assert same / total >= 0.999
    for a, b in zip(rows_pt, rows_ort):
        assert abs(float(a["defect_score"]) - float(b["defect_score"])) < 1e-3


def test_export_offers_no_int8(exported, tmp_path, capsys):
    """int8 lost too much accuracy to be offered (chapter 9); the flag is gone, not ignored."""
    checkpoint, _ = exported
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--int8"])
    assert exit_info.value.code == 2 and "--int8" in capsys.readouterr().err


def test_onnx_backend_refuses_files_that_are_not_exported_models(exported, tmp_path, capsys):
    checkpoint, _ = exported
    with pytest.raises(export.OnnxModelError, match="ONNX Runtime cannot load it"):
        export.OnnxModel(checkpoint)
    with pytest.raises(export.OnnxModelError, match="no such file"):
        export.OnnxModel(tmp_path / "missing.onnx")
    image = str(data.list_samples(download.sample_dataset())[0].image)
    status = cli.main(["predict", "--checkpoint", str(checkpoint), "--backend", "onnxruntime", image,
                       "--out", str(tmp_path / "out")])
    assert status == cli.EXIT_ERROR
    assert "not a defectlib ONNX model" in capsys.readouterr().err
