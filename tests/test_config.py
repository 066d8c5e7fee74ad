import dataclasses

import numpy as np
import pytest

from defectlib import config
from defectlib.config import ConfigError


def _write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_resolved_config_holds_every_default():
    cfg = config.resolve_config({"name": "x"}, "full")
    assert cfg["train"]["epochs"] == config.TrainConfig().epochs
    assert cfg["data"]["classes"][0] == "background" and len(cfg["data"]["classes"]) == 6
    assert cfg["profile"] == "full"


def test_hash_changes_when_a_default_changes(monkeypatch):
    before = config.config_hash(config.resolve_config({"name": "x"}, "full"))
    fields = {f.name: f for f in dataclasses.fields(config.OptimizerConfig)}
    monkeypatch.setattr(fields["weight_decay"], "default", 0.05)
    monkeypatch.setattr(config.OptimizerConfig.__init__, "__defaults__",
                        tuple(0.05 if d == 0.0001 else d for d in config.OptimizerConfig.__init__.__defaults__))
    after = config.resolve_config({"name": "x"}, "full")
    assert after["optimizer"]["weight_decay"] == 0.05
    assert config.config_hash(after) != before


def test_unknown_key_names_file_path_and_close_match(tmp_path):
    path = _write(tmp_path, "name: x\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: train.epoch: unknown key \(did you mean train.epochs\?\)"):
        config.load_config(path)
    path = _write(tmp_path, "name: x\ntrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: train.learning_rate: unknown key \(known: epochs"):
        config.load_config(path)
    path = _write(tmp_path, "name: x\ntrian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"trian: unknown key \(did you mean train\?\)"):
        config.load_config(path)


@pytest.mark.parametrize("text, message", [
    ("name: x\noptimizer:\n  lr: fast\n", r"optimizer.lr: expected float, got 'fast'"),
    ("name: x\ntrain:\n  batch_size: \"8\"\n", r"train.batch_size: expected int, got '8'"),
    ("name: x\ntrain:\n  epochs: 0\n", r"train.epochs: 0 out of range"),
    ("name: x\noptimizer:\n  lr: 0\n", r"optimizer.lr: 0.0 out of range \(must be > 0"),
    ("name: x\ndata:\n  augment: rotate\n", r"data.augment: unknown augmentation component\(s\) \['rotate'\]"),
    ("name: x\ndata:\n  augment: flips+d4+flips\n", r"data.augment: augmentation 'flips\+d4\+flips' names a component"),
    ("name: x\nloss:\n  name: dise\n", r"loss: unknown loss 'dise'"),
    ("name: x\nloss:\n  name: focal\n  params: {focal: {gama: 2}}\n", r"unknown parameter\(s\) \['gama'\]"),
    ("train:\n  epochs: 3\n", r"name: required key missing"),
])
def test_wrong_types_and_values_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.load_config(_write(tmp_path, text))
    assert "cfg.yaml" in str(info.value)


def test_malformed_yaml_gives_file_and_line(tmp_path):
    path = _write(tmp_path, "name: x\ntrain:\n  epochs: [3\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: malformed YAML"):
        config.load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        config.load_config(tmp_path / "nope.yaml")


def test_smoke_profile_overrides():
    cfg = config.load_config("configs/baseline.yaml", profile="smoke")
    assert cfg["data"]["image_size"] == 64 and cfg["train"]["epochs"] == 2
    assert config.config_hash(cfg) != config.config_hash(config.load_config("configs/baseline.yaml", profile="full"))


def test_winner_config_check_names_both_hashes(tmp_path):
    from defectlib.config import ConfigError
    from defectlib.config import check_winner_config, load_family

    arms = load_family("configs/loss_ablation.yaml", profile="smoke")
    assert "the selected arm's" in check_winner_config("configs/baseline.yaml", arms["ce"])
    with pytest.raises(ConfigError, match="not the selected arm's"):
        check_winner_config("configs/baseline.yaml", arms["dice"])


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_loss_winner_config_is_its_arm(profile):
    """configs/loss_winner.yaml must resolve to the loss family's selected arm, so its runs are reused."""
    from defectlib.config import check_winner_config, load_config, load_family

    winner = load_config("configs/loss_winner.yaml", profile=profile)
    arm = winner["name"].removeprefix("loss-")
    arms = load_family("configs/loss_ablation.yaml", profile=profile)
    assert check_winner_config("configs/loss_winner.yaml", arms[arm]).endswith("the selected arm's")


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_augment_winner_config_is_its_arm(profile):
    """configs/augment_winner.yaml must resolve to arm `flips` of the augmentation family, the arm chapter 5
    selects on its records (the chapter repeats this check against its own selection in the full profile)."""
    from defectlib.config import check_winner_config, config_hash, load_config, load_family

    arms = load_family("configs/augmentation_ablation.yaml", profile=profile)
    assert check_winner_config("configs/augment_winner.yaml", arms["flips"]).endswith("the selected arm's")
    winner = load_config("configs/augment_winner.yaml", profile=profile)
    others = [a for a, cfg in arms.items() if a != "flips" and config_hash(cfg) == config_hash(winner)]
    assert others == []


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_final_config_is_the_long_candidate(profile):
    """configs/final.yaml must resolve to arm `long` of the chapter-6 candidates, so folds 0-2 are reused."""
    from defectlib.config import check_winner_config, load_family

    arms = load_family("configs/final_candidates.yaml", profile=profile)
    assert check_winner_config("configs/final.yaml", arms["long"]).endswith("the selected arm's")


def test_on_partition_names_and_hashes_the_random_runs_apart():
    from defectlib.config import config_hash, load_config, on_partition

    cfg = load_config("configs/baseline.yaml", profile="smoke")
    random = on_partition(cfg, "random")
    assert random["data"]["split"] == "random" and random["name"] == "baseline-random"
    assert config_hash(random) != config_hash(cfg)
    assert on_partition(cfg, "grouped") is cfg
    back = on_partition(random, "grouped")
    assert back["name"] == "baseline" and config_hash(back) == config_hash(cfg)


def test_on_partition_keeps_a_corrected_fold_config_on_its_own_folds():
    from defectlib.config import config_hash, load_config, on_partition

    cfg = load_config("configs/native_c192.yaml", profile="smoke")
    assert cfg["data"]["split"] == "regions" and on_partition(cfg, "regions") is cfg
    assert on_partition(cfg, "grouped")["data"]["split"] == "grouped"   # the first folds, asked for by name
    random = on_partition(cfg, "random")
    assert random["data"]["split"] == "random" and random["name"] == "native-c192-random"
    assert config_hash(on_partition(random, "regions")) == config_hash(cfg)


def test_smoke_profile_shrinks_an_arm_that_sets_the_budget(tmp_path):
    """An arm's overrides are part of its config: the smoke profile still sets its epochs."""
    from defectlib.config import load_family

    family = tmp_path / "family.yaml"
    family.write_text("family: f\nbase: configs/baseline.yaml\narms:\n  long:\n    train.epochs: 50\n")
    assert load_family(family, profile="smoke")["long"]["train"]["epochs"] == 2
    assert load_family(family, profile="full")["long"]["train"]["epochs"] == 50


def test_a_config_extending_another_hashes_as_the_config_written_out(tmp_path):
    from defectlib.config import config_hash, load_config

    child = tmp_path / "child.yaml"
    child.write_text("base: configs/loss_winner.yaml\n")
    assert config_hash(load_config(child, "full")) == config_hash(load_config("configs/loss_winner.yaml", "full"))
    child.write_text("base: configs/loss_winner.yaml\nname: longer\ntrain: {epochs: 50}\n")
    cfg = load_config(child, "full")
    assert cfg["name"] == "longer" and cfg["train"]["epochs"] == 50 and cfg["loss"]["name"] == "focal+dice"
    grandchild = tmp_path / "grandchild.yaml"
    grandchild.write_text("base: child.yaml\ndata: {augment: d4}\n")
    assert load_config(grandchild, "full")["train"]["epochs"] == 50


def test_bases_in_a_circle_are_refused(tmp_path):
    from defectlib.config import load_config

    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="circle of bases"):
        load_config(tmp_path / "a.yaml", "full")


def test_assignments_are_read_as_yaml_values_and_checked_by_the_schema():
    from defectlib.config import load_config, parse_assignments

    sets = parse_assignments(["train.steps=400", "train.val_every=100", "data.augment=d4", "model.pretrained=false"])
    assert sets == {"train.steps": 400, "train.val_every": 100, "data.augment": "d4", "model.pretrained": False}
    cfg = load_config("configs/baseline.yaml", "full", overrides=sets)
    assert cfg["train"]["steps"] == 400 and cfg["model"]["pretrained"] is False
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_assignments(["train.steps"])
    with pytest.raises(ConfigError, match=r"train.step: unknown key \(did you mean train.steps\?\)"):
        load_config("configs/baseline.yaml", "full", overrides=parse_assignments(["train.step=3"]))


def test_an_encoder_timm_does_not_know_is_named_with_close_matches():
    from defectlib.config import load_config

    with pytest.raises(ConfigError, match=r"model.encoder: timm knows no encoder 'tf_efficientnet_lite9' \(did you mean tf_efficientnet_lite"):
        load_config("configs/baseline.yaml", "full", overrides={"model.encoder": "tf_efficientnet_lite9"})


def test_a_folder_config_takes_the_mask_format_its_dataset_declares(tmp_path):
    from PIL import Image

    from defectlib.config import resolve_config

    root = tmp_path / "steel"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "dataset.yaml").write_text("classes: [background, a, b, c]\nmask_format: index\n")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "x.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "x.png")
    cfg = resolve_config({"name": "steel", "data": {"dataset": "folder", "root": str(root)}}, "full")
    assert cfg["data"]["mask_format"] == "index" and cfg["data"]["classes"] == ["background", "a", "b", "c"]


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_the_ladder_rungs_that_are_campaign_arms_share_their_configs(profile):
    """configs/ladder.yaml's rungs named like arms of configs/campaign.yaml resolve to those arms, so the
    campaign's runs on folds 0-2 serve the ladder."""
    from defectlib.config import config_hash, load_family

    ladder = load_family("configs/ladder.yaml", profile=profile)
    campaign = load_family("configs/campaign.yaml", profile=profile)
    shared = set(ladder) & set(campaign)
    assert shared == {"square", "reference"}
    assert all(config_hash(ladder[a]) == config_hash(campaign[a]) for a in shared)
    assert config_hash(ladder["square-ce"]) not in {config_hash(c) for c in campaign.values()}
