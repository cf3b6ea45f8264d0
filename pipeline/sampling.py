"""Review sampling at write time. Pure: the caller passes the random generator.

* uniform: each new prediction is chosen with probability ``uniform_share`` (an unbiased
  sample, so reviewed accuracy estimates live accuracy);
* uncertainty: of the rest, the lowest-margin ``uncertain_share`` of the batch (rounded
  stochastically, so the expected share holds for small batches), at most ``topic_cap`` per
  predicted topic (so one confusing topic cannot flood the queue).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Sequence

UNIFORM, UNCERTAINTY = "uniform", "uncertainty"


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    key: int
    topic: str
    margin: float


@dataclasses.dataclass(frozen=True, slots=True)
class Pick:
    key: int
    reason: str
    priority: int  # lower is reviewed first


def select_for_review(
    candidates: Sequence[Candidate],
    *,
    uniform_share: float,
    uncertain_share: float,
    topic_cap: int,
    rng: random.Random,
) -> list[Pick]:
    picks: list[Pick] = []
    chosen: set[int] = set()
    for c in candidates:
        if rng.random() < uniform_share:
            picks.append(Pick(c.key, UNIFORM, 1000))
            chosen.add(c.key)
    # Stochastic rounding keeps the expected share right when batches are small (a batch of
    # one at low traffic must not always yield one item).
    budget = math.floor(uncertain_share * len(candidates) + rng.random())
    per_topic: Counter[str] = Counter()
    for c in sorted(candidates, key=lambda c: c.margin):
        if budget <= 0:
            break
        if c.key in chosen or per_topic[c.topic] >= topic_cap:
            continue
        per_topic[c.topic] += 1
        budget -= 1
        picks.append(Pick(c.key, UNCERTAINTY, int(c.margin * 999)))
    return picks
