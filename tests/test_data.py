import hashlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from defectlib import data
from defectlib.data import DatasetError


def test_sample_dataset_is_valid_and_small():
    samples = data.validate_dataset(data.sample_dataset())
    assert {s.category for s in samples} == set(data.CATEGORIES)
    assert sum(p.stat().st_size for p in data.sample_dataset().rglob("*") if p.is_file()) < 1_000_000


def test_class_index_mask_uses_category_label(tiny_pair):
    (sample,) = data.list_samples(tiny_pair)
    mask = data.class_index_mask(sample)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, data.CLASSES.index("Crack")}
    assert (mask > 0).sum() == 50


def test_dataset_item_shapes_and_meta(tiny_pair):
    from defectlib.transforms import build_transform

    ds = data.MagneticTileDataset(data.list_samples(tiny_pair), build_transform(64))
    item = ds[0]
    assert tuple(item["image"].shape) == (3, 64, 64)
    assert tuple(item["mask"].shape) == (64, 64)
    assert set(item["mask"].unique().tolist()) == {0, 3}  # nearest-neighbour: no new values
    assert item["meta"]["height"] == 20 and item["meta"]["width"] == 30
    assert item["meta"]["category"] == "Crack"


def _expect_error(root, fragment, name):
    with pytest.raises(DatasetError) as info:
        data.validate_dataset(root)
    assert fragment in str(info.value) and name in str(info.value)


def test_truncated_image(tiny_pair):
    path = tiny_pair / "MT_Crack/Imgs/exp1_num_1.jpg"
    path.write_bytes(path.read_bytes()[:100])
    _expect_error(tiny_pair, "truncated", "exp1_num_1.jpg")


def test_image_without_mask(tiny_pair):
    (tiny_pair / "MT_Crack/Imgs/exp1_num_1.png").unlink()
    _expect_error(tiny_pair, "has no mask", "exp1_num_1.jpg")


def test_mask_of_another_size(tiny_pair):
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    _expect_error(tiny_pair, "differs from image size", "exp1_num_1.png")


@pytest.mark.parametrize("array", [
    np.zeros((20, 30, 3), np.uint8),                  # RGB
    np.zeros((20, 30), np.uint16) + 300,              # 16-bit
    np.random.default_rng(0).integers(1, 6, (20, 30)).astype(np.uint8),  # class indices, not 0/255
])
def test_mask_with_unexpected_values(tiny_pair, array):
    Image.fromarray(array).save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    with pytest.raises(DatasetError, match="exp1_num_1.png"):
        data.validate_dataset(tiny_pair)


def test_empty_folder(tmp_path):
    (tmp_path / "MT_Crack" / "Imgs").mkdir(parents=True)
    _expect_error(tmp_path, "no MT_<Class>/Imgs", str(tmp_path))


def test_non_image_file_among_images(tiny_pair):
    (tiny_pair / "MT_Crack/Imgs/notes.txt").write_text("hello")
    _expect_error(tiny_pair, "not an image/mask file", "notes.txt")


def test_all_problems_reported_at_once(tiny_pair):
    (tiny_pair / "MT_Crack/Imgs/notes.txt").write_text("hello")
    (tiny_pair / "MT_Crack/Imgs/exp2_num_2.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        data.validate_dataset(tiny_pair)
    assert len(info.value.problems) == 2


def _archive_with_manifest(tiny_pair, tmp_path):
    archive = tmp_path / "upstream.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tiny_pair.rglob("*")):
            if p.is_file():
                zf.write(p, "Magnetic-tile-defect-datasets.-abc/" + str(p.relative_to(tiny_pair)))
    manifest = {str(p.relative_to(tiny_pair)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in tiny_pair.rglob("*") if p.is_file()}
    return archive, manifest


def test_install_from_local_archive(tiny_pair, tmp_path):
    archive, manifest = _archive_with_manifest(tiny_pair, tmp_path)
    dest = tmp_path / "installed"
    data.install_dataset(archive, dest, manifest)
    assert len(data.validate_dataset(dest)) == 1


def test_checksum_mismatch_leaves_nothing(tiny_pair, tmp_path):
    archive, manifest = _archive_with_manifest(tiny_pair, tmp_path)
    manifest["MT_Crack/Imgs/exp1_num_1.png"] = "0" * 64
    dest = tmp_path / "out" / "installed"
    with pytest.raises(DatasetError, match="exp1_num_1.png: SHA-256 mismatch"):
        data.install_dataset(archive, dest, manifest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial folder left behind


def test_corrupt_archive_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    dest = tmp_path / "out" / "installed"
    with pytest.raises(DatasetError, match="bad.zip"):
        data.install_dataset(bad, dest, {})
    assert list(dest.parent.iterdir()) == []


def test_manifest_covers_upstream():
    manifest = data.read_manifest()
    images = [n for n in manifest if n.endswith(".jpg") and "/Imgs/" in n]
    assert len(images) == 1344
    assert all(n[:-4] + ".png" in manifest for n in images)


def test_find_dataset_order(tmp_path, monkeypatch, tiny_pair):
    assert data.find_dataset(tiny_pair) == tiny_pair
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tiny_pair))
    assert data.find_dataset() == tiny_pair
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        data.find_dataset()


def test_folder_pairs_for_own_data(tmp_path, tiny_pair):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    shutil.copy(tiny_pair / "MT_Crack/Imgs/exp1_num_1.jpg", images / "a.jpg")
    shutil.copy(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png", masks / "a.png")
    ds = data.FolderDataset(images, masks, defect_label=2)
    assert len(ds) == 1 and ds[0]["mask"].max().item() == 2
    shutil.copy(tiny_pair / "MT_Crack/Imgs/exp1_num_1.jpg", images / "b.jpg")
    with pytest.raises(DatasetError, match="b.jpg: no mask"):
        data.FolderDataset(images, masks)


def test_folder_dataset_empty_folder(tmp_path):
    (tmp_path / "images").mkdir(), (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="folder holds no images"):
        data.FolderDataset(tmp_path / "images", tmp_path / "masks")


def test_one_bit_mask_is_read_as_binary(tiny_pair):
    mask = np.zeros((20, 30), bool)
    mask[2:4, 3:8] = True
    Image.fromarray(mask).convert("1").save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    (sample,) = data.validate_dataset(tiny_pair)
    assert (data.class_index_mask(sample) == 3).sum() == 10
