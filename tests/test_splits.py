from collections import Counter
from pathlib import Path

import numpy as np

from defectlib.data import CATEGORIES, Sample, read_manifest
from defectlib.splits import capture_sequences, load_split, make_split, near_duplicate_groups


def _category(name):
    return name.split("/")[0][3:]


def test_committed_split_disjoint_and_complete():
    split = load_split()["splits"]
    names = [n for part in split.values() for n in part]
    assert len(names) == len(set(names)) == 1344
    upstream = {n[:-4].replace("/Imgs/", "/") for n in read_manifest() if n.endswith(".jpg") and "/Imgs/" in n}
    assert set(names) == upstream


def test_committed_split_keeps_class_proportions():
    split = load_split()["splits"]
    total = Counter(_category(n) for part in split.values() for n in part)
    for part, target in zip(("train", "val", "test"), (0.70, 0.15, 0.15)):
        counts = Counter(_category(n) for n in split[part])
        for c in CATEGORIES:
            # whole region groups move together, so the tolerance is a few groups
            assert abs(counts[c] / total[c] - target) < 0.12, (part, c)
        assert abs(len(split[part]) / 1344 - target) < 0.03


def test_groups_never_straddle_splits():
    payload = load_split()
    where = {n: k for k, part in payload["splits"].items() for n in part}
    by_group = {}
    for name, group in payload["groups"].items():
        by_group.setdefault(group, set()).add(where[name])
    assert all(len(parts) == 1 for parts in by_group.values())


def _s(cat, exp, num):
    return Sample(Path(f"exp{exp}_num_{num}.jpg"), Path(f"exp{exp}_num_{num}.png"), cat)


def test_capture_sequences_from_names():
    samples = [_s("Crack", 1, 100), _s("Crack", 2, 130), _s("Crack", 3, 160),
               _s("Crack", 1, 5000), _s("Crack", 2, 5020), _s("Free", 1, 5030)]
    seq = capture_sequences(samples)
    assert seq[0] == seq[1] == seq[2]
    assert seq[3] == seq[4] != seq[0]
    assert seq[5] != seq[4]  # lighting index went back to 1: a new region


def test_groups_merge_identical_content_only_when_both_signals_agree():
    samples = [_s("Crack", 1, 100), _s("Crack", 1, 9000), _s("Crack", 1, 20000)]
    low = np.array([[1, .99, .99], [.99, 1, .99], [.99, .99, 1]])
    high = np.array([[1, .95, .2], [.95, 1, .2], [.2, .2, 1]])
    groups = near_duplicate_groups(samples, low, high)
    assert groups[0] == groups[1] != groups[2]


def test_make_split_is_seeded_and_groupwise():
    samples = [_s(c, 1, 1000 * i + j) for i, c in enumerate(["Crack"] * 10 + ["Free"] * 30) for j in range(1)]
    groups = np.arange(len(samples)) // 2
    a = make_split(samples, groups, seed=1)
    assert a == make_split(samples, groups, seed=1)
    where = {n: k for k, v in a.items() for n in v}
    for g in set(groups):
        assert len({where[samples[i].name] for i in np.nonzero(groups == g)[0]}) == 1
