"""Near-duplicate groups and the committed group-wise, class-stratified split.

Introduced in chapter 01 (EDA).

Magnetic Tile photographs each tile region under six lighting set-ups
(``exp1``..``exp6``) with nearby capture numbers ``n``, and some captures are
repeated.  Images of one region must never straddle splits, so the split is
made over *region groups*, built from two signals:

1. **capture sequence** (file names): sorted by ``n``, consecutive images whose
   lighting index ``k`` increases and whose ``n`` differs by at most
   ``max_gap`` belong to one sequence;
2. **image content**: two sequences are merged when some pair of their images
   is near-identical both in a low-pass view (downscaled, standardised; the
   shading) and a high-pass view (the texture and defect), which catches
   repeated captures anywhere in the numbering.

Neither signal alone is trusted: low-pass correlation on these smooth tiles is
high for unrelated images, and capture numbers of defect-free tiles are dense.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from .data import CATEGORIES, Sample, project_root

SPLITS = ("train", "val", "test")


def split_path() -> Path:
    """The committed split file."""
    return project_root() / "data" / "splits" / "magnetic_tile.json"


def image_features(path: Path, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Standardised low-pass (32x32) and high-pass (``size``², minus a blur) vectors."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    low = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    high = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    high = high - cv2.GaussianBlur(high, (0, 0), 3)
    return tuple((v.ravel() - v.mean()) / (v.std() + 1e-6) for v in (low, high))


def correlations(samples: Sequence[Sample], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
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


def capture_sequences(samples: Sequence[Sample], max_gap: int = 600) -> np.ndarray:
    """Sequence id per sample from the ``exp<k>_num_<n>`` names (signal 1)."""
    order = sorted(range(len(samples)), key=lambda i: (samples[i].num, samples[i].name))
    seq = np.zeros(len(samples), dtype=int)
    current = 0
    for prev, nxt in zip(order[:-1], order[1:]):
        a, b = samples[prev], samples[nxt]
        if not (b.exp > a.exp and b.num - a.num <= max_gap):
            current += 1
        seq[nxt] = current
    return seq


def near_duplicate_groups(
    samples: Sequence[Sample],
    low_corr: np.ndarray | None = None,
    high_corr: np.ndarray | None = None,
    max_gap: int = 600,
    low_threshold: float = 0.97,
    high_threshold: float = 0.9,
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


def group_stratum(categories: Sequence[str], overall: Counter) -> str:
    """A group's stratum: its rarest category in the whole dataset."""
    return min(set(categories), key=lambda c: (overall[c], c))


def make_split(
    samples: Sequence[Sample],
    groups: np.ndarray,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, list[str]]:
    """Assign whole groups to train/val/test, stratified by group stratum.

    Within each stratum, groups are shuffled with ``seed`` and each goes to the
    split furthest below its target share of the stratum's images.
    """
    rng = np.random.default_rng(seed)
    overall = Counter(s.category for s in samples)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    strata: dict[str, list[int]] = {}
    for g, idx in members.items():
        strata.setdefault(group_stratum([samples[i].category for i in idx], overall), []).append(g)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for stratum in sorted(strata):
        gs = strata[stratum]
        gs = [gs[k] for k in rng.permutation(len(gs))]
        total = sum(len(members[g]) for g in gs)
        filled = np.zeros(3)
        for g in gs:
            deficit = np.asarray(fractions) * total - filled
            k = int(np.argmax(deficit))
            filled[k] += len(members[g])
            split[SPLITS[k]] += [samples[i].name for i in members[g]]
    return {name: sorted(names) for name, names in split.items()}


def build_split_file(samples: Sequence[Sample], path: Path | None = None, seed: int = 0) -> dict:
    """Compute groups and split and write them (with the method's parameters) as JSON."""
    low, high = correlations(samples)
    groups = near_duplicate_groups(samples, low, high)
    split = make_split(samples, groups, seed=seed)
    payload = {
        "dataset": "Magnetic Tile (Huang et al. 2020), upstream commit cc4eb530",
        "method": "group-wise stratified split; groups = capture sequences (max_gap=600) "
                  "merged by low-pass corr >= 0.97 and high-pass corr >= 0.9",
        "seed": seed,
        "fractions": [0.70, 0.15, 0.15],
        "splits": split,
        "groups": {s.name: int(g) for s, g in zip(samples, groups)},
    }
    path = Path(path or split_path())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
    return payload


def load_split(path: Path | None = None) -> dict:
    """The committed split: ``{"splits": {...}, "groups": {...}, ...}``."""
    return json.loads(Path(path or split_path()).read_text())


def select(samples: Sequence[Sample], split: str, split_data: dict | None = None) -> list[Sample]:
    """The samples of one split (``train``, ``val`` or ``test``), in file order.

    Samples not named in the split file (e.g. your own extra images) are ignored.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    names = set((split_data or load_split())["splits"][split])
    return [s for s in samples if s.name in names]


def split_table(samples: Sequence[Sample], split_data: dict | None = None):
    """Images per category and split (a pandas DataFrame), plus region groups."""
    import pandas as pd

    split_data = split_data or load_split()
    where = {n: k for k, names in split_data["splits"].items() for n in names}
    groups = split_data["groups"]
    rows = [{"category": s.category, "split": where.get(s.name), "group": groups.get(s.name)} for s in samples]
    df = pd.DataFrame(rows)
    images = df.pivot_table(index="category", columns="split", values="group", aggfunc="size", fill_value=0)
    regions = df.pivot_table(index="category", columns="split", values="group", aggfunc="nunique", fill_value=0)
    images = images.reindex(index=list(CATEGORIES), columns=list(SPLITS)).fillna(0).astype(int)
    regions = regions.reindex(index=list(CATEGORIES), columns=list(SPLITS)).fillna(0).astype(int)
    return images, regions
