"""Timing shared by the benchmark scripts."""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable


def interleaved_medians(names: Iterable[str], step: Callable[[str], float], repeats: int) -> dict[str, float]:
    """Median seconds of ``step(name)`` per variant, after two warm-up calls each.

    The variants take turns, so that a slow moment of the machine hits every one alike.
    """
    names = list(names)
    for name in names:
        step(name), step(name)
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            times[name].append(step(name))
    return {name: statistics.median(t) for name, t in times.items()}
