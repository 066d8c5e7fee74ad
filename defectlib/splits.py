"""Near-duplicate region groups and the committed five-fold partitions.

Introduced in chapter 01 (EDA).

Magnetic Tile photographs each tile region under six lighting set-ups
(``exp1``..``exp6``) with nearby capture numbers ``n``, and some captures are
repeated.  Images of one region must never straddle folds, so folds are made
of *region groups*, built from two signals:

1. **capture sequence** (file names), built *within each category* (capture
   numbers of different categories interleave): sorted by ``n``, consecutive
   images whose lighting index ``k`` increases and whose ``n`` differs by at
   most ``max_gap`` belong to one sequence;
2. **image content**: two sequences are merged when some pair of their images
   is near-identical both in a low-pass view (downscaled, standardised; the
   shading) and a high-pass view (the texture and defect), which catches
   repeated captures anywhere in the numbering.

The corrected partition (``regions``) adds a third signal:

3. **one tile, two labels**: a few tiles were filed under one category for
   some lights and another for the rest (a crack under one light, a break
   under the other five; a defect visible under one light only, Free under
   the rest).  Two sequences of different categories are merged when their
   lighting indices are disjoint, together they run in capture order with
   increasing index (they interleave), and some pair of their images matches
   in both views at the looser :data:`CROSS_LABEL` thresholds (lighting
   changes the high-pass view between set-ups).

Whole groups go to five folds, stratified so that every fold holds at least
one region of every defect class.  Run *k* tests on fold *k*, validates on
fold *(k + 1) mod 5* and trains on the other three (:func:`fold_split`).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from .classes import CATEGORIES, FREE
from .paths import project_root

N_FOLDS = 5
#: Parameters of the region grouping (recorded in the split file).
GROUPING = {"max_gap": 600, "low_threshold": 0.97, "high_threshold": 0.9}
#: Thresholds of the cross-category merge of interleaved sequences (signal 3).
CROSS_LABEL = {"low_threshold": 0.75, "high_threshold": 0.5}


#: The committed fold files of Magnetic Tile, by kind.
SPLIT_FILES = {"grouped": "magnetic_tile.json", "regions": "magnetic_tile_regions.json",
               "random": "magnetic_tile_random.json"}
#: SHA-256 of the first two fold files, which the first records were made on and which never change:
#: their content stands for their name in a run's identity (see :func:`defectlib.config.config_hash`).
FROZEN_SPLITS = {"grouped": "23ec21c94e8005e00f2d4c615dbd172dc6948ce9e3c830b6464d527f87506c9d",
                 "random": "05c22c159ca4fe6681513b70c5cc2c278ae66951f3737c24158a1a5e4fc2da02"}


def split_path(kind: str = "grouped") -> Path:
    """The committed fold file of a kind: ``grouped`` (first region groups), ``regions`` (corrected
    region groups) or ``random`` (image level)."""
    names = SPLIT_FILES
    if kind not in names:
        raise ValueError(f"unknown split kind {kind!r}; expected one of {sorted(names)}")
    return project_root() / "data" / "splits" / names[kind]


def image_features(path: Path, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Standardised low-pass (32x32) and high-pass (``size``², minus a blur) vectors."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    low = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    high = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    high = high - cv2.GaussianBlur(high, (0, 0), 3)
    return tuple((v.ravel() - v.mean()) / (v.std() + 1e-6) for v in (low, high))


def correlations(samples: Sequence, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise Pearson correlation matrices ``(low-pass, high-pass)``, shape ``(N, N)``."""
    feats = [image_features(s.image) for s in tqdm(samples, desc="features", disable=not progress)]
    low = np.stack([f[0] for f in feats])
    high = np.stack([f[1] for f in feats])
    return low @ low.T / low.shape[1], high @ high.T / high.shape[1]


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def capture_sequences(samples: Sequence, max_gap: int = GROUPING["max_gap"]) -> np.ndarray:
    """Sequence id per sample from the ``exp<k>_num_<n>`` names (signal 1).

    Sequences are built within each category: sorted by capture number, an
    image continues the previous one's sequence when its lighting index is
    higher and its number at most ``max_gap`` above.
    """
    seq = np.zeros(len(samples), dtype=int)
    current = -1
    for category in sorted({s.category for s in samples}):
        order = sorted((i for i, s in enumerate(samples) if s.category == category),
                       key=lambda i: (samples[i].num, samples[i].name))
        for pos, i in enumerate(order):
            prev = samples[order[pos - 1]] if pos else None
            if prev is None or not (samples[i].exp > prev.exp and samples[i].num - prev.num <= max_gap):
                current += 1
            seq[i] = current
    return seq


def near_duplicate_groups(
    samples: Sequence,
    low_corr: np.ndarray | None = None,
    high_corr: np.ndarray | None = None,
    max_gap: int = GROUPING["max_gap"],
    low_threshold: float = GROUPING["low_threshold"],
    high_threshold: float = GROUPING["high_threshold"],
) -> np.ndarray:
    """Region-group id per sample (0..G-1, numbered by first appearance).

    Args:
        samples: the dataset's samples.
        low_corr, high_corr: precomputed :func:`correlations` (computed if None).
        max_gap: largest capture-number gap inside one capture sequence.
        low_threshold, high_threshold: both correlations must reach these for
            two images of different sequences to be called the same region.
    """
    if low_corr is None or high_corr is None:
        low_corr, high_corr = correlations(samples)
    seq = capture_sequences(samples, max_gap)
    uf = _UnionFind(len(samples))
    for i, j in zip(*np.nonzero(np.triu(seq[:, None] == seq[None, :], 1))):
        uf.union(i, j)
    for i, j in zip(*np.nonzero(np.triu((low_corr >= low_threshold) & (high_corr >= high_threshold), 1))):
        uf.union(i, j)
    roots = [uf.find(i) for i in range(len(samples))]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([ids[r] for r in roots])


def _interleave(samples: Sequence, a: list[int], b: list[int], max_gap: int) -> bool:
    """Whether two sequences of different categories are one capture sequence: disjoint lighting indices,
    and together, in capture order, increasing indices with gaps of at most ``max_gap``."""
    if {samples[i].exp for i in a} & {samples[i].exp for i in b}:
        return False
    merged = sorted(a + b, key=lambda i: (samples[i].num, samples[i].name))
    return all(samples[j].exp > samples[i].exp and samples[j].num - samples[i].num <= max_gap
               for i, j in zip(merged, merged[1:]))


def cross_label_merges(samples: Sequence, low_corr: np.ndarray, high_corr: np.ndarray,
                       max_gap: int = GROUPING["max_gap"], low_threshold: float = CROSS_LABEL["low_threshold"],
                       high_threshold: float = CROSS_LABEL["high_threshold"]) -> list[tuple[int, int]]:
    """Pairs of capture sequences ``(sequence id, sequence id)`` of different categories that are one tile (signal 3)."""
    seq = capture_sequences(samples, max_gap)
    members: dict[int, list[int]] = {}
    for i, s in enumerate(seq):
        members.setdefault(int(s), []).append(i)
    spans = {s: (min(samples[i].num for i in m), max(samples[i].num for i in m)) for s, m in members.items()}
    merges = []
    ids = sorted(members)
    for x, s in enumerate(ids):
        for t in ids[x + 1:]:
            a, b = members[s], members[t]
            if samples[a[0]].category == samples[b[0]].category:
                continue
            if spans[s][0] - max_gap > spans[t][1] or spans[t][0] - max_gap > spans[s][1]:
                continue
            if not _interleave(samples, a, b, max_gap):
                continue
            block = (low_corr[np.ix_(a, b)] >= low_threshold) & (high_corr[np.ix_(a, b)] >= high_threshold)
            if block.any():
                merges.append((s, t))
    return merges


def region_groups(samples: Sequence, low_corr: np.ndarray | None = None, high_corr: np.ndarray | None = None,
                  max_gap: int = GROUPING["max_gap"]) -> np.ndarray:
    """Region-group id per sample of the corrected partition: :func:`near_duplicate_groups` (signals 1 and 2)
    merged across categories by :func:`cross_label_merges` (signal 3), numbered by first appearance."""
    if low_corr is None or high_corr is None:
        low_corr, high_corr = correlations(samples)
    base = near_duplicate_groups(samples, low_corr, high_corr, max_gap)
    seq = capture_sequences(samples, max_gap)
    uf = _UnionFind(len(samples))
    for i, g in enumerate(base):
        uf.union(i, int(np.flatnonzero(base == g)[0]))
    first = {int(s): int(np.flatnonzero(seq == s)[0]) for s in np.unique(seq)}
    for s, t in cross_label_merges(samples, low_corr, high_corr, max_gap):
        uf.union(first[s], first[t])
    roots = [uf.find(i) for i in range(len(samples))]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([ids[r] for r in roots])


def label_inconsistencies(samples: Sequence, groups: np.ndarray) -> pd.DataFrame:
    """Region groups whose images are filed under more than one category: one row per group,
    with its categories, how many images each, and the image names (in capture order)."""
    rows = []
    for g in np.unique(groups):
        idx = sorted(np.flatnonzero(groups == g), key=lambda i: (samples[i].num, samples[i].name))
        counts = Counter(samples[i].category for i in idx)
        if len(counts) > 1:
            rows.append({"group": int(g), "categories": " + ".join(f"{c} ({n})" for c, n in counts.most_common()),
                         "images": len(idx), "names": [samples[i].name for i in idx]})
    return pd.DataFrame(rows, columns=["group", "categories", "images", "names"])


def build_region_split(samples: Sequence, progress: bool = True) -> dict:
    """The corrected grouped partition (``regions``) as the committed file holds it: groups, folds, parameters."""
    low, high = correlations(samples, progress)
    groups = region_groups(samples, low, high)
    folds, seed = make_folds(samples, groups)
    return {
        "dataset": "Magnetic Tile (Huang et al. 2020), upstream commit cc4eb530",
        "method": "grouped, stratified 5-fold partition of region groups; groups = per-category capture "
                  "sequences merged by low-pass and high-pass correlation, and interleaved sequences of "
                  "different categories that match (one tile filed under two labels) merged across categories",
        "parameters": {**GROUPING, "cross_label": CROSS_LABEL, "n_folds": N_FOLDS, "assignment_seed": seed},
        "folds": folds,
        "groups": {s.name: int(g) for s, g in zip(samples, groups)},
    }


def _assign_groups(samples: Sequence, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """One greedy, seeded assignment of whole groups to folds (fold index per group id)."""
    rng = np.random.default_rng(seed)
    cats = [s.category for s in samples]
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    regions_per_cat = Counter(c for idx in members.values() for c in {cats[i] for i in idx})
    images = {c: np.zeros(n_folds) for c in regions_per_cat}
    regions = {c: np.zeros(n_folds) for c in regions_per_cat}
    total = np.zeros(n_folds)
    order = list(members)
    rng.shuffle(order)
    # rarest class first, large groups before small ones: small groups then even out the counts
    order.sort(key=lambda g: (min(regions_per_cat[cats[i]] for i in members[g]), -len(members[g])))
    fold_of = np.zeros(max(members) + 1, dtype=int)
    for g in order:
        idx = members[g]
        counts = Counter(cats[i] for i in idx)
        defect = [c for c in counts if c != FREE]
        tie = rng.random(n_folds)
        key = [(0 if any(regions[c][f] == 0 for c in defect) else 1,
                sum(images[c][f] / (images[c].sum() + n) for c, n in counts.items()),
                total[f], tie[f]) for f in range(n_folds)]
        f = min(range(n_folds), key=key.__getitem__)
        fold_of[g] = f
        total[f] += len(idx)
        for c, n in counts.items():
            images[c][f] += n
            regions[c][f] += 1
    return fold_of


def _imbalance(samples: Sequence, groups: np.ndarray, fold_of: np.ndarray, n_folds: int) -> float:
    """Largest relative deviation of a class's images per fold from an even share (inf if a
    fold lacks a region of some defect class)."""
    worst = 0.0
    for c in {s.category for s in samples}:
        idx = [i for i, s in enumerate(samples) if s.category == c]
        per_fold = np.bincount(fold_of[groups[idx]], minlength=n_folds)
        if c != FREE and (per_fold == 0).any():
            return float("inf")
        worst = max(worst, float(np.abs(per_fold / len(idx) - 1 / n_folds).max() * n_folds))
    return worst


def make_folds(samples: Sequence, groups: np.ndarray, n_folds: int = N_FOLDS, seeds: int = 50) -> tuple[dict, int]:
    """Grouped, stratified folds: ``({"0": [names], ...}, chosen seed)``.

    Whole region groups go to folds, rarest class first; a group goes to a fold
    that lacks a region of one of its defect classes, else to the fold where its
    classes have the fewest images.  Of ``seeds`` seeded assignments the most
    even one (smallest largest deviation of any class's images per fold from
    ``1 / n_folds``) is kept.
    """
    scored = []
    for seed in range(seeds):
        fold_of = _assign_groups(samples, groups, n_folds, seed)
        scored.append((_imbalance(samples, groups, fold_of, n_folds), seed, fold_of))
    score, seed, fold_of = min(scored, key=lambda t: (t[0], t[1]))
    if not np.isfinite(score):
        raise ValueError("no assignment gives every fold a region of every defect class")
    folds = {str(f): sorted(s.name for s, g in zip(samples, groups) if fold_of[g] == f) for f in range(n_folds)}
    return folds, seed


def make_random_folds(samples: Sequence, n_folds: int = N_FOLDS, seed: int = 0) -> dict:
    """Image-level folds stratified by category, ignoring region groups (the leaky protocol)."""
    names = np.array([s.name for s in samples])
    cats = [s.category for s in samples]
    kfold = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return {str(f): sorted(names[test].tolist()) for f, (_, test) in enumerate(kfold.split(names, cats))}


def load_split(path: str | Path | None = None) -> dict:
    """A split file: ``{"folds": {"0": [...], ...}, "groups": {...}, ...}``.

    Raises:
        ValueError: the file is not a fold partition.
    """
    path = Path(path or split_path())
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable split file ({exc})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("folds"), dict):
        raise ValueError(f"{path}: not a split file (expected a 'folds' mapping of fold number to image names)")
    folds = payload["folds"]
    expected = [str(k) for k in range(len(folds))]
    if sorted(folds, key=str) != sorted(expected):
        raise ValueError(f"{path}: folds {sorted(folds)}; expected folds numbered 0..n-1 "
                         f"(run k tests on fold k and validates on fold k + 1)")
    seen: dict[str, str] = {}
    for fold, names in folds.items():
        if not isinstance(names, list):
            raise ValueError(f"{path}: fold {fold}: expected a list of image names")
        for name in names:
            if name in seen:
                raise ValueError(f"{path}: {name!r} is in fold {seen[name]} and fold {fold}")
            seen[name] = fold
    payload.setdefault("groups", {})
    return payload


def fold_split(k: int, split_data: dict | None = None) -> dict[str, list[str]]:
    """Image names of run ``k``: test = fold k, val = fold (k+1) mod n, train = the rest."""
    folds = (split_data or load_split())["folds"]
    n = len(folds)
    if not 0 <= k < n:
        raise ValueError(f"fold {k} out of range; the partition has folds 0..{n - 1}")
    test, val = str(k), str((k + 1) % n)
    train = sorted(name for f, names in folds.items() if f not in (test, val) for name in names)
    return {"train": train, "val": list(folds[val]), "test": list(folds[test])}


def select(samples: Sequence, names: Sequence[str]) -> list:
    """The samples whose name is in ``names``, in the samples' order."""
    wanted = set(names)
    return [s for s in samples if s.name in wanted]


def fold_table(samples: Sequence, split_data: dict | None = None, categories: Sequence[str] = CATEGORIES):
    """``(images, regions)`` per category (rows) and fold (columns), as pandas DataFrames."""
    split_data = split_data or load_split()
    fold_of = {n: int(f) for f, names in split_data["folds"].items() for n in names}
    df = pd.DataFrame([{"category": s.category, "fold": fold_of.get(s.name),
                        "group": split_data["groups"].get(s.name, s.name)} for s in samples])
    df = df.dropna(subset=["fold"])
    folds = sorted(df["fold"].unique())
    images = df.pivot_table(index="category", columns="fold", values="group", aggfunc="size", fill_value=0)
    regions = df.pivot_table(index="category", columns="fold", values="group", aggfunc="nunique", fill_value=0)
    shape = dict(index=list(categories), columns=folds)
    return images.reindex(**shape).fillna(0).astype(int), regions.reindex(**shape).fillna(0).astype(int)
