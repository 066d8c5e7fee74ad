from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from defectlib.classes import CATEGORIES, DEFECT_CLASSES
from defectlib.data import Sample
from defectlib.download import read_manifest
from defectlib.splits import (capture_sequences, fold_split, load_split, make_folds, near_duplicate_groups,
                              split_path)

GROUPED = load_split()
RANDOM = load_split(split_path("random"))
MAX_GAP = GROUPED["parameters"]["max_gap"]


def _category(name):
    return name.split("/")[0][3:]


def _s(cat, exp, num):
    return Sample(Path(f"exp{exp}_num_{num}.jpg"), Path(f"exp{exp}_num_{num}.png"), cat)


def _fold_of(payload):
    return {n: f for f, names in payload["folds"].items() for n in names}


@pytest.mark.parametrize("payload", [GROUPED, RANDOM], ids=["grouped", "random"])
def test_folds_partition_the_whole_dataset(payload):
    names = [n for part in payload["folds"].values() for n in part]
    assert len(payload["folds"]) == 5
    assert len(names) == len(set(names)) == 1344
    upstream = {n[:-4].replace("/Imgs/", "/") for n in read_manifest() if n.endswith(".jpg") and "/Imgs/" in n}
    assert set(names) == upstream


def test_every_fold_holds_a_region_of_every_defect_class():
    for fold, names in GROUPED["folds"].items():
        regions = Counter()
        for c in {(_category(n), GROUPED["groups"][n]) for n in names}:
            regions[c[0]] += 1
        assert all(regions[c] >= 1 for c in DEFECT_CLASSES), (fold, regions)


def test_class_images_spread_over_folds():
    for c in CATEGORIES:
        per_fold = [sum(_category(n) == c for n in names) for names in GROUPED["folds"].values()]
        total = sum(per_fold)
        # whole regions move together (Crack's largest holds 15 of 57 images), so allow a few groups
        assert max(per_fold) - min(per_fold) <= max(8, 0.1 * total), (c, per_fold)


def test_groups_never_straddle_folds():
    where = _fold_of(GROUPED)
    by_group = {}
    for name, group in GROUPED["groups"].items():
        by_group.setdefault(group, set()).add(where[name])
    assert all(len(folds) == 1 for folds in by_group.values())


def test_capture_sequences_never_straddle_folds():
    """Per category, by capture number: consecutive images with a rising lighting index and a small gap
    are one region and must share a fold (the leak of the earlier split)."""
    where = _fold_of(GROUPED)
    by_category = {}
    for name in where:
        stem = name.split("/")[1]
        exp, num = int(stem.split("_")[0][3:]), int(stem.split("_")[2])
        by_category.setdefault(_category(name), []).append((num, exp, name))
    for items in by_category.values():
        items.sort()
        for (n1, k1, a), (n2, k2, b) in zip(items, items[1:]):
            if k2 > k1 and n2 - n1 <= MAX_GAP:
                assert where[a] == where[b], (a, b)


def test_known_break_region_sits_in_one_fold():
    region = ["exp1_num_116934", "exp2_num_116961", "exp3_num_116981", "exp4_num_116999", "exp6_num_117060"]
    where = _fold_of(GROUPED)
    assert len({where[f"MT_Break/{n}"] for n in region}) == 1
    assert len({GROUPED["groups"][f"MT_Break/{n}"] for n in region}) == 1


def test_capture_sequences_are_built_within_each_category():
    # a Free capture between two captures of one Crack region must not break the Crack sequence
    samples = [_s("Crack", 1, 100), _s("Free", 1, 110), _s("Crack", 2, 130), _s("Crack", 3, 160),
               _s("Crack", 1, 5000), _s("Crack", 2, 5020), _s("Free", 2, 5030)]
    seq = capture_sequences(samples)
    assert seq[0] == seq[2] == seq[3]
    assert seq[4] == seq[5] != seq[0]
    assert seq[1] != seq[0] and seq[6] != seq[5]


def test_groups_merge_identical_content_only_when_both_signals_agree():
    samples = [_s("Crack", 1, 100), _s("Crack", 1, 9000), _s("Crack", 1, 20000)]
    low = np.array([[1, .99, .99], [.99, 1, .99], [.99, .99, 1]])
    high = np.array([[1, .95, .2], [.95, 1, .2], [.2, .2, 1]])
    groups = near_duplicate_groups(samples, low, high)
    assert groups[0] == groups[1] != groups[2]


def test_make_folds_is_groupwise_and_stratified():
    samples = [_s(c, 1, 1000 * i) for i, c in enumerate(["Crack"] * 10 + ["Fray"] * 10 + ["Free"] * 30)]
    groups = np.arange(len(samples)) // 2
    folds, seed = make_folds(samples, groups)
    assert (folds, seed) == make_folds(samples, groups)
    where = {n: f for f, names in folds.items() for n in names}
    for g in set(groups):
        assert len({where[samples[i].name] for i in np.nonzero(groups == g)[0]}) == 1
    for f, names in folds.items():
        assert {s.category for s in samples if s.name in names} >= {"Crack", "Fray"}


def test_fold_split_rotates_test_and_validation():
    for k in range(5):
        parts = fold_split(k, GROUPED)
        assert parts["test"] == GROUPED["folds"][str(k)]
        assert parts["val"] == GROUPED["folds"][str((k + 1) % 5)]
        assert not set(parts["train"]) & (set(parts["val"]) | set(parts["test"]))
        assert len(parts["train"]) + len(parts["val"]) + len(parts["test"]) == 1344
        assert 0.55 < len(parts["train"]) / 1344 < 0.65
    with pytest.raises(ValueError, match="fold 5 out of range"):
        fold_split(5, GROUPED)


def test_random_partition_is_image_level_and_stratified():
    where = _fold_of(RANDOM)
    straddling = sum(len({where[n] for n, g in RANDOM["groups"].items() if g == group}) > 1
                     for group in set(RANDOM["groups"].values()))
    assert straddling > 50   # the leak it exists to measure
    for c in CATEGORIES:
        per_fold = [sum(_category(n) == c for n in names) for names in RANDOM["folds"].values()]
        assert max(per_fold) - min(per_fold) <= 1
