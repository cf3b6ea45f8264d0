from __future__ import annotations

import random

from pipeline.sampling import UNCERTAINTY, UNIFORM, Candidate, select_for_review


def _cands(n: int) -> list[Candidate]:
    rng = random.Random(1)
    return [Candidate(i, f"t{i % 4}", rng.random()) for i in range(n)]


def test_uniform_share_is_close_to_requested() -> None:
    picks = select_for_review(
        _cands(20_000), uniform_share=0.05, uncertain_share=0.0, topic_cap=0, rng=random.Random(0)
    )
    share = sum(p.reason == UNIFORM for p in picks) / 20_000
    assert 0.045 < share < 0.055


def test_uncertainty_takes_lowest_margins_with_topic_cap() -> None:
    cands = _cands(100)
    picks = select_for_review(
        cands, uniform_share=0.0, uncertain_share=0.1, topic_cap=2, rng=random.Random(0)
    )
    unc = [p for p in picks if p.reason == UNCERTAINTY]
    assert len(unc) == 8  # 4 topics x cap 2 < budget 10
    by_key = {c.key: c for c in cands}
    for topic in {"t0", "t1", "t2", "t3"}:
        chosen = sorted(by_key[p.key].margin for p in unc if by_key[p.key].topic == topic)
        lowest = sorted(c.margin for c in cands if c.topic == topic)[:2]
        assert chosen == lowest


def test_no_item_is_picked_twice() -> None:
    picks = select_for_review(
        _cands(500), uniform_share=0.5, uncertain_share=0.5, topic_cap=100, rng=random.Random(3)
    )
    keys = [p.key for p in picks]
    assert len(keys) == len(set(keys))


def test_small_batches_keep_the_expected_share() -> None:
    rng = random.Random(5)
    picked = 0
    for i in range(4000):  # low traffic: one prediction per batch
        picks = select_for_review(
            [Candidate(i, "t0", 0.5)],
            uniform_share=0.02,
            uncertain_share=0.05,
            topic_cap=3,
            rng=rng,
        )
        picked += len(picks)
    assert 0.055 < picked / 4000 < 0.085  # about 2 % + 5 %, not every item
