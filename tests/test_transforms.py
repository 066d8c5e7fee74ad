import numpy as np
import pytest

from defectlib import transforms


def _source(size=64, value=200, cls=3):
    """A gray image with one bright disc of class ``cls`` (and its mask)."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 20) ** 2 + (xx - 30) ** 2 <= 36
    image = np.full((size, size), 100, np.uint8)
    image[disc] = value
    mask = np.where(disc, cls, 0).astype(np.uint8)
    return image, mask, disc


def test_copy_paste_labels_exactly_the_pasted_pixels_and_changes_nothing_else():
    image, mask, disc = _source()
    paste = transforms.DefectCopyPaste([image], [mask], p=1.0)
    paste.set_random_seed(0)
    rng = np.random.default_rng(1)
    target = rng.integers(30, 90, (64, 64), dtype=np.uint8)       # a defect-free, textured image
    out = paste(image=target, mask=np.zeros_like(mask))
    labelled = out["mask"] > 0
    assert labelled.sum() == disc.sum()                            # the whole defect, once
    assert set(np.unique(out["mask"][labelled])) == {3}            # with its own class
    changed = out["image"] != target
    assert changed.any() and not (changed & ~labelled).any()       # nothing outside the label changes
    # its brightness is shifted to the surroundings it lands on: the disc stays 100 above them
    import cv2
    interior = cv2.erode(labelled.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0   # blending weight 1
    assert abs(np.median(out["image"][interior]) - (target[~labelled].mean() + 100)) < 8


def test_copy_paste_leaves_images_that_hold_a_defect_alone():
    image, mask, _ = _source()
    paste = transforms.DefectCopyPaste([image], [mask], p=1.0)
    out = paste(image=image, mask=mask)
    assert np.array_equal(out["image"], image) and np.array_equal(out["mask"], mask)


def test_cut_defects_finds_each_region_of_each_class():
    image, mask, _ = _source()
    mask[50:53, 5:20] = 1                                          # a second, thin region of class 1
    mask[60, 60] = 2                                               # too small to cut
    patches = transforms.cut_defects([image], [mask])
    assert sorted(int(p.mask.max()) for p in patches) == [1, 3]
    for p in patches:
        assert (p.alpha[p.mask == 0] == 0).all() and (p.alpha[p.mask > 0] > 0).all()


def test_parse_augment_orders_components_and_rejects_unknown_ones():
    assert transforms.parse_augment("photometric+flips") == ["flips", "photometric"]
    assert transforms.parse_augment("copy_paste+d4") == ["copy_paste", "d4"]
    assert transforms.parse_augment("none") == []
    with pytest.raises(ValueError, match="unknown augmentation component"):
        transforms.parse_augment("flips+none")
    with pytest.raises(ValueError, match="needs the training images"):
        transforms.build_augmentation("copy_paste")


@pytest.mark.parametrize("augment", ["flips", "d4", "flips+affine", "flips+photometric", "copy_paste+d4+affine+photometric"])
def test_every_pipeline_keeps_shape_and_class_values(augment):
    image, mask, _ = _source()
    pipeline = transforms.build_augmentation(augment, 64, seed=0, images=[image], masks=[mask])
    free = np.full((64, 64), 80, np.uint8)
    for k in range(10):
        for img, msk in ((image, mask), (free, np.zeros_like(mask))):
            out = pipeline(image=img, mask=msk)
            assert out["image"].shape == (64, 64) and out["image"].dtype == np.uint8
            assert set(np.unique(out["mask"])) <= {0, 3}
