import numpy as np
import pytest
from PIL import Image

from defectlib.data import project_root, sample_dataset
from defectlib.experiments import load_config


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
    """A smoke run on fold 0 (record and results root)."""
    from defectlib.experiments import train_run

    root = tmp_path_factory.mktemp("results")
    return train_run(smoke_config, fold=0, progress=False, results_root=root), root


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
