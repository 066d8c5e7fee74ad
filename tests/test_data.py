import hashlib
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from defectlib import classes, data, download
from defectlib.errors import DatasetError


def test_sample_dataset_is_valid_and_small():
    samples = data.validate_dataset(download.sample_dataset())
    assert {s.category for s in samples} == set(classes.CATEGORIES)
    assert sum(p.stat().st_size for p in download.sample_dataset().rglob("*") if p.is_file()) < 1_000_000


def test_class_index_mask_uses_category_label(tiny_pair):
    (sample,) = data.list_samples(tiny_pair)
    mask = data.class_index_mask(sample)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, classes.CLASSES.index("Crack")}
    assert (mask > 0).sum() == 50


def test_dataset_decodes_once_and_serves_resized_items(tiny_pair, monkeypatch):
    from defectlib.transforms import build_augmentation

    ds = data.SegmentationDataset(data.list_samples(tiny_pair), 64, transform=build_augmentation("flips"),
                                  num_classes=6, keep_native=True)
    monkeypatch.setattr(data, "read_image", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again")))
    item = ds[0]
    assert tuple(item["image"].shape) == (3, 64, 64)
    assert tuple(item["mask"].shape) == (64, 64)
    assert set(item["mask"].unique().tolist()) == {0, 3}  # nearest-neighbour: no new values
    assert ds.sizes[0] == (20, 30) and ds.native_mask(0).shape == (20, 30)
    assert ds.pixel_counts.tolist() == [550, 0, 0, 50, 0, 0]


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


def _small_defect_mask(value):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:7, 5:8] = value   # 6 pixels: 1 % of the mask
    return mask


@pytest.mark.parametrize("array, fragment", [
    (np.dstack([_small_defect_mask(255), np.zeros((20, 30, 2), np.uint8)]), "mode RGB"),  # coloured RGB
    (np.zeros((20, 30), np.uint16) + 300, "mode I"),                     # 16-bit mask
    (_small_defect_mask(7), "values {0, 7}"),                            # few pixels of a wrong value
    (_small_defect_mask(3), "values {0, 3}"),                            # an undeclared class-index mask
    (np.random.default_rng(0).integers(1, 6, (20, 30)).astype(np.uint8), "values {1, 2, 3, 4, 5}"),
])
def test_mask_with_unexpected_values(tiny_pair, array, fragment):
    Image.fromarray(array).save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    with pytest.raises(DatasetError, match="exp1_num_1.png") as info:
        data.validate_dataset(tiny_pair)
    assert fragment in str(info.value)


@pytest.mark.parametrize("mask, pixels", [
    (_small_defect_mask(1), 6),                                     # 0/1 mask
    (_small_defect_mask(255), 6),                                   # 0/255 mask
    (np.where(_small_defect_mask(255) > 0, 255, 0).astype(np.uint8) | np.pad(np.full((1, 3), 40, np.uint8),
                                                                            ((4, 15), (5, 22))), 6),  # anti-aliased edge
])
def test_binary_mask_formats(tiny_pair, mask, pixels):
    Image.fromarray(mask).save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    (sample,) = data.validate_dataset(tiny_pair)
    assert (data.class_index_mask(sample) == 3).sum() == pixels


def test_sixteen_bit_image_is_scaled_by_its_range(tmp_path):
    arr = np.linspace(1000, 3000, 20 * 30).reshape(20, 30).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    image = data.read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_image_above_the_pixel_limit_is_refused_before_decoding(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DatasetError, match=r"big.png: 100x100 image is larger than the limit"):
        data.read_image(tmp_path / "big.png", max_pixels=5000)


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
    download.install_dataset(archive, dest, manifest)
    assert len(data.validate_dataset(dest)) == 1


def test_checksum_mismatch_leaves_nothing(tiny_pair, tmp_path):
    archive, manifest = _archive_with_manifest(tiny_pair, tmp_path)
    manifest["MT_Crack/Imgs/exp1_num_1.png"] = "0" * 64
    dest = tmp_path / "out" / "installed"
    with pytest.raises(DatasetError, match="exp1_num_1.png: SHA-256 mismatch"):
        download.install_dataset(archive, dest, manifest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial folder left behind


def test_corrupt_archive_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    dest = tmp_path / "out" / "installed"
    with pytest.raises(DatasetError, match="bad.zip"):
        download.install_dataset(bad, dest, {})
    assert list(dest.parent.iterdir()) == []


def test_manifest_covers_upstream():
    manifest = download.read_manifest()
    images = [n for n in manifest if n.endswith(".jpg") and "/Imgs/" in n]
    assert len(images) == 1344
    assert all(n[:-4] + ".png" in manifest for n in images)


def test_find_dataset_order(tmp_path, monkeypatch, tiny_pair):
    assert download.find_dataset(tiny_pair) == tiny_pair
    monkeypatch.setenv(download.ENV_DATA_DIR, str(tiny_pair))
    assert download.find_dataset() == tiny_pair
    monkeypatch.setenv(download.ENV_DATA_DIR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        download.find_dataset()


def _folder(tmp_path, tiny_pair, names=("a",)):
    (tmp_path / "own" / "images").mkdir(parents=True), (tmp_path / "own" / "masks").mkdir()
    for n in names:
        shutil.copy(tiny_pair / "MT_Crack/Imgs/exp1_num_1.jpg", tmp_path / "own/images" / f"{n}.jpg")
        shutil.copy(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png", tmp_path / "own/masks" / f"{n}.png")
    return tmp_path / "own"


def test_folder_dataset_for_own_data(tmp_path, tiny_pair):
    root = _folder(tmp_path, tiny_pair)
    spec = data.describe_dataset(root)
    assert spec.layout == "folder" and spec.classes == ("background", "defect")
    (sample,) = data.list_dataset(spec)
    assert sample.name == "a" and (data.class_index_mask(sample) == 1).sum() == 50
    shutil.copy(root / "images/a.jpg", root / "images/b.jpg")
    (root / "masks/c.png").write_bytes((root / "masks/a.png").read_bytes())
    with pytest.raises(DatasetError) as info:
        data.list_dataset(spec)
    assert "b.jpg: no mask" in str(info.value) and "c.png: mask has no image" in str(info.value)


def test_folder_dataset_with_declared_class_index_masks(tmp_path, tiny_pair):
    root = _folder(tmp_path, tiny_pair)
    (root / "dataset.yaml").write_text("classes: [background, scratch, dent]\nmask_format: index\n")
    Image.fromarray(_small_defect_mask(2)).save(root / "masks/a.png")
    spec = data.describe_dataset(root)
    assert spec.classes == ("background", "scratch", "dent") and spec.mask_format == "index"
    data.validate_samples(data.list_dataset(spec), num_classes=3)
    Image.fromarray(_small_defect_mask(5)).save(root / "masks/a.png")
    with pytest.raises(DatasetError, match=r"a.png: class-index mask holds values \{0, 5\}; expected 0..2"):
        data.validate_samples(data.list_dataset(spec), num_classes=3)


def test_bad_dataset_description_is_named(tmp_path, tiny_pair):
    root = _folder(tmp_path, tiny_pair)
    (root / "dataset.yaml").write_text("clases: [a, b]\n")
    with pytest.raises(DatasetError, match=r"dataset.yaml: unknown key\(s\) \['clases'\]"):
        data.describe_dataset(root)


def test_folder_dataset_empty_folder(tmp_path):
    (tmp_path / "images").mkdir(), (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="folder holds no images"):
        data.list_dataset(data.describe_dataset(tmp_path))


def test_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="expected images/ and masks/ folders"):
        data.describe_dataset(tmp_path)


def test_one_bit_mask_is_read_as_binary(tiny_pair):
    mask = np.zeros((20, 30), bool)
    mask[2:4, 3:8] = True
    Image.fromarray(mask).convert("1").save(tiny_pair / "MT_Crack/Imgs/exp1_num_1.png")
    (sample,) = data.validate_dataset(tiny_pair)
    assert (data.class_index_mask(sample) == 3).sum() == 10


def _own_folder(tmp_path, n):
    root = tmp_path / "own"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / f"{i}.png")
    return root


def _own_config(root):
    from defectlib.config import resolve_config

    return resolve_config({"name": "own", "data": {"dataset": "folder", "root": str(root)}}, "full")


@pytest.mark.parametrize("folds, message", [
    ({"0": ["0"], "1": ["1"], "3": ["2"]}, r"folds \['0', '1', '3'\]; expected folds numbered 0..n-1"),
    ({"0": ["0", "1"], "1": ["1"], "2": ["2"]}, "'1' is in fold 0 and fold 1"),
])
def test_a_malformed_split_file_is_named(tmp_path, folds, message):
    from defectlib import run_data

    root = _own_folder(tmp_path, 6)
    (root / "splits.json").write_text(json.dumps({"folds": folds}))
    with pytest.raises(ValueError, match=message) as info:
        run_data.split_data(_own_config(root), run_data.dataset_samples(_own_config(root)))
    assert "splits.json" in str(info.value)


def test_split_names_that_match_no_image_are_refused_with_the_file(tmp_path):
    from defectlib import run_data

    root = _own_folder(tmp_path, 6)
    (root / "splits.json").write_text(json.dumps({"folds": {"0": ["0", "x1"], "1": ["1", "x2"], "2": ["2", "3"]}}))
    cfg = _own_config(root)
    with pytest.raises(DatasetError, match=r"splits.json: 2 of 6 names match no image of the dataset \('x1', 'x2'\)"):
        run_data.split_data(cfg, run_data.dataset_samples(cfg))


def test_too_few_images_for_five_folds_says_what_to_do(tmp_path):
    from defectlib import run_data

    cfg = _own_config(_own_folder(tmp_path, 3))
    with pytest.raises(DatasetError, match="3 image\\(s\\) cannot make the 5 folds.*splits.json"):
        run_data.split_data(cfg, run_data.dataset_samples(cfg), tmp_path / "results")
