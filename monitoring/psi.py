"""Population Stability Index with bins fixed from the reference's quantiles. Pure.

Confidence (max softmax) piles up near 1, so equal-width bins over the combined data put
almost everything in the last bin and move with every window. Bins here are cut at the
reference's quantiles once, so each holds about the same share of the reference and the
figure is comparable across windows. The pure PSI is :mod:`pipeline.core.psi` (the live
check before a promotion uses it too), re-exported here.

Example:
    >>> edges = quantile_edges([0.5, 0.6, 0.7, 0.8, 0.9], n_bins=5)
    >>> round(psi([0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.8, 0.9], edges), 6)
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

# the pure PSI lives in the core (retraining's live check uses it too); re-exported here
from pipeline.core.psi import FLOOR as FLOOR
from pipeline.core.psi import psi as psi
from pipeline.core.psi import psi_from_shares as psi_from_shares
from pipeline.core.psi import quantile_edges as quantile_edges
from pipeline.core.psi import shares as shares
from pipeline.core.stats import wilson_interval as wilson_interval  # drift reports use it

Level = Literal["ok", "warn", "drift"]


def sampling_psi(categories: int, n: float, m: float, quantile: float) -> float:
    """The PSI that a window of ``n`` rows and a reference of ``m`` rows drawn from the *same*
    distribution over ``categories`` bins or topics exceed with probability ``1 - quantile``:
    sampling noise, not drift. For small differences PSI is the symmetric Kullback-Leibler
    divergence, about ``(1/n + 1/m)`` times Pearson's two-sample statistic, which follows
    chi-square with ``categories - 1`` degrees of freedom (Yurdakul 2018, "Statistical
    properties of population stability index"). A window of 150 rows against 3,000 over 10
    bins exceeds PSI 0.1 about one time in eight from noise alone; at ``quantile`` 0.999 the
    floor is 0.195. 0 where there is nothing to compare (one category, or ``quantile`` 0).

    Example:
        >>> round(sampling_psi(10, 150, 3000, 0.999), 3)
        0.195
    """
    if categories < 2 or quantile <= 0 or n <= 0 or m <= 0:
        return 0.0
    if not quantile < 1:
        raise ValueError(f"quantile must lie in [0, 1), got {quantile}")
    from scipy.stats import chi2  # heavy import, only where a floor is computed

    return float(chi2.ppf(quantile, categories - 1)) * (1.0 / n + 1.0 / m)


def categorical_psi(
    reference_mix: Mapping[str, float], current: Mapping[str, int], floor: float = FLOOR
) -> float:
    """PSI of category shares (e.g. the predicted-topic mix)."""
    cats = sorted(set(reference_mix) | set(current))
    ref_total = sum(reference_mix.values()) or 1.0
    cur_total = sum(current.values()) or 1
    return psi_from_shares(
        [reference_mix.get(c, 0.0) / ref_total for c in cats],
        [current.get(c, 0) / cur_total for c in cats],
        floor,
    )


def level_of(value: float, warn: float = 0.1, drift: float = 0.25) -> Level:
    if value >= drift:
        return "drift"
    if value >= warn:
        return "warn"
    return "ok"
