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


def bootstrap_many(n: int, statistics: Callable[[list[int]], dict[str, float]], samples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every entry of `statistics(indices)` over one set of resamples of n rows.

    One call per resample computes all metrics at once (their intervals share the resamples).
    Example: bootstrap_many(4, lambda idx: {"mean": sum(c[i] for i in idx) / len(idx)})["mean"]
    """
    rng = random.Random(seed)
    values: dict[str, list[float]] = {}
    for _ in range(samples):
        for key, value in statistics([rng.randrange(n) for _ in range(n)]).items():
            values.setdefault(key, []).append(value)
    tail = (1 - level) / 2
    # A metric some resamples lack (e.g. HasAns F1 of a resample with no answered row) uses those it has.
    return {k: (sorted(v)[int(tail * len(v))], sorted(v)[min(len(v) - 1, int((1 - tail) * len(v)))])
            for k, v in values.items()}
