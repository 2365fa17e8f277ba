"""Bootstrap 95% confidence intervals for per-row metrics.

Example:
    lo, hi = bootstrap_ci([1, 0, 1, 1], lambda idx: sum(c[i] for i in idx) / len(idx))
"""

from __future__ import annotations

import random
from typing import Callable, Sequence


def bootstrap_ci(rows: Sequence, statistic: Callable[[list[int]], float], samples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over `samples` resamples of `rows` with replacement."""
    rng = random.Random(seed)
    n = len(rows)
    values = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(samples))
    tail = (1 - level) / 2
    return values[int(tail * samples)], values[min(samples - 1, int((1 - tail) * samples))]


def resamples(n: int, samples: int = 1000, seed: int = 0) -> list[list[int]]:
    """`samples` seeded resamples (row indices with replacement) of n rows; share them to pair statistics."""
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(samples)]


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of `values`."""
    ordered, tail = sorted(values), (1 - level) / 2
    return ordered[int(tail * len(ordered))], ordered[min(len(ordered) - 1, int((1 - tail) * len(ordered)))]


def bootstrap_values(statistics: Callable[[list[int]], dict[str, float]],
                     draws: list[list[int]]) -> dict[str, list[float]]:
    """Every entry of `statistics(indices)` on each resample in `draws`, as one list per entry.

    A metric some resamples lack (e.g. HasAns F1 of a resample with no answered row) lists those it has.
    """
    values: dict[str, list[float]] = {}
    for idx in draws:
        for key, value in statistics(idx).items():
            values.setdefault(key, []).append(value)
    return values


def bootstrap_many(n: int, statistics: Callable[[list[int]], dict[str, float]], samples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every entry of `statistics(indices)` over one set of resamples of n rows.

    One call per resample computes all metrics at once (their intervals share the resamples).
    Example: bootstrap_many(4, lambda idx: {"mean": sum(c[i] for i in idx) / len(idx)})["mean"]
    """
    values = bootstrap_values(statistics, resamples(n, samples, seed))
    return {k: percentile_interval(v, level) for k, v in values.items()}


def paired_difference(a: dict[str, list[float]], b: dict[str, list[float]],
                      level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of a - b per metric, from `bootstrap_values` of two methods on the SAME draws.

    Pairing matters: two methods scored on the same rows share the rows' difficulty, so the interval of
    their difference is far narrower than the gap between their separate intervals suggests.
    Example: paired_difference({"acc": [0.8, 0.9]}, {"acc": [0.7, 0.7]})["acc"] == (0.1, 0.2) (approximately)
    """
    return {k: percentile_interval([x - y for x, y in zip(a[k], b[k])], level)
            for k in a if k in b and len(a[k]) == len(b[k])}
