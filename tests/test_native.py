"""The native-resolution engine: preprocessing, tiling, crops, step budgets, convergence, precision, seeds."""
import json

import numpy as np
import pytest
import torch

from defectlib import config, experiments, export, inference, records
from defectlib.cli import main
from defectlib.data import SegmentationDataset
from defectlib.download import sample_dataset
from defectlib.errors import ConfigError
from defectlib.models import run_precision
from defectlib.preprocess import Preprocessing, pad_to_stride, tile_count, tiled_logits
from defectlib.splits import split_path
from defectlib.training import CropSampler

NATIVE = {"data.input": "native", "train.steps": 4, "train.val_every": 2, "train.precision": "bf16",
          "name": "native-test"}


@pytest.fixture(scope="module")
def native_config(smoke_config):
    return config.resolve_config(smoke_config, "smoke", NATIVE)


@pytest.fixture(scope="module")
def native_run(native_config, tmp_path_factory):
    """A short real native run (4 steps of 64 px crops in the smoke profile): ``(record, results root)``."""
    root = tmp_path_factory.mktemp("native")
    return experiments.train_run(native_config, fold=0, progress=False, results_root=root), root


def _pointwise():
    """A model that sees each pixel alone (a 1x1 convolution), so tiling cannot change its output."""
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 4, 1)


def test_padding_goes_to_the_next_multiple_of_the_stride():
    padded = pad_to_stride(torch.ones(1, 3, 70, 33))
    assert padded.shape[-2:] == (96, 64)
    assert padded[..., :70, :33].eq(1).all() and padded[..., 70:, :].eq(0).all()


def test_tiled_inference_equals_whole_image_inference_for_a_pointwise_model():
    x = torch.randn(1, 3, 150, 300)
    model = _pointwise()
    whole = tiled_logits(model, x, tile_size=1024)
    tiled = tiled_logits(model, x, tile_size=64)
    assert tile_count(150, 300, 64) > 1 and tiled.shape == whole.shape == (1, 4, 150, 300)
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_native_preprocessing_keeps_the_aspect_and_square_squashes_it():
    image = np.random.default_rng(0).integers(0, 255, (250, 554), dtype=np.uint8)
    native = Preprocessing("native", 256, 1.0, 1024, (0.5,) * 3, (0.5,) * 3)
    half = Preprocessing("native", 256, 0.5, 1024, (0.5,) * 3, (0.5,) * 3)
    square = Preprocessing("square", 256, 1.0, 1024, (0.5,) * 3, (0.5,) * 3)
    assert native.prepare(image).shape == (3, 250, 554)
    assert half.prepare(image).shape == (3, 125, 277)
    assert square.prepare(image).shape == (3, 256, 256)
    assert Preprocessing.from_metadata(half.metadata()) == half


def test_crops_centred_on_defects_hold_them_and_rare_classes_get_their_share():
    masks = [np.zeros((300, 500), np.uint8) for _ in range(6)]
    masks[0][100:140, 200:260] = 1            # a large region of class 1 in image 0
    for m in masks[1:4]:
        m[10:200, 10:400] = 2                 # class 2 covers much of three images
    masks[4][290:295, 490:495] = 3            # a tiny class-3 defect in a corner
    sampler = CropSampler(masks, 128, items=3000, defect_fraction=1.0, free_per_epoch=None, seed=0)
    seen = {1: 0, 2: 0, 3: 0}
    for i, y, x in sampler:
        window = masks[i][y:y + 128, x:x + 128]
        assert window.shape == (128, 128) and window.any()
        for c in seen:
            seen[c] += bool((window == c).any())
    assert all(800 < n < 1300 for n in (seen[1], seen[3])), seen     # about a third each, not by area


def test_crop_sampler_draws_afresh_each_period_and_splits_between_ranks():
    masks = [np.zeros((64, 300), np.uint8) for _ in range(4)]
    masks[0][:, 100:120] = 1
    a = CropSampler(masks, 64, items=20, seed=3)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and len(first) == 20
    a.set_epoch(0)
    assert list(a) == first
    ranks = [list(CropSampler(masks, 64, items=20, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert ranks[0] + ranks[1] != first and sorted(ranks[0] + ranks[1]) == sorted(first)


def test_a_crop_of_a_small_image_is_padded_to_the_crop_size(tmp_path):
    from PIL import Image

    from defectlib.data import Sample

    Image.fromarray(np.full((40, 90), 200, np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((40, 90), np.uint8)
    mask[5:10] = 1
    Image.fromarray(mask).save(tmp_path / "a_m.png")
    prep = Preprocessing("native", 256, 1.0, 1024, (0.5,) * 3, (0.5,) * 3)
    ds = SegmentationDataset([Sample(tmp_path / "a.png", tmp_path / "a_m.png", "image", 1, key="a")],
                             prep=prep, crop_size=64, num_classes=2)
    item = ds[(0, 0, 10)]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
    assert item["image"][:, 40:, :].eq(0).all() and item["mask"][40:].eq(0).all()   # mean gray, background
    assert item["mask"][5:10, :54].eq(1).all()


def test_later_settings_leave_the_first_records_hashes_alone():
    base = config.load_config("configs/baseline.yaml", profile="full")
    assert config.config_hash(base) == "619be3c1a607"                  # the committed baseline's
    same = config.resolve_config(base, "full", {"data.crop_size": 256, "data.input": "square"})
    assert config.config_hash(same) == "619be3c1a607"
    assert config.config_hash(config.resolve_config(base, "full", {"data.crop_size": 192})) != "619be3c1a607"


def test_the_fold_file_content_is_part_of_a_runs_identity(monkeypatch, tmp_path):
    base = config.load_config("configs/baseline.yaml", profile="full", overrides={"data.split": "regions"})
    from defectlib.paths import sha256_file

    assert base["data"]["split_sha256"] == sha256_file(split_path("regions"))
    changed = tmp_path / "regions.json"
    payload = json.loads(split_path("regions").read_text())
    payload["folds"]["0"], payload["folds"]["1"] = payload["folds"]["1"], payload["folds"]["0"]
    changed.write_text(json.dumps(payload))
    monkeypatch.setattr(config, "split_path", lambda kind: changed if kind == "regions" else split_path(kind))
    other = config.resolve_config(base, "full")
    assert config.config_hash(other) != config.config_hash(base)


@pytest.mark.parametrize("overrides, message", [
    ({"data.input": "native"}, "needs a budget in optimizer steps"),
    ({"train.steps": 100, "train.val_every": 30}, "not a multiple of train.val_every"),
    ({"train.val_every": 10}, "needs train.steps"),
    ({"data.input": "native", "train.steps": 10, "data.crop_size": 100}, "not a multiple of the network's stride"),
    ({"data.input": "native", "train.steps": 10, "data.augment": "copy_paste+flips"}, "copy_paste"),
])
def test_native_and_step_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load_config("configs/baseline.yaml", profile="full", overrides=overrides)


def test_a_step_budget_without_a_period_validates_ten_times():
    cfg = config.load_config("configs/baseline.yaml", profile="full", overrides={"train.steps": 3000})
    assert cfg["train"]["val_every"] == 300


def test_precision_follows_from_the_config_alone():
    assert run_precision("auto") == run_precision("bf16") == "bf16"
    assert run_precision("fp32") == "fp32"


def test_convergence_statistic_on_a_hand_made_history():
    history = [{"val_miou": v, "step": 100 * (k + 1)} for k, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.62, 0.61, 0.6, 0.62])]
    stats = records.convergence(history)
    assert stats["last_fifth_gain"] == pytest.approx((0.6 + 0.62) / 2 - (0.62 + 0.61) / 2)
    assert stats["best_gain_last_fifth"] == pytest.approx(0.0)    # 0.62 at step 700, equalled, not beaten
    assert stats["best_at"] == pytest.approx(0.7) and stats["best_step"] == 700 and stats["evaluations"] == 10
    rising = records.convergence([{"val_miou": v} for v in np.linspace(0, 1, 10)])
    assert rising["last_fifth_gain"] == pytest.approx(2 / 9) and rising["best_at"] == 1.0 and rising["best_step"] is None
    assert rising["best_gain_last_fifth"] == pytest.approx(2 / 9)


def test_a_record_that_predates_a_statistic_gets_it_from_its_history():
    history = [{"val_miou": v} for v in (0.1, 0.3, 0.2, 0.5, 0.4)]
    old = {"history": history, "best_epoch": 4, "convergence": {"last_fifth_gain": -0.1, "best_at": 0.8}}
    stats = records.run_convergence(old)
    assert stats["last_fifth_gain"] == -0.1 and stats["best_gain_last_fifth"] == pytest.approx(0.0)


def test_a_native_run_trains_validates_and_records_its_budget(native_run):
    record, root = native_run
    assert record["precision"] == "bf16" and record["config"]["data"]["input"] == "native"
    assert [e["step"] for e in record["history"]] == [2, 4]
    assert record["convergence"]["evaluations"] == 2 and record["convergence"]["best_step"] in (2, 4)
    assert record["train_images_per_second"] > 0 and record["history"][0]["images"] == 2 * 4
    names = record["per_image"]["val"]["names"]
    assert len(names) == record["split_sizes"]["val"]


def test_native_predict_runs_at_the_images_own_size_and_onnx_agrees(native_run, tmp_path):
    record, root = native_run
    ckpt = records.checkpoint_file(record, root)
    image = np.random.default_rng(0).integers(60, 200, (150, 331), dtype=np.uint8)     # not square, not /32
    torch_pred = inference.Predictor(ckpt, precision="fp32")
    mask, score = torch_pred.predict_array(image)
    assert mask.shape == (150, 331) and 0 <= score <= 1
    onnx_path = export.export_onnx(ckpt, tmp_path / "native.onnx")
    onnx_pred = inference.Predictor(onnx_path, backend="onnxruntime")
    assert onnx_pred.prep == torch_pred.prep and onnx_pred.prep.native
    logits_pt = torch_pred.logits(torch_pred.prep.prepare(image)[None])
    logits_ort = onnx_pred.logits(onnx_pred.prep.prepare(image)[None])
    assert logits_pt.shape == logits_ort.shape == (1, len(torch_pred.classes), 150, 331)
    assert (logits_pt - logits_ort).abs().max() < 1e-3


def test_a_large_photo_is_predicted_in_tiles(native_run):
    record, root = native_run
    predictor = inference.Predictor(records.checkpoint_file(record, root), precision="fp32")
    big = np.random.default_rng(1).integers(60, 200, (2000, 3000), dtype=np.uint8)
    assert tile_count(2000, 3000, predictor.prep.tile_size) > 1
    mask, _ = predictor.predict_array(big)
    assert mask.shape == (2000, 3000)


def test_train_takes_several_seeds(tmp_path, monkeypatch, capsys, fake_training):
    monkeypatch.setenv("DEFECTLIB_PROFILE", "smoke")
    monkeypatch.setenv("DEFECTLIB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("DEFECTLIB_DATA_DIR", str(sample_dataset()))
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "0", "1", "--seed", "0", "1"]) == 0
    assert fake_training == [("baseline", 0, 0), ("baseline", 0, 1), ("baseline", 1, 0), ("baseline", 1, 1)]
    assert len(list((tmp_path / "runs").glob("baseline-*-fold*-seed*.json"))) == 4
    fake_training.clear()
    assert main(["train", "--config", "configs/baseline.yaml", "--fold", "0", "2", "--seed-offset", "5"]) == 0
    assert fake_training == [("baseline", 0, 5), ("baseline", 2, 7)]


def _run(run_id, curve, steps=2000):
    history = [{"val_miou": v, "step": steps // len(curve) * (k + 1)} for k, v in enumerate(curve)]
    return {"run_id": run_id, "config": {"train": {"steps": steps}}, "history": history,
            "best_epoch": 1 + int(np.argmax(curve))}


def test_the_budget_rule_keeps_a_budget_only_when_every_run_has_flattened():
    from defectlib import selection

    flat = _run("a", [0.1, 0.3, 0.4, 0.45, 0.46, 0.47, 0.47, 0.48, 0.475, 0.48])
    rising = _run("b", [0.1, 0.2, 0.25, 0.3, 0.33, 0.36, 0.38, 0.40, 0.42, 0.44])
    assert selection.converged(flat) and not selection.converged(rising)
    assert selection.budget_verdict([flat, flat]) == {"kept": True, "steps": 2000, "next_steps": None,
                                                      "not_converged": []}
    verdict = selection.budget_verdict([flat, rising])
    assert not verdict["kept"] and verdict["next_steps"] == 4000 and verdict["not_converged"] == ["b"]
    with pytest.raises(ValueError, match="one step budget"):
        selection.budget_verdict([flat, _run("c", [0.1, 0.2], steps=1000)])


def test_the_budget_rule_reads_the_best_so_far_not_the_scatter_below_it():
    from defectlib import selection

    # a plateau from mid-schedule whose last two evaluations happen to sit above the two before
    # (chapter 6's 192 px fold 1 curve): the last fifth set no new best
    plateau = _run("p", [0.213, 0.286, 0.336, 0.336, 0.387, 0.350, 0.380, 0.358, 0.385, 0.378], steps=4000)
    assert records.run_convergence(plateau)["last_fifth_gain"] > selection.CONVERGED_GAIN
    assert selection.converged(plateau)
    assert not selection.converged(plateau, statistic="last_fifth_gain")     # the rule as it first was
    assert not selection.budget_verdict([plateau], statistic="last_fifth_gain")["kept"]
    # a curve that sets a new best by more than the tolerance in its last fifth is still rising
    late = _run("l", [0.2, 0.3, 0.4, 0.45, 0.46, 0.46, 0.47, 0.47, 0.46, 0.49], steps=4000)
    assert records.run_convergence(late)["best_gain_last_fifth"] == pytest.approx(0.02)
    assert not selection.converged(late)
    assert selection.budget_verdict([plateau, plateau])["kept"]
    assert selection.budget_verdict([plateau, late])["not_converged"] == ["l"]
    rising = selection.still_rising([plateau, late, plateau])
    assert [(r["run_id"], round(gain, 6)) for r, gain in rising] == [("l", 0.02)]
