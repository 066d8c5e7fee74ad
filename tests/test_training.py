import json

import numpy as np
import pytest
import torch
from PIL import Image

from defectlib import config, paths, run_data, selection
from defectlib import experiments as ex
from defectlib.data import SegmentationDataset, Sample
from defectlib.training import DefectBalancedSampler, evaluate

TIMING = ("wall_seconds", "resumed_from_epoch", "train_seconds", "val_seconds", "data_seconds", "test_seconds", "train_images_per_second",
          "git_commit", "environment")


def _comparable(record):
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in e.items() if not k.endswith("_seconds")} for e in record["history"]]
    return json.loads(json.dumps(out))


def test_smoke_training_loss_goes_down(smoke_config, tmp_path):
    cfg = config.resolve_config(smoke_config, "smoke", {"train.epochs": 4, "optimizer.lr": 0.003})
    record = ex.train_run(cfg, fold=0, progress=False, results_root=tmp_path)
    losses = [e["train_loss"] for e in record["history"]]
    assert losses[-1] < losses[0]


def test_record_contents(trained_run):
    record, root = trained_run
    for key in ("config", "config_hash", "fold", "seed", "git_commit", "environment", "precision", "wall_seconds",
                "history", "val", "test", "per_image", "checkpoint"):
        assert key in record
    assert record["config_hash"] == config.config_hash(record["config"])
    assert record["precision"] in ("bf16", "fp32")
    assert (root / record["checkpoint"]["path"]).is_file()
    assert len(record["history"]) == record["epochs_run"]
    assert len(record["per_image"]["test"]["names"]) == record["split_sizes"]["test"] == record["test"]["images"]
    assert not (root / "work" / record["run_id"]).exists()  # epoch checkpoints cleaned up


def test_resume_after_kill_gives_the_same_record_and_weights(smoke_config, trained_run, tmp_path):
    """Killed after epoch 1 and resumed, a run ends exactly as the uninterrupted fixture run: the same
    seed gives the same record and the same checkpoint bytes (so a run is also reproducible)."""
    assert ex.train_run(smoke_config, fold=0, progress=False, results_root=tmp_path, stop_after_epoch=1) == {}
    assert not ex.record_path(smoke_config, 0, 0, tmp_path).exists()
    resumed = ex.train_run(smoke_config, fold=0, progress=False, results_root=tmp_path)
    assert _comparable(resumed) == _comparable(trained_run[0])
    assert resumed["checkpoint"]["sha256"] == trained_run[0]["checkpoint"]["sha256"]
    assert (trained_run[0]["resumed_from_epoch"], resumed["resumed_from_epoch"]) == (0, 1)
    # the wall time spans both processes: at least the training and validation the history records
    assert resumed["wall_seconds"] >= sum(e["train_seconds"] + e["val_seconds"] for e in resumed["history"])


def test_get_run_reuses_stored_record(smoke_config, trained_run, monkeypatch):
    record, root = trained_run
    monkeypatch.setattr(ex, "train_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert ex.get_run(smoke_config, 0, results_root=root) == json.loads(ex.record_path(smoke_config, 0, 0, root).read_text())


def test_smoke_profile_writes_to_temp(monkeypatch):
    monkeypatch.delenv(paths.ENV_RESULTS, raising=False)
    monkeypatch.setenv(paths.ENV_PROFILE, "smoke")
    assert "defectlib-smoke" in str(paths.results_dir())


def test_missing_dataset_is_an_error_outside_smoke(monkeypatch, tmp_path):
    cfg = config.resolve_config({"name": "x", "data": {"root": str(tmp_path / "nowhere")}}, "full")
    with pytest.raises(FileNotFoundError, match="nowhere: dataset path does not exist"):
        run_data.dataset_samples(cfg)


def test_smoke_fallback_to_sample_says_so(monkeypatch, capsys):
    monkeypatch.setattr("defectlib.run_data.find_dataset", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("none")))
    samples = run_data.dataset_samples(config.resolve_config({"name": "x"}, "smoke"))
    assert len(samples) == 18 and "using the committed sample" in capsys.readouterr().err


def test_sampler_takes_every_defect_and_fresh_free_images():
    sampler = DefectBalancedSampler([True, True, False, False, False, False], free_per_epoch=2, seed=0)
    epochs = []
    for e in range(1, 4):
        sampler.set_epoch(e)
        chosen = list(sampler)
        assert len(chosen) == len(sampler) == 4 and {0, 1} <= set(chosen)
        epochs.append(frozenset(chosen) - {0, 1})
    assert len(set(epochs)) > 1


class _Oracle(torch.nn.Module):
    """Returns logits that reproduce the mask it is given (the images here carry the class in their gray value)."""

    def forward(self, x):
        gray = ((x[:, 0] * 0.5 + 0.5) * 255).round().long()  # undo the [-1, 1] scaling
        return torch.nn.functional.one_hot((gray // 50).clamp(0, 2), 3).permute(0, 3, 1, 2).float() * 20


def test_evaluate_gives_exact_ious_on_a_hand_made_dataset(tmp_path):
    """Two 8x8 images: truth and prediction known pixel by pixel, so the IoUs are known exactly."""
    samples = []
    for k, (pred_cls, true_rows) in enumerate([(1, 4), (2, 2)]):
        gray = np.zeros((8, 8), np.uint8)
        gray[:4] = 50 * pred_cls        # the model predicts class pred_cls on the top 4 rows
        mask = np.zeros((8, 8), np.uint8)
        mask[:true_rows] = 1            # the truth marks the top true_rows rows as class 1
        Image.fromarray(gray).save(tmp_path / f"{k}.png")
        Image.fromarray(mask).save(tmp_path / f"{k}_m.png")
        samples.append(Sample(tmp_path / f"{k}.png", tmp_path / f"{k}_m.png", "image", 1, key=str(k)))
    ds = SegmentationDataset(samples, 8, num_classes=3, keep_native=True)
    m = evaluate(_Oracle(), ds, ("background", "A", "B"), channels_last=False)
    # image 0: top 32 px predicted A, truly A -> TP_A 32.  image 1: top 32 predicted B; truth A on 16 of them.
    # A: TP 32, FN 16 -> IoU 32/48.  B: FP 32 -> IoU 0.  background: TP 64, FP 0, FN 16 -> IoU 64/80
    assert m["confusion_matrix"] == [[64, 0, 16], [0, 32, 16], [0, 0, 0]]
    assert m["iou"]["A"] == pytest.approx(32 / 48)
    assert m["iou"]["B"] == 0.0
    assert m["iou"]["background"] == pytest.approx(64 / 80)
    assert m["defect_miou"] == pytest.approx((32 / 48 + 0) / 2)
    assert m["binary_defect_iou"] == pytest.approx(48 / 64)


def test_evaluating_zero_images_is_an_error():
    ds = SegmentationDataset([], 8, num_classes=2, keep_native=True)
    with pytest.raises(ValueError, match="no images to evaluate"):
        evaluate(_Oracle(), ds, ("background", "defect"))


def test_evaluation_with_flip_tta_is_stored_reused_and_checked(trained_run):
    from defectlib import experiments
    from defectlib.experiments import evaluation_path, get_evaluation

    record, root = trained_run
    plain = get_evaluation(record, "val", "none", progress=False, results_root=root)
    assert plain["metrics"]["miou"] == pytest.approx(record["val"]["miou"], abs=1e-9)   # the record's own numbers
    flips = get_evaluation(record, "val", "flips", progress=False, results_root=root)
    path = evaluation_path(record, "val", "flips", root)
    assert path.is_file() and flips["per_image"]["names"] == record["per_image"]["val"]["names"]
    stamp = path.stat().st_mtime_ns
    again = get_evaluation(record, "val", "flips", results_root=root)
    assert json.dumps(again, sort_keys=True) == json.dumps(flips, sort_keys=True)
    assert path.stat().st_mtime_ns == stamp                                              # reused, not recomputed
    swapped = experiments.record_with_tta(record, "flips", ("val",), results_root=root)
    assert json.dumps(swapped["val"]) == json.dumps(flips["metrics"])
    assert swapped["per_image"]["val"] == flips["per_image"]
    assert swapped["test"] == record["test"] and swapped["tta"] == "flips" and "tta" not in record
    assert experiments.record_with_tta(record, "none") is record
    moved = {**record, "run_id": record["run_id"] + "-moved",
             "checkpoint": {**record["checkpoint"], "path": "checkpoints/nowhere.pt"}}
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        get_evaluation(moved, "val", "flips", results_root=root)
    forged = {**record, "run_id": record["run_id"] + "-forged", "checkpoint": {**record["checkpoint"], "sha256": "0" * 64}}
    with pytest.raises(ValueError, match="SHA-256"):
        get_evaluation(forged, "val", "flips", results_root=root)


def test_predictions_are_stored_and_match_the_records_confusions(trained_run):
    from defectlib import experiments
    from defectlib.data import class_index_mask
    from defectlib.metrics import confusion_matrix, per_image_confusions

    record, root = trained_run
    masks = experiments.get_predictions(record, "test", "none", progress=False, results_root=root)
    table = record["per_image"]["test"]
    assert list(masks) == table["names"]
    samples = {s.name: s for s in run_data.fold_samples(record["config"], record["fold"])["test"]}
    n = len(record["config"]["data"]["classes"])
    # The record's confusions come from batched evaluation, the stored masks from one image at a time: CPU
    # kernels round differently by batch size, so a pixel at a near-tie of two logits may flip. Allow that
    # (at most 1 pixel in 10,000), nothing more; a misaligned name, class or resize differs by far more.
    flipped = total = 0
    for name, cm in zip(table["names"], per_image_confusions(table)):
        truth = class_index_mask(samples[name])
        assert masks[name].shape == truth.shape
        stored = confusion_matrix(masks[name], truth, n)
        assert np.array_equal(stored.sum(axis=1), cm.sum(axis=1))  # same truth pixels per class
        flipped += int(np.abs(stored - cm).sum()) // 2
        total += truth.size
    assert flipped <= total // 10_000, f"{flipped} of {total} pixels differ from the record's confusions"
    path = experiments.predictions_path(record, "test", "none", root)
    stamp = path.stat().st_mtime_ns
    again = experiments.get_predictions(record, "test", "none", results_root=root)
    assert path.stat().st_mtime_ns == stamp and all(np.array_equal(again[k], masks[k]) for k in masks)


def _reevaluate(root):
    """Validation re-evaluated with test-time augmentation, from the run store under ``root``."""
    return lambda record, mode: ex.record_with_tta(record, mode, ("val",), progress=False, results_root=root)


def test_tta_options_name_each_arm_with_and_without_flips(trained_run):

    record, root = trained_run
    options = selection.tta_options({"long": [record]}, _reevaluate(root))
    assert list(options) == ["long", "long + flip TTA"]
    assert options["long"][0] is record and options["long + flip TTA"][0]["tta"] == "flips"
    assert options["long + flip TTA"][0]["test"] == record["test"]         # only validation is re-evaluated
    assert [selection.split_option(o) for o in options] == [("long", "none"), ("long", "flips")]
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        selection.split_option("long + rotations")


def test_choose_final_takes_the_schedule_then_the_test_time_augmentation(trained_run):
    from defectlib import experiments

    record, root = trained_run
    worse = {**record, "val": {**record["val"], "miou": record["val"]["miou"] - 0.1}}
    choice = selection.choose_final({"start": [worse], "long": [record]}, _reevaluate(root))
    assert choice["arm"] == "long" and choice["arms"].loc["long", "selected"] == "winner"
    assert set(choice["tta_options"].index) == {"long", "long + flip TTA"}       # only the chosen arm's options
    assert choice["option"] in choice["tta_options"].index
    assert (choice["arm"], choice["tta"]) == selection.split_option(choice["option"])
    flips = experiments.record_with_tta(record, "flips", ("val",), progress=False, results_root=root)
    assert choice["option"] == selection.select_arm({"long": [record], "long + flip TTA": [flips]})


def test_a_lost_checkpoint_is_restored_by_training_the_run_again(trained_run, fake_training, tmp_path):
    """Orchestration only: the training it calls is faked (the resume test shows a retrained run is identical)."""
    import shutil

    record, root = trained_run
    copy = tmp_path / "results"
    shutil.copytree(root / "runs", copy / "runs")          # the records, without their checkpoints
    stored = ex.record_path(record["config"], 0, 0, copy).read_text()
    restored = ex.restore_checkpoint(record, progress=False, results_root=copy)
    assert restored == copy / record["checkpoint"]["path"]
    assert paths.sha256_file(restored) == record["checkpoint"]["sha256"]
    assert ex.record_path(record["config"], 0, 0, copy).read_text() == stored            # record untouched
    forged = {**record, "checkpoint": {**record["checkpoint"], "path": "checkpoints/other.pt", "sha256": "0" * 64}}
    with pytest.raises(ValueError, match="retrained weights differ"):
        ex.restore_checkpoint(forged, progress=False, results_root=copy)
    assert not (copy / "checkpoints" / "other.pt").exists()
    restored.unlink()                                      # and on demand, when predictions need it
    masks = ex.get_predictions(record, "val", "none", progress=False, restore=True, results_root=copy)
    assert list(masks) == record["per_image"]["val"]["names"] and restored.is_file()


def test_fold_runs_reads_what_landed_and_trains_only_when_asked(tmp_path, monkeypatch):
    from defectlib import experiments
    cfg = {"profile": "full", "name": "x"}
    stored = {(0, 5): {"fold": 0, "seed": 5}, (2, 7): {"fold": 2, "seed": 7}}
    monkeypatch.setattr(experiments, "read_record", lambda c, fold, seed, root=None: stored.get((fold, seed)))
    trained = []
    monkeypatch.setattr(experiments, "get_run", lambda c, fold, seed, results_root=None: trained.append((fold, seed)) or {"fold": fold})
    assert [r["seed"] for r in experiments.fold_runs(cfg, (0, 1, 2), 5)] == [5, 7]
    assert trained == []
    experiments.fold_runs({**cfg, "profile": "smoke"}, (0, 1), 5)
    assert trained == [(0, 5), (1, 6)]
