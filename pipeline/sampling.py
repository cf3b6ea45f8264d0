"""Review sampling at write time. Pure: the caller passes the random generator.

Two policies. :func:`fill_queue` (the worker's, see "Budgeted queue" below) keeps the pending
queue within the reviewers' capacity; :func:`select_for_review` (shares of every batch) is
the older one, kept for callers that ask for shares.

Shares (:func:`select_for_review`):

* uniform: each new prediction is chosen with probability ``uniform_share`` (an unbiased
  sample, so reviewed accuracy estimates live accuracy);
* uncertainty: of the rest, the lowest-margin ``uncertain_share`` of the batch (rounded
  stochastically, so the expected share holds for small batches), at most ``topic_cap`` per
  predicted topic (so one confusing topic cannot flood the queue).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence

from pipeline.core.records import Queued

UNIFORM, UNCERTAINTY = "uniform", "uncertainty"
SKIP_PENALTY = 100_000  # a skipped item goes behind the rest (monitoring.web.review_queue adds it)


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    key: int
    topic: str
    margin: float
    title: str = ""


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


# Budgeted queue ------------------------------------------------------------------------------
#
# The queue (pending items, every reason and round) holds at most ``Budget.capacity`` items:
# the reviewers' hourly capacity times the look-ahead (how many hours of work may wait).
# Within it:
#
# * the uniform slice (``Budget.uniform`` slots) is a bottom-k sample: every prediction has a
#   pseudo-random key (a hash of its id, so every worker agrees and the key says nothing about
#   the content), and the slice keeps the smallest keys among its movable items and the
#   newcomers. Whatever is reviewed from it is an unbiased sample; a freed slot ends up with
#   the smallest key among everything that arrived since (not the first arrival), so the
#   sample is spread over time.
# * the rest holds the lowest margins (uncertainty), at most ``Budget.topic_cap`` pending per
#   predicted topic and never two items with the same title (the diversity proxy: the worker
#   has no embeddings).
#
# A movable item (first round, not held by a reviewer) that loses its place is replaced; the
# others are never replaced and count against their slice. Claim order (the priority column)
# interleaves the two slices in proportion to their slots, so reviewers label uniform items
# at the uniform share whatever the traffic: uncertainty items by margin, uniform ones by key.

MAX_CAPACITY = 99_999  # priorities are queue positions, below the skip penalty (100,000)


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    capacity: int  # pending items at most (every reason and round)
    uniform: int  # of which the uniform slice's slots
    topic_cap: int  # uncertainty items pending at once per predicted topic

    def __post_init__(self) -> None:
        if not 0 <= self.capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity {self.capacity} not within 0..{MAX_CAPACITY}")
        if not 0 <= self.uniform <= self.capacity:
            raise ValueError(f"uniform slots {self.uniform} not within capacity {self.capacity}")
        if self.topic_cap < 1:
            raise ValueError(f"topic_cap must be at least 1, got {self.topic_cap}")

    @classmethod
    def per_hour(
        cls,
        per_hour: int,
        *,
        lookahead_hours: float = 1.0,
        uniform_fraction: float = 0.2,
        topic_share: float = 0.5,
    ) -> Budget:
        """The queue for reviewers who label ``per_hour`` items an hour.

        Example:
            >>> Budget.per_hour(60)
            Budget(capacity=60, uniform=12, topic_cap=24)
        """
        capacity = min(MAX_CAPACITY, math.ceil(per_hour * lookahead_hours))
        uniform = min(capacity, round(capacity * uniform_fraction))
        if uniform == 0 and uniform_fraction > 0 and capacity > 0:
            uniform = 1  # a share asked for always gets a slot
        topic_cap = max(1, math.ceil((capacity - uniform) * topic_share))
        return cls(capacity, uniform, topic_cap)


@dataclasses.dataclass(frozen=True, slots=True)
class Fill:
    picks: list[Pick]  # new items, uniform ones first
    replaced: list[int]  # item ids of pending items that lost their place
    reorder: dict[int, int]  # item id -> new priority, for pending items whose place moved


def title_key(title: str) -> str:
    """Titles that differ only in case and spacing are the same title."""
    return " ".join(title.casefold().split())


def uniform_key(prediction_id: int) -> float:
    """A prediction's key in [0, 1) for the uniform slice: a hash of its id.

    Example:
        >>> 0.0 <= uniform_key(7) < 1.0 and uniform_key(7) == uniform_key(7)
        True
    """
    digest = hashlib.blake2b(prediction_id.to_bytes(8, "big", signed=True), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def interleave(uncertain: int, uniform: int, uniform_share: float) -> list[bool]:
    """Claim order of ``uncertain`` + ``uniform`` items, True for a uniform one: the i-th of
    a kind sits at (i + 0.5) / its share, so the kinds alternate in proportion.

    Example:
        >>> "".join("U" if u else "." for u in interleave(6, 2, 0.25))
        '..U...U.'
    """
    if not 0 < uniform_share < 1:
        return [False] * uncertain + [True] * uniform
    spots = [((i + 0.5) / (1 - uniform_share), 0) for i in range(uncertain)]
    spots += [((j + 0.5) / uniform_share, 1) for j in range(uniform)]
    return [kind == 1 for _, kind in sorted(spots)]


def fill_queue(new: Sequence[Candidate], queued: Sequence[Queued], budget: Budget) -> Fill:
    """Which of ``new`` (keyed by prediction id) enter the queue, which movable ``queued``
    items they replace, and every pending item's place in the claim order.

    Example:
        >>> b = Budget(capacity=2, uniform=1, topic_cap=1)
        >>> f = fill_queue([Candidate(1, "a", 0.1), Candidate(2, "a", 0.2),
        ...                 Candidate(3, "b", 0.9)], [], b)
        >>> len(f.picks), f.replaced
        (2, [])
    """
    Entry = tuple[float, int, int, Queued | Candidate]  # score, is new, tie-break, item

    def pid(item: Queued | Candidate) -> int:
        return item.prediction_id if isinstance(item, Queued) else item.key

    # The uniform slice: the smallest keys; on a tie the queued item stays (no churn).
    uq = [q for q in queued if q.reason == UNIFORM]
    fixed_u: list[Entry] = [(uniform_key(q.prediction_id), 0, q.item_id, q) for q in uq]
    fixed_u = [e for e in fixed_u if not isinstance(e[3], Queued) or not e[3].movable]
    pool_u: list[Entry] = [(uniform_key(q.prediction_id), 0, q.item_id, q) for q in uq if q.movable]
    pool_u += [(uniform_key(c.key), 1, c.key, c) for c in new]
    pool_u.sort(key=lambda e: e[:3])
    room_u = max(0, budget.uniform - len(fixed_u))
    kept_u = sorted(fixed_u + pool_u[:room_u], key=lambda e: e[:3])
    replaced = [e[3].item_id for e in pool_u[room_u:] if isinstance(e[3], Queued)]

    # The rest: lowest margins, one per title, at most topic_cap per topic.
    others = [q for q in queued if q.reason != UNIFORM]
    fixed = [q for q in others if not q.movable]
    room = max(0, min(budget.capacity - budget.uniform, budget.capacity - len(kept_u)) - len(fixed))
    seen = {title_key(q.title) for q in fixed} | {title_key(e[3].title) for e in kept_u}
    seen.discard("")
    per_topic = Counter(q.topic for q in fixed)
    in_uniform = {pid(e[3]) for e in kept_u}
    pool: list[Entry] = [(q.margin, 0, q.item_id, q) for q in others if q.movable]
    pool += [(c.margin, 1, c.key, c) for c in new if c.key not in in_uniform]
    pool.sort(key=lambda e: e[:3])
    kept: list[Entry] = [(q.margin, 0, q.item_id, q) for q in fixed]
    for entry in pool:
        item = entry[3]
        t = title_key(item.title)
        if (
            len(kept) - len(fixed) < room
            and per_topic[item.topic] < budget.topic_cap
            and t not in seen
        ):
            kept.append(entry)
            per_topic[item.topic] += 1
            if t:
                seen.add(t)
        elif isinstance(item, Queued):
            replaced.append(item.item_id)
    kept.sort(key=lambda e: e[:3])

    # Claim order: held items keep their place; the rest alternate by share.
    share = budget.uniform / budget.capacity if budget.capacity else 0.0
    lines = {
        True: [e[3] for e in kept_u if not (isinstance(e[3], Queued) and e[3].held)],
        False: [e[3] for e in kept if not (isinstance(e[3], Queued) and e[3].held)],
    }
    picks_u: list[Pick] = []
    picks: list[Pick] = []
    reorder: dict[int, int] = {}
    taken = {True: 0, False: 0}
    for position, is_uniform in enumerate(interleave(len(lines[False]), len(lines[True]), share)):
        item = lines[is_uniform][taken[is_uniform]]
        taken[is_uniform] += 1
        if isinstance(item, Candidate):
            reason = UNIFORM if is_uniform else UNCERTAINTY
            (picks_u if is_uniform else picks).append(Pick(item.key, reason, position))
        elif item.priority != position + item.skips * SKIP_PENALTY:
            reorder[item.item_id] = position + item.skips * SKIP_PENALTY
    return Fill(picks_u + picks, replaced, reorder)
