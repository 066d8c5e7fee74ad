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


def split_path(kind: str = "grouped") -> Path:
    """The committed split file: ``grouped`` (region groups) or ``random`` (image level)."""
    names = {"grouped": "magnetic_tile.json", "random": "magnetic_tile_random.json"}
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
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict) or not isinstance(payload.get("folds"), dict):
        raise ValueError(f"{path}: not a split file (expected a 'folds' mapping)")
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
