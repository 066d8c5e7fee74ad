import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from defectlib.cli import main
from defectlib.data import sample_dataset


def test_help_for_every_subcommand():
    for sub in ("data", "train", "evaluate", "predict"):
        out = subprocess.run([sys.executable, "-m", "defectlib", sub, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout and len(out.stdout) > 200, sub


def test_predict_writes_outputs_and_reports_bad_input(trained_run, tmp_path, capsys):
    record, root = trained_run
    checkpoint = root / record["checkpoint"]["path"]
    images = sorted((sample_dataset() / "MT_Blowhole" / "Imgs").glob("*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "pred"
    status = main(["predict", "--checkpoint", str(checkpoint), str(images[0]), str(bad), str(images[1]), "--out", str(out)])
    assert status == 1
    assert "broken.jpg" in capsys.readouterr().err
    for image in images:
        mask = np.asarray(Image.open(out / f"{image.stem}_mask.png"))
        assert mask.shape == np.asarray(Image.open(image)).shape and mask.max() <= 5
        assert (out / f"{image.stem}_overlay.png").is_file()
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["image"] for r in rows] == [str(i) for i in images]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_evaluate_prints_table_and_writes_json(trained_run, tmp_path, capsys, monkeypatch):
    record, root = trained_run
    out = tmp_path / "val.json"
    assert main(["evaluate", "--checkpoint", str(root / record["checkpoint"]["path"]), "--split", "val", "--out", str(out)]) == 0
    assert "defect_miou" in capsys.readouterr().out
    import json
    assert json.loads(out.read_text())["metrics"]["miou"] == pytest.approx(record["val"]["miou"])


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: checkpoint not found" in capsys.readouterr().err


def test_predict_folder_skips_masks_and_keeps_same_stems_apart(trained_run, tmp_path):
    from defectlib.inference import expand_inputs, predict_to_folder

    record, root = trained_run
    folder = sample_dataset() / "MT_Crack" / "Imgs"
    inputs = expand_inputs([folder])
    assert inputs and all(p.suffix == ".jpg" for p in inputs)
    first = inputs[0]
    results, failures = predict_to_folder(root / record["checkpoint"]["path"], [first, first], tmp_path, progress=False)
    assert not failures and len(results) == 2
    assert (tmp_path / f"{first.stem}_mask.png").is_file() and (tmp_path / f"{first.stem}_2_mask.png").is_file()


def test_train_subcommand_then_reuse(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    records = list((tmp_path / "runs").glob("baseline-*-seed3.json"))
    assert len(records) == 1 and "val mIoU" in first
    stamp = records[0].stat().st_mtime_ns
    assert main(["train", "--config", "configs/baseline.yaml", "--seed", "3"]) == 0
    assert records[0].stat().st_mtime_ns == stamp  # stored record returned, not retrained
    assert first.endswith(capsys.readouterr().out)  # same summary, without the epoch lines
