"""Population Stability Index with bins fixed from the reference's quantiles. Pure.

Confidence (max softmax) piles up near 1, so equal-width bins over the combined data put
almost everything in the last bin and move with every window. Bins here are cut at the
reference's quantiles once, so each holds about the same share of the reference and the
figure is comparable across windows. The drift check (``monitoring.psi``, which re-exports
these) and the live check before a promotion (``retraining.live_check``) share them.

Example:
    >>> edges = quantile_edges([0.5, 0.6, 0.7, 0.8, 0.9], n_bins=5)
    >>> round(psi([0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.6, 0.7, 0.8, 0.9], edges), 6)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FLOOR = 1e-4


def quantile_edges(reference: Sequence[float], n_bins: int = 10) -> list[float]:
    """Inner cut points at the reference's quantiles (duplicates removed)."""
    if len(reference) == 0:
        raise ValueError("reference is empty")
    if n_bins < 2:
        raise ValueError("need at least two bins")
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, n_bins + 1)[1:-1])
    return sorted(set(float(q) for q in qs))


def shares(values: Sequence[float], edges: Sequence[float]) -> npt.NDArray[np.float64]:
    """Share of values per bin: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    idx = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    out: npt.NDArray[np.float64] = counts / max(1.0, float(counts.sum()))
    return out


def psi_from_shares(ref: Sequence[float], cur: Sequence[float], floor: float = FLOOR) -> float:
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r, c = max(r, floor), max(c, floor)
        total += (c - r) * math.log(c / r)
    return total


def psi(
    reference: Sequence[float],
    current: Sequence[float],
    edges: Sequence[float],
    floor: float = FLOOR,
) -> float:
    return psi_from_shares(
        shares(reference, edges).tolist(), shares(current, edges).tolist(), floor
    )
