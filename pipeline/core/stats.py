"""Small statistics shared by the drift reports and the retraining analysis tools. Pure."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``successes / n`` (95 % at the default ``z``); unlike the
    normal interval it does not shrink to nothing at 0 or 1. ``n == 0`` gives (0, 1).

    Example:
        >>> [round(b, 3) for b in wilson_interval(8, 10)]
        [0.49, 0.943]
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
