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
    from defectlib.training import train

    root = tmp_path_factory.mktemp("results")
    return train(smoke_config, seed=0, progress=False, results_root=root), root
