import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlib import experiments, models, paths, run_data
from defectlib.config import config_hash, load_config
from defectlib.download import sample_dataset
from defectlib.paths import project_root
from defectlib.records import checkpoint_file


@pytest.fixture
def tiny_pair(tmp_path):
    """Write a valid 20x30 image and 0/255 mask in upstream layout; return the dataset root."""
    folder = tmp_path / "ds" / "MT_Crack" / "Imgs"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((20, 30), 120, np.uint8)).save(folder / "exp1_num_1.jpg")
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:15] = 255
    Image.fromarray(mask).save(folder / "exp1_num_1.png")
    return tmp_path / "ds"


@pytest.fixture(scope="session")
def smoke_config():
    """The baseline config in the smoke profile, on the committed sample data."""
    return load_config(project_root() / "configs" / "baseline.yaml", profile="smoke",
                       overrides={"data.root": str(sample_dataset()), "train.threads": 1})


@pytest.fixture(scope="session")
def trained_run(smoke_config, tmp_path_factory):
    """The one real smoke training of the unit suite, on fold 0: ``(record, results root)``.

    Every test that needs a trained model or a record reuses it; tests of
    orchestration alone (families, partitions, command-line routing) use
    :func:`fake_training` instead of training again.
    """
    root = tmp_path_factory.mktemp("results")
    return experiments.train_run(smoke_config, fold=0, progress=False, results_root=root), root


@pytest.fixture
def fake_training(trained_run, monkeypatch):
    """Replace :func:`defectlib.experiments.train_run` by a stand-in that trains nothing.

    It writes what a run writes, for the config, fold and seed it is given:
    the fixture's weights saved as that run's checkpoint, and a record with
    that run's identity, partition and part sizes (metrics copied from the
    fixture). Returns the list of ``(config name, fold, seed)`` it was asked for.
    """
    record0, root0 = trained_run
    model, _ = models.load_checkpoint(checkpoint_file(record0, root0))
    calls = []

    def train_run(cfg, fold=0, seed=None, progress=True, results_root=None, stop_after_epoch=None):
        seed = fold if seed is None else seed
        calls.append((cfg["name"], fold, seed))
        root = Path(results_root or paths.config_results_dir(cfg))
        ckpt = experiments.checkpoint_path(cfg, fold, seed, root)
        models.save_checkpoint(ckpt, model, cfg, fold=fold, seed=seed, epoch=record0["best_epoch"])
        samples = run_data.dataset_samples(cfg, notify=False)
        payload, split_file = run_data.split_data(cfg, samples, root)
        parts = run_data.fold_samples(cfg, fold, samples, payload)
        record = {**record0, "run_id": experiments.run_id(cfg, fold, seed), "config": cfg,
                  "config_hash": config_hash(cfg), "fold": fold, "seed": seed, "world_size": 1,
                  "split_file": paths.relative_to_project(split_file),
                  "split_sizes": {k: len(v) for k, v in parts.items()},
                  "checkpoint": {"path": os.path.relpath(ckpt, root), "sha256": paths.sha256_file(ckpt)}}
        paths.write_json(experiments.record_path(cfg, fold, seed, root), record)
        return record

    monkeypatch.setattr(experiments, "train_run", train_run)
    return calls


def write_crackforest_like(root, n=15, seed=0):
    """A CrackForest-like folder: RGB 480x320 JPEGs, half 0/1 and half 0/255 PNG masks of thin cracks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(90, 160, (320, 480, 3)).astype(np.uint8)
        mask = np.zeros((320, 480), np.uint8)
        if i % 5:   # a few crack-free images
            r = int(rng.integers(40, 280))
            mask[r:r + 3, 60:420] = 1
            image[r:r + 3, 60:420] = 30
        Image.fromarray(image).save(root / "images" / f"{i:03d}.jpg", quality=95)
        Image.fromarray(mask * (255 if i % 2 else 1)).save(root / "masks" / f"{i:03d}.png")
    return root
