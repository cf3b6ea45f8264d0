"""The budgeted review queue's selection logic (pure: no database)."""

from __future__ import annotations

import dataclasses
import random
import statistics

import pytest

from pipeline.sampling import (
    SKIP_PENALTY,
    UNCERTAINTY,
    UNIFORM,
    Budget,
    Candidate,
    Queued,
    fill_queue,
    interleave,
    title_key,
)


class Queue:
    """An in-memory queue driven by :func:`fill_queue`, as the sink drives the real one."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.items: dict[int, Queued] = {}
        self.replaced: list[int] = []

    def offer(self, cands: list[Candidate]) -> None:
        fill = fill_queue(cands, list(self.items.values()), self.budget)
        for i in fill.replaced:
            assert self.items[i].movable
            del self.items[i]
            self.replaced.append(i)
        for i, prio in fill.reorder.items():
            self.items[i] = dataclasses.replace(self.items[i], priority=prio)
        by_key = {c.key: c for c in cands}
        for p in fill.picks:
            c = by_key[p.key]
            self.items[p.key] = Queued(
                p.key, p.key, p.reason, c.topic, c.title, c.margin, p.priority
            )

    def take(self) -> Queued | None:
        """A reviewer labels the next item (lowest priority, then id)."""
        if not self.items:
            return None
        i = min(self.items, key=lambda k: (self.items[k].priority, k))
        return self.items.pop(i)


def _stream(n: int, seed: int = 1, topics: int = 4) -> list[Candidate]:
    rng = random.Random(seed)
    return [Candidate(i, f"t{i % topics}", rng.random(), f"title {i}") for i in range(n)]


def test_budget_per_hour() -> None:
    assert Budget.per_hour(60) == Budget(60, 12, 24)
    assert Budget.per_hour(10, lookahead_hours=0.5, uniform_fraction=0.05) == Budget(5, 1, 2)
    assert Budget.per_hour(0) == Budget(0, 0, 1)
    with pytest.raises(ValueError, match="within capacity"):
        Budget(5, 6, 1)


def test_queue_never_exceeds_budget_and_keeps_its_uniform_slots() -> None:
    budget = Budget(capacity=30, uniform=6, topic_cap=10)
    q = Queue(budget)
    stream = _stream(5000)
    sizes = []
    for start in range(0, len(stream), 25):
        q.offer(stream[start : start + 25])
        sizes.append(len(q.items))
        assert len(q.items) <= budget.capacity
        assert sum(i.reason == UNIFORM for i in q.items.values()) <= budget.uniform
        if start % 100 == 0:
            q.take()
    assert max(sizes) == budget.capacity  # it does fill up


def test_uncertainty_slice_holds_lowest_margins_per_topic_cap_and_distinct_titles() -> None:
    budget = Budget(capacity=6, uniform=0, topic_cap=2)
    cands = [
        Candidate(1, "a", 0.01, "Same Title"),
        Candidate(2, "a", 0.02, "same   title"),  # the same title: left out
        Candidate(3, "a", 0.03, "a3"),
        Candidate(4, "a", 0.04, "a4"),  # topic a is full (cap 2)
        Candidate(5, "b", 0.50, "b5"),
        Candidate(6, "c", 0.60, "c6"),
        Candidate(7, "d", 0.70, "d7"),
        Candidate(8, "e", 0.80, "e8"),
        Candidate(9, "f", 0.90, "f9"),  # no room left
    ]
    fill = fill_queue(cands, [], budget)
    assert [p.key for p in fill.picks] == [1, 3, 5, 6, 7, 8]
    assert all(p.reason == UNCERTAINTY for p in fill.picks)
    assert title_key(" Same\tTITLE ") == "same title"


def test_better_items_replace_movable_ones_only() -> None:
    budget = Budget(capacity=3, uniform=0, topic_cap=3)
    queued = [
        Queued(100, 50, UNCERTAINTY, "a", "q100", 0.5, 0),
        Queued(101, 51, UNCERTAINTY, "a", "q101", 0.9, 1, held=True),
        Queued(102, 52, UNCERTAINTY, "a", "q102", 0.2, 2),
    ]
    fill = fill_queue(
        [Candidate(1, "a", 0.1, "n1"), Candidate(2, "a", 0.3, "n2")],
        queued,
        budget,
    )
    assert [p.key for p in fill.picks] == [1]
    assert fill.replaced == [100]  # 102 (0.2) stays, 101 is held, the new 0.1 takes 100's place


def test_uniform_slice_ignores_content() -> None:
    """Uniform picks have the stream's margins and topics, not the low margins."""
    q = Queue(Budget(capacity=20, uniform=5, topic_cap=20))
    stream = _stream(20_000, seed=2)
    reviewed: list[Candidate] = []
    by_key = {c.key: c for c in stream}
    for start in range(0, len(stream), 20):
        q.offer(stream[start : start + 20])
        for i in [k for k, it in q.items.items() if it.reason == UNIFORM][:1]:
            del q.items[i]
            reviewed.append(by_key[i])
    assert len(reviewed) > 900
    assert statistics.mean(c.margin for c in reviewed) == pytest.approx(0.5, abs=0.03)
    share_t0 = sum(c.topic == "t0" for c in reviewed) / len(reviewed)
    assert share_t0 == pytest.approx(0.25, abs=0.04)


def test_a_freed_uniform_slot_samples_the_whole_interval_not_the_first_arrival() -> None:
    """One uniform slot, reviewed every 100 arrivals: the reviewed item is equally likely to
    be any of the 100 that arrived since the last review (first come would always give the
    first)."""
    q = Queue(Budget(capacity=1, uniform=1, topic_cap=1))
    stream = _stream(100 * 400)
    offsets = []
    for start in range(0, len(stream), 100):
        for c in stream[start : start + 100]:
            q.offer([c])
        taken = q.take()
        assert taken is not None
        offsets.append(taken.prediction_id - start)
    assert statistics.mean(offsets) == pytest.approx(49.5, abs=5)
    assert sum(o < 10 for o in offsets) / len(offsets) < 0.2


def test_claim_order_interleaves_the_slices_by_share() -> None:
    """Reviewers working through a full queue label uniform items at the uniform share,
    even though every uncertainty item is more urgent by margin."""
    budget = Budget(capacity=50, uniform=10, topic_cap=50)
    q = Queue(budget)
    stream = _stream(20_000, seed=4)
    reasons: list[str] = []
    for start in range(0, len(stream), 50):
        q.offer(stream[start : start + 50])
        for _ in range(5):
            item = q.take()
            assert item is not None
            reasons.append(item.reason)
    assert reasons.count(UNIFORM) / len(reasons) == pytest.approx(0.2, abs=0.03)


def test_interleave_and_skips() -> None:
    order = interleave(8, 2, 0.2)
    assert order.count(True) == 2 and order.index(True) == 2
    assert interleave(2, 1, 0.0) == [False, False, True]
    budget = Budget(capacity=3, uniform=0, topic_cap=3)
    skipped = Queued(9, 9, UNCERTAINTY, "a", "s", 0.0, SKIP_PENALTY + 0, skips=1)
    fill = fill_queue([Candidate(1, "a", 0.5, "n")], [skipped], budget)
    assert fill.reorder == {} and fill.picks[0].priority == 1  # the skipped one stays behind
