import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_crackforest_like
from defectlib import experiments, inference, paths
from defectlib.cli import main
from defectlib.download import sample_dataset


def _checkpoint(trained_run):
    record, root = trained_run
    return root / record["checkpoint"]["path"]


def test_help_for_every_subcommand_documents_exit_status():
    for sub in ("data", "train", "evaluate", "predict"):
        out = subprocess.run([sys.executable, "-m", "defectlib", sub, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.startswith("usage:"), sub
        assert "exit status: 0 all done; 1 some inputs failed" in " ".join(out.stdout.split()), sub


def test_usage_error_exits_2():
    out = subprocess.run([sys.executable, "-m", "defectlib", "train"], capture_output=True, text=True)
    assert out.returncode == 2 and "--config" in out.stderr


def test_predict_writes_outputs_and_reports_bad_input(trained_run, tmp_path, capsys):
    images = sorted((sample_dataset() / "MT_Blowhole" / "Imgs").glob("*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "pred"
    status = main(["predict", "--checkpoint", str(_checkpoint(trained_run)), str(images[0]), str(bad), str(images[1]),
                   "--out", str(out)])
    assert status == 1
    assert "broken.jpg: unreadable or truncated image" in capsys.readouterr().err
    for image in images:
        mask = np.asarray(Image.open(out / f"{image.stem}_mask.png"))
        assert mask.shape == np.asarray(Image.open(image)).shape and mask.max() <= 5
        assert (out / f"{image.stem}_overlay.png").is_file()
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["image"] for r in rows] == [str(images[0]), str(bad), str(images[1])]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "unreadable" in rows[1]["error"] and rows[0]["error"] == ""
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_image_over_the_pixel_limit_is_skipped_and_the_rest_go_on(trained_run, tmp_path, capsys):
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    Image.fromarray(np.zeros((1200, 1000), np.uint8)).save(big)
    small = sorted((sample_dataset() / "MT_Crack" / "Imgs").glob("*.jpg"))[0]
    status = main(["predict", "--checkpoint", str(_checkpoint(trained_run)), str(big), str(small),
                   "--out", str(tmp_path / "out"), "--max-pixels", "1"])
    assert status == 1
    assert "big.png: 1000x1200 image is larger than the limit of 1 Mpx" in capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    assert [r["status"] for r in rows] == ["failed", "ok"]


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    (b"", "empty file"),
    (bytes(range(256)) * 4, "not a PyTorch checkpoint archive"),
])
def test_bad_checkpoints_are_named(tmp_path, capsys, content, reason):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: not a defectlib checkpoint: {path} (") and reason in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_truncated_and_foreign_checkpoints(trained_run, tmp_path, capsys):
    good = _checkpoint(trained_run).read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    for name, reason in (("cut.pt", "truncated, or another kind of file"), ("foreign.pt", "no model state and config")):
        assert main(["predict", "--checkpoint", str(tmp_path / name), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert name in err and reason in err
    assert not (tmp_path / "o").exists()   # refused before any work


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", "evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_output_folder_checks(trained_run, tmp_path, capsys):
    ckpt = str(_checkpoint(trained_run))
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((sample_dataset() / "MT_Crack" / "Imgs").glob("*.jpg").__next__().read_bytes())
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert main(["predict", "--checkpoint", ckpt, str(folder), "--out", str(afile)]) == 2
    assert "file.txt: --out is a file" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", ckpt, str(folder), "--out", str(folder)]) == 2
    assert "--out is an input folder" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", ckpt, str(folder), "--out", str(out)]) == 0
    assert main(["predict", "--checkpoint", ckpt, str(folder), "--out", str(out)]) == 2
    assert "holds an earlier run's outputs" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", ckpt, str(folder), "--out", str(out), "--overwrite"]) == 0


def test_bad_config_exits_2_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\ntrain:\n  learning_rate: 0.1\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: train.learning_rate: unknown key" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_data_validates_a_folder_and_reports_every_problem(tmp_path, capsys):
    root = write_crackforest_like(tmp_path / "cf", n=4)
    assert main(["data", "--path", str(root)]) == 0
    assert "4 image/mask pairs, all valid" in capsys.readouterr().out
    Image.fromarray(np.full((320, 480), 7, np.uint8)).save(root / "masks" / "001.png")
    (root / "masks" / "002.png").unlink()
    assert main(["data", "--path", str(root)]) == 2
    err = capsys.readouterr().err
    assert "002.jpg: no mask" in err
    (root / "masks" / "002.png").write_bytes((root / "masks" / "000.png").read_bytes())
    assert main(["data", "--path", str(root)]) == 2
    assert "001.png: binary mask holds values {7}" in capsys.readouterr().err


def test_evaluate_refuses_a_folder_of_other_classes(trained_run, tmp_path, capsys):
    root = write_crackforest_like(tmp_path / "cf", n=2)
    assert main(["evaluate", "--checkpoint", str(_checkpoint(trained_run)), "--data", str(root)]) == 2
    assert "classes ['background', 'defect'] differ from the checkpoint's" in capsys.readouterr().err


def test_own_folder_trains_evaluates_and_predicts_from_the_command_line(tmp_path, monkeypatch, capsys):
    """A CrackForest-like folder (RGB 480x320 JPEGs, 0/1 and 0/255 PNG masks), smoke profile, end to end."""
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path / "results"))
    root = write_crackforest_like(tmp_path / "crackforest")
    assert main(["train", "--config", "configs/baseline.yaml", "--data", str(root), "--fold", "0"]) == 0
    out = capsys.readouterr().out
    assert "val mIoU" in out
    (record_path,) = (tmp_path / "results" / "runs").glob("baseline-*-fold0-seed0.json")
    record = json.loads(record_path.read_text())
    assert record["config"]["data"]["classes"] == ["background", "defect"]
    assert list((tmp_path / "results" / "splits").glob("crackforest-*.json"))   # seeded partition written
    ckpt = tmp_path / "results" / record["checkpoint"]["path"]
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--out", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert f"{record['split_sizes']['test']} images (the test part of fold 0)" in table
    lines = {line.split()[0]: line for line in table.splitlines() if line and line.split()[0] in ("background", "defect")}
    assert set(lines) == {"background", "defect"}
    metrics = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert f"{100 * metrics['iou']['defect']:.1f}" in lines["defect"]
    assert main(["predict", "--checkpoint", str(ckpt), str(root / "images"), "--out", str(tmp_path / "pred")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert len(rows) == 15 and {r["status"] for r in rows} == {"ok"}
    assert np.asarray(Image.open(tmp_path / "pred" / "000_mask.png")).shape == (320, 480)


def test_train_subcommand_then_reuse(tmp_path, monkeypatch, capsys, fake_training):
    """Routing only (the training is faked; the own-folder test trains for real)."""
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "3"]) == 0
    first = capsys.readouterr().out
    records = list((tmp_path / "runs").glob("baseline-*-fold3-seed3.json"))
    assert len(records) == 1 and "val mIoU" in first and fake_training == [("baseline", 3, 3)]
    stamp = records[0].stat().st_mtime_ns
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "3"]) == 0
    assert records[0].stat().st_mtime_ns == stamp and len(fake_training) == 1  # stored record returned, not retrained
    assert first.endswith(capsys.readouterr().out)  # same summary, without the epoch lines
    # evaluate defaults to the checkpoint's own fold: its validation part, not fold 0's
    record = json.loads(records[0].read_text())
    out = tmp_path / "val.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / record["checkpoint"]["path"]), "--out", str(out)]) == 0
    evaluated = json.loads(out.read_text())
    assert evaluated["fold"] == 3 and evaluated["images"] == record["split_sizes"]["val"]


def test_family_trains_each_arm_fold_by_fold(tmp_path, monkeypatch, capsys, fake_training):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/loss_ablation.yaml", "--arm", "ce", "dice", "--fold", "0", "1"]) == 0
    runs = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("run ")]
    assert [r.split("-fold")[1][0] for r in runs] == ["0", "0", "1", "1"]
    assert runs[0].startswith("baseline-") and runs[1].startswith("loss-dice-")
    assert fake_training == [("baseline", 0, 0), ("loss-dice", 0, 0), ("baseline", 1, 1), ("loss-dice", 1, 1)]
    assert main(["train", "--config", "configs/loss_ablation.yaml", "--arm", "nope"]) == 2
    assert "no arm(s) ['nope']" in capsys.readouterr().err


def test_flip_tta_from_the_command_line(trained_run, tmp_path, capsys):
    ckpt = str(_checkpoint(trained_run))
    out = tmp_path / "tta.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--tta", "flips", "--out", str(out)]) == 0
    assert "flip test-time augmentation" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["tta"] == "flips" and 0 <= result["metrics"]["miou"] <= 1
    image = sorted((sample_dataset() / "MT_Crack" / "Imgs").glob("*.jpg"))[0]
    assert main(["predict", "--checkpoint", ckpt, "--tta", "flips", str(image), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / f"{image.stem}_mask.png").is_file()


def test_train_on_the_random_partition(tmp_path, monkeypatch, capsys, fake_training):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "1", "--partition", "random"]) == 0
    records = list((tmp_path / "runs").glob("baseline-random-*-fold1-seed1.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["config"]["data"]["split"] == "random" and record["split_file"].endswith("magnetic_tile_random.json")


def test_train_set_overrides_a_setting_and_a_bad_key_is_one_line(tmp_path, monkeypatch, capsys, fake_training):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--set", "name=short", "--set", "train.epochs=1"]) == 0
    (path,) = (tmp_path / "runs").glob("short-*-fold0-seed0.json")
    assert json.loads(path.read_text())["config"]["train"]["epochs"] == 1
    assert main(["train", "--config", "configs/baseline.yaml", "--set", "train.epoch=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.epoch: unknown key (did you mean train.epochs?)" in err[0]


def test_predict_refuses_an_empty_folder_and_an_output_it_cannot_create(trained_run, tmp_path, capsys):
    ckpt = str(_checkpoint(trained_run))
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "empty: no image files" in capsys.readouterr().err
    image = sorted((sample_dataset() / "MT_Crack" / "Imgs").glob("*.jpg"))[0]
    (tmp_path / "a_file").write_text("x")
    assert main(["predict", "--checkpoint", ckpt, str(image), "--out", str(tmp_path / "a_file" / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sub: cannot create the output folder" in err[0]


def test_ctrl_c_during_predict_keeps_finished_images_whole_and_lists_them(trained_run, tmp_path, capsys, monkeypatch):
    images = sorted((sample_dataset() / "MT_Blowhole" / "Imgs").glob("*.jpg"))[:3]
    real = inference.Predictor.predict
    calls = []

    def predict(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(inference.Predictor, "predict", predict)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(_checkpoint(trained_run)), *map(str, images), "--out", str(out)]
    assert main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["image"] for r in rows] == [str(images[0])] and rows[0]["status"] == "ok"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{images[0].stem}_mask.png", f"{images[0].stem}_overlay.png", "predictions.csv"])
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err        # a rerun is refused


def test_checkpoints_with_a_wrong_tensor_or_no_model_section_are_named_in_one_line(trained_run, tmp_path, capsys):
    saved = torch.load(_checkpoint(trained_run), map_location="cpu", weights_only=True)
    key = next(k for k, v in saved["model"].items() if v.ndim == 4)
    wrong = {**saved, "model": {**saved["model"], key: torch.zeros(1, 1, 1, 1)}}
    torch.save(wrong, tmp_path / "wrong.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "wrong.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"size mismatch for {key}" in err[0]
    torch.save({**saved, "config": {k: v for k, v in saved["config"].items() if k != "model"}}, tmp_path / "nomodel.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nomodel.pt")]) == 2
    assert "its config lacks the 'model' section" in capsys.readouterr().err


def test_predictions_list_the_area_of_every_class_present(trained_run, tmp_path):
    image = sorted((sample_dataset() / "MT_Uneven" / "Imgs").glob("*.jpg"))[0]
    assert main(["predict", "--checkpoint", str(_checkpoint(trained_run)), str(image), "--out", str(tmp_path / "p")]) == 0
    (row,) = csv.DictReader(open(tmp_path / "p" / "predictions.csv"))
    mask = np.asarray(Image.open(tmp_path / "p" / f"{image.stem}_mask.png"))
    fractions = dict(part.split(":") for part in row["class_area_fractions"].split(";") if part)
    classes = trained_run[0]["config"]["data"]["classes"]
    assert set(fractions) == {classes[c] for c in np.unique(mask) if c}
    for name, value in fractions.items():
        assert float(value) == pytest.approx((mask == classes.index(name)).mean(), abs=1e-6)


def test_own_data_runs_stay_beside_the_data_and_paths_print_absolute(tmp_path, monkeypatch, capsys, fake_training):
    """Full profile, no DEFECTLIB_RESULTS_DIR: records, checkpoint and split go into the data folder."""
    monkeypatch.delenv("DEFECTLIB_RESULTS_DIR", raising=False)
    monkeypatch.setenv("DEFECTLIB_PROFILE", "full")
    root = write_crackforest_like(tmp_path / "mine", n=6)
    before = sorted(p.name for p in (paths.project_root() / "results" / "runs").iterdir())
    assert main(["train", "--config", "configs/baseline.yaml", "--data", str(root), "--fold", "0"]) == 0
    out = capsys.readouterr().out
    own = (root / paths.OWN_RESULTS).resolve()
    assert f"results: {own}" in out.splitlines()[0]
    (record_path,) = (own / "runs").glob("baseline-*-fold0-seed0.json")
    ckpt_line = next(line for line in out.splitlines() if line.startswith("checkpoint: "))
    ckpt = Path(ckpt_line.removeprefix("checkpoint: "))
    assert ckpt.is_absolute() and ckpt.is_file() and ckpt.parent == own / "checkpoints"
    assert list((own / "splits").glob("mine-*.json"))
    assert sorted(p.name for p in (paths.project_root() / "results" / "runs").iterdir()) == before


def test_gitignore_lets_through_only_the_released_checkpoints():
    if shutil.which("git") is None or not (paths.project_root() / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=paths.project_root()).returncode == 0

    released = subprocess.run(["git", "ls-files", "results/checkpoints"], cwd=paths.project_root(),
                              capture_output=True, text=True, check=True).stdout.split()
    assert released and not any(ignored(p) for p in released)
    assert ignored("results/checkpoints/baseline-000000000000-fold0-seed0.pt")   # own data, same config name
    assert ignored("results/checkpoints/final-long-000000000000-fold0-seed0.pt")
    assert ignored("my_data/defectlib-results/runs/x.json")


def test_train_stores_the_predicted_masks_it_is_asked_for(tmp_path, monkeypatch, capsys, fake_training):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "1", "--predict", "test"]) == 0
    out = capsys.readouterr().out
    (record_path,) = (tmp_path / "runs").glob("baseline-*-fold1-seed1.json")
    record = json.loads(record_path.read_text())
    stored = experiments.predictions_path(record, "test", "none", tmp_path)
    assert f"test masks: {stored.resolve()}" in out
    masks = experiments.get_predictions(record, "test", "none", results_root=tmp_path)
    assert len(masks) == record["split_sizes"]["test"]
    stored.unlink()
    (tmp_path / record["checkpoint"]["path"]).unlink()   # a stored run whose checkpoint is gone: warned, not fatal
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "1", "--predict", "test"]) == 0
    assert "warning:" in capsys.readouterr().err and not stored.exists()
    with pytest.raises(SystemExit):   # argparse names the choices
        main(["train", "--config", "configs/baseline.yaml", "--fold", "1", "--predict", "vals"])
