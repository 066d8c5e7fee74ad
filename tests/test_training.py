import json

from defectlib import experiments as ex
from defectlib.training import train

TIMING = ("wall_seconds", "train_seconds", "train_images_per_second", "git_commit", "environment")


def _comparable(record):
    out = {k: v for k, v in record.items() if k not in TIMING}
    out["history"] = [{k: v for k, v in e.items() if k != "train_seconds"} for e in record["history"]]
    return json.loads(json.dumps(out))


def test_smoke_training_loss_goes_down(smoke_config, tmp_path):
    cfg = ex.resolve_config(smoke_config, "smoke", {"train.epochs": 4, "optimizer.lr": 0.003})
    record = train(cfg, seed=0, progress=False, results_root=tmp_path)
    losses = [e["train_loss"] for e in record["history"]]
    assert losses[-1] < losses[0]


def test_record_contents(trained_run):
    record, root = trained_run
    for key in ("config", "config_hash", "seed", "git_commit", "environment", "wall_seconds", "history",
                "val", "test", "checkpoint"):
        assert key in record
    assert record["config_hash"] == ex.config_hash(record["config"])
    assert (root / record["checkpoint"]["path"]).is_file()
    assert len(record["history"]) == record["epochs_run"]
    assert 0 <= record["val"]["miou"] <= 1
    assert not (root / "work" / record["run_id"]).exists()  # epoch checkpoints cleaned up


def test_same_seed_same_record(smoke_config, trained_run, tmp_path):
    again = train(smoke_config, seed=0, progress=False, results_root=tmp_path)
    assert _comparable(again) == _comparable(trained_run[0])
    assert again["checkpoint"]["sha256"] == trained_run[0]["checkpoint"]["sha256"]


def test_resume_after_kill_gives_same_record(smoke_config, trained_run, tmp_path):
    assert train(smoke_config, seed=0, progress=False, results_root=tmp_path, stop_after_epoch=1) == {}
    assert not ex.record_path(smoke_config, 0, tmp_path).exists()
    resumed = train(smoke_config, seed=0, progress=False, results_root=tmp_path)
    assert _comparable(resumed) == _comparable(trained_run[0])


def test_get_run_reuses_stored_record(smoke_config, trained_run, monkeypatch):
    record, root = trained_run
    monkeypatch.setenv(ex.ENV_RESULTS, str(root))
    monkeypatch.setattr("defectlib.training.train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert ex.get_run(smoke_config, 0) == json.loads(ex.record_path(smoke_config, 0, root).read_text())


def test_smoke_profile_writes_to_temp(monkeypatch):
    monkeypatch.delenv(ex.ENV_RESULTS, raising=False)
    monkeypatch.setenv(ex.ENV_PROFILE, "smoke")
    assert "defectlib-smoke" in str(ex.results_dir())
    assert ex.load_config("configs/baseline.yaml")["data"]["image_size"] == 64
