from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from defectlib.classes import CATEGORIES, DEFECT_CLASSES
from defectlib.data import Sample
from defectlib.download import read_manifest
from defectlib.paths import sha256_file
from defectlib.splits import (FROZEN_SPLITS, build_region_split, capture_sequences, cross_label_merges, fold_split,
                              label_inconsistencies, load_split, make_folds, near_duplicate_groups, region_groups,
                              split_path)

GROUPED = load_split()
RANDOM = load_split(split_path("random"))
REGIONS = load_split(split_path("regions"))
MAX_GAP = GROUPED["parameters"]["max_gap"]


def _category(name):
    return name.split("/")[0][3:]


def _s(cat, exp, num):
    return Sample(Path(f"exp{exp}_num_{num}.jpg"), Path(f"exp{exp}_num_{num}.png"), cat)


def _fold_of(payload):
    return {n: f for f, names in payload["folds"].items() for n in names}


@pytest.mark.parametrize("payload", [GROUPED, REGIONS, RANDOM], ids=["grouped", "regions", "random"])
def test_folds_partition_the_whole_dataset(payload):
    names = [n for part in payload["folds"].values() for n in part]
    assert len(payload["folds"]) == 5
    assert len(names) == len(set(names)) == 1344
    upstream = {n[:-4].replace("/Imgs/", "/") for n in read_manifest() if n.endswith(".jpg") and "/Imgs/" in n}
    assert set(names) == upstream


@pytest.mark.parametrize("payload", [GROUPED, REGIONS], ids=["grouped", "regions"])
def test_every_fold_holds_a_region_of_every_defect_class(payload):
    for fold, names in payload["folds"].items():
        regions = Counter()
        for c in {(_category(n), payload["groups"][n]) for n in names}:
            regions[c[0]] += 1
        assert all(regions[c] >= 1 for c in DEFECT_CLASSES), (fold, regions)


@pytest.mark.parametrize("payload", [GROUPED, REGIONS], ids=["grouped", "regions"])
def test_class_images_spread_over_folds(payload):
    for c in CATEGORIES:
        per_fold = [sum(_category(n) == c for n in names) for names in payload["folds"].values()]
        total = sum(per_fold)
        # whole regions move together (Crack's largest holds 15 of 57 images), so allow a few groups
        assert max(per_fold) - min(per_fold) <= max(8, 0.1 * total), (c, per_fold)


@pytest.mark.parametrize("payload", [GROUPED, REGIONS], ids=["grouped", "regions"])
def test_groups_never_straddle_folds(payload):
    where = _fold_of(payload)
    by_group = {}
    for name, group in payload["groups"].items():
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


def test_the_first_two_fold_files_are_frozen():
    """Records on them are reused by config name alone: their content must never change."""
    for kind, digest in FROZEN_SPLITS.items():
        assert sha256_file(split_path(kind)) == digest, f"{split_path(kind)} changed; its records would be wrong"


def _tile(cat_of_exp, num0, code):
    """One tile under six lights, each image filed under ``cat_of_exp[k]``; ``code`` its content vector."""
    return [(_s(cat_of_exp[k - 1], k, num0 + 10 * k), code) for k in range(1, 7)]


def _correlations(tiles):
    samples = [s for t in tiles for s, _ in t]
    codes = np.array([c for t in tiles for _, c in t], float)
    corr = codes @ codes.T
    return samples, corr, corr


def test_a_tile_filed_under_two_labels_is_one_region():
    codes = iter(np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0].T)   # orthonormal: no match
    two_labels = _tile(["Crack", "Break", "Break", "Break", "Break", "Break"], 1000, next(codes))
    other = _tile(["Break"] * 6, 5000, next(codes))
    apart = _tile(["Fray", "Blowhole", "Fray", "Blowhole", "Fray", "Blowhole"], 9000, None)
    apart = [(s, next(codes)) for s, _ in apart]              # interleaved, but every image different
    samples, low, high = _correlations([two_labels, other, apart])
    groups = region_groups(samples, low, high)
    assert len(set(groups[:6])) == 1 and groups[0] != groups[6]
    assert len(set(groups[12:])) == 2                         # the unmatched interleaved sequences stay apart
    assert len(cross_label_merges(samples, low, high)) == 1
    table = label_inconsistencies(samples, groups)
    assert table["categories"].tolist() == ["Break (5) + Crack (1)"]


def test_sequences_sharing_a_lighting_index_are_not_merged_across_labels():
    code = np.ones(8) / np.sqrt(8)
    a = [(_s("Crack", k, 100 + 10 * k), code) for k in (1, 2, 3)]
    b = [(_s("Break", k, 105 + 10 * k), code) for k in (3, 4, 5)]   # both hold an exp3 image
    samples, low, high = _correlations([a, b])
    assert cross_label_merges(samples, low, high) == []


def test_the_committed_regions_file_is_what_the_code_builds():
    from defectlib.data import list_samples
    from defectlib.download import find_dataset

    try:
        root = find_dataset(download=False)
    except FileNotFoundError:
        pytest.skip("the full dataset is not here")
    built = build_region_split(list_samples(root), progress=False)
    assert built["folds"] == REGIONS["folds"] and built["groups"] == REGIONS["groups"]
