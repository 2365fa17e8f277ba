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
