from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.psi import (
    categorical_psi,
    level_of,
    psi,
    psi_from_shares,
    quantile_edges,
    shares,
    wilson_interval,
)


def test_psi_matches_hand_computation() -> None:
    ref, cur = [0.25, 0.25, 0.5], [0.5, 0.25, 0.25]
    hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi_from_shares(ref, cur) == pytest.approx(hand)
    assert hand == pytest.approx(0.34657, abs=1e-5)


def test_empty_bins_use_the_floor() -> None:
    value = psi_from_shares([0.5, 0.5, 0.0], [0.5, 0.4, 0.1], floor=1e-4)
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert value == pytest.approx(hand)


def test_quantile_bins_hold_equal_reference_shares() -> None:
    rng = np.random.default_rng(0)
    ref = 1 - rng.beta(0.5, 8, 20_000)  # piles up near 1 like real confidence
    edges = quantile_edges(ref, 10)
    assert len(edges) == 9
    assert shares(ref, edges) == pytest.approx([0.1] * 10, abs=0.002)
    assert psi(ref, ref[:5000], edges) < 0.01
    shifted = 1 - rng.beta(1.5, 4, 5000)
    assert psi(ref, shifted, edges) > 0.25


def test_categorical_psi() -> None:
    ref = {"a": 0.25, "b": 0.25, "c": 0.5}
    assert categorical_psi(ref, {"a": 25, "b": 25, "c": 50}) == pytest.approx(0.0)
    hand = psi_from_shares([0.25, 0.25, 0.5], [0.5, 0.25, 0.25])
    assert categorical_psi(ref, {"a": 50, "b": 25, "c": 25}) == pytest.approx(hand)


def test_levels_and_interval() -> None:
    assert [level_of(v) for v in (0.0, 0.099, 0.1, 0.249, 0.25)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "drift",
    ]
    lo, hi = wilson_interval(90, 100)
    assert 0.82 < lo < 0.84 and 0.94 < hi < 0.95
