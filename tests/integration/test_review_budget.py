"""The budgeted review queue against real Postgres, through the worker's store path
(:func:`pipeline.sink.save_batch`): the budget holds (one writer and two concurrent ones),
stale items expire, and the uniform slice's reviewed accuracy covers the true accuracy."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from monitoring.drift import reviewed_accuracy
from monitoring.psi import wilson_interval
from monitoring.web import review_queue
from pipeline.core.datasets import AG_LABELS, LabelledText, load_ag_news
from pipeline.core.db import reviews
from pipeline.core.db.engine import make_engine
from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.settings import Settings
from pipeline.sampling import Budget
from pipeline.sink import ReviewPolicy, save_batch

pytestmark = pytest.mark.integration
VERSION = "budget-1"
REVIEWER = "simulated-reviewer"


@pytest.fixture
def engine(db: Settings):  # type: ignore[no-untyped-def]
    eng = make_engine(db, pool_size=10)
    yield eng
    eng.dispose()


def _predict(row: LabelledText, rng: random.Random, tag: str) -> tuple[CleanArticle, Prediction]:
    """A simulated model: right with probability 0.3 + 0.65 * margin, so low margins are
    mostly wrong (true accuracy about 0.62, about 0.3 among the lowest margins)."""
    now = datetime.now(UTC)
    margin = rng.random()
    right = rng.random() < 0.3 + 0.65 * margin
    topic = row.label if right else rng.choice([t for t in AG_LABELS if t != row.label])
    top = (1 + margin) / 2
    probs = tuple(top if t == topic else (1 - top) / 3 for t in AG_LABELS)
    art = CleanArticle(
        f"{tag}-{row.id}", row.title, row.body, row.text, None, None, None, None, now
    )
    return art, Prediction(art.id, VERSION, topic, top, margin, probs, 2.0, now, now)


def _pending(engine: Engine) -> int:
    return reviews.pending_review_count(engine)


def _label_next(engine: Engine, truth: dict[str, str]) -> bool:
    task = review_queue.claim_next(engine, REVIEWER, claim_minutes=10)
    if task is None:
        return False
    review_queue.submit_label(
        engine, REVIEWER, task.item_id, truth[task.article_id], simulated=True
    )
    return True


def test_budget_holds_and_uniform_accuracy_covers_the_truth(engine: Engine, data_dir: Path) -> None:
    rows = load_ag_news(data_dir, "test")[:5000]
    rng = random.Random(7)
    pairs = [_predict(r, rng, "s") for r in rows]
    truth = {a.id: r.label for (a, _), r in zip(pairs, rows, strict=True)}
    policy = ReviewPolicy(budget=Budget(capacity=40, uniform=10, topic_cap=15))
    most = 0
    for start in range(0, len(pairs), 50):
        save_batch(
            engine=engine,
            pairs=pairs[start : start + 50],
            policy=policy,
            rng=rng,
            model_labels={VERSION: AG_LABELS},
        )
        most = max(most, _pending(engine))
        assert most <= 40
        for _ in range(8):  # reviewers label 8 items per 50 arrivals
            _label_next(engine, truth)
    assert most == 40  # the queue did fill up to the budget
    true_acc = sum(p.topic == truth[a.id] for a, p in pairs) / len(pairs)
    rev = reviewed_accuracy(engine, VERSION)
    assert rev.n >= 120 and rev.interval is not None and rev.accuracy is not None
    assert 0.15 <= rev.n / 800 <= 0.3  # the uniform share of the reviews
    low, high = rev.interval
    assert low <= true_acc <= high, (true_acc, rev)
    # Mixing in the uncertainty items (the old figure) lands far from the truth.
    mixed = reviews.reviewed_accuracy_counts(engine, VERSION)
    m_low, m_high = wilson_interval(mixed.correct, mixed.labelled)
    assert not m_low <= true_acc <= m_high, (true_acc, mixed)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM review_items GROUP BY status")).all()
        )
        twice = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT lower(a.title) FROM review_items r "
                "JOIN articles a ON a.id = r.article_id WHERE r.status = 'pending' "
                "GROUP BY 1 HAVING count(*) > 1) d"
            )
        ).scalar_one()
    assert statuses["done"] == 800 and statuses.get("replaced", 0) > 0
    assert twice == 0


def test_budget_holds_across_two_concurrent_writers(engine: Engine, data_dir: Path) -> None:
    rows = load_ag_news(data_dir, "test")[:5000]
    rng = random.Random(11)
    pairs = [_predict(r, rng, "c") for r in rows]
    truth = {a.id: r.label for (a, _), r in zip(pairs, rows, strict=True)}
    cap = 20
    policy = ReviewPolicy(budget=Budget(capacity=cap, uniform=4, topic_cap=8))
    save_batch(
        engine=engine, pairs=pairs[:1], policy=policy, rng=rng, model_labels={VERSION: AG_LABELS}
    )
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def writer(part: list[tuple[CleanArticle, Prediction]], seed: int) -> None:
        own = random.Random(seed)
        try:
            for start in range(0, len(part), 25):
                save_batch(engine=engine, pairs=part[start : start + 25], policy=policy, rng=own)
        except BaseException as exc:
            errors.append(exc)

    def watcher() -> None:
        while not done.is_set():
            seen.append(_pending(engine))

    def reviewer() -> None:
        try:
            while not done.is_set():
                if not _label_next(engine, truth):
                    done.wait(0.01)
        except BaseException as exc:
            errors.append(exc)

    writers = [
        threading.Thread(target=writer, args=(pairs[1:2500], 1)),
        threading.Thread(target=writer, args=(pairs[2500:], 2)),
    ]
    helpers = [threading.Thread(target=watcher), threading.Thread(target=reviewer)]
    for t in writers + helpers:
        t.start()
    for t in writers:
        t.join(300)
    done.set()
    for t in helpers:
        t.join(30)
    assert not errors, errors
    assert len(seen) > 50 and max(seen) <= cap, max(seen)
    assert max(seen) == cap  # it was full while both wrote
    assert _pending(engine) <= cap


def test_stale_items_expire_at_the_next_fill(engine: Engine, data_dir: Path) -> None:
    rows = load_ag_news(data_dir, "test")[:60]
    rng = random.Random(3)
    pairs = [_predict(r, rng, "e") for r in rows]
    policy = ReviewPolicy(budget=Budget(capacity=10, uniform=2, topic_cap=10), expire_hours=24)
    save_batch(
        engine=engine, pairs=pairs[:30], policy=policy, rng=rng, model_labels={VERSION: AG_LABELS}
    )
    assert _pending(engine) == 10
    held = review_queue.claim_next(engine, "ann", claim_minutes=10)
    assert held is not None
    with engine.begin() as conn:
        conn.execute(text("UPDATE review_items SET created_at = now() - interval '25 hours'"))
        conn.execute(
            text(
                "UPDATE review_items SET created_at = now() - interval '23 hours' "
                "WHERE id = (SELECT max(id) FROM review_items WHERE id <> :i)"
            ),
            {"i": held.item_id},
        )
    save_batch(engine=engine, pairs=pairs[30:], policy=policy, rng=rng)
    with engine.connect() as conn:
        status = dict(conn.execute(text("SELECT id, status FROM review_items")).all())
    assert status[held.item_id] == "pending"  # a reviewer is looking at it
    assert sum(s == "expired" for s in status.values()) == 8  # 10 minus held minus young
    assert _pending(engine) <= 10
    # The held item is still labelled normally.
    review_queue.submit_label(engine, "ann", held.item_id, "World")


def test_onboarding_reviews_are_outside_the_budget(engine: Engine, data_dir: Path) -> None:
    """An admin's onboarding request keeps its items first and unexpired, whatever the fills
    do; cancelling the topic withdraws them."""
    from monitoring.topics import onboarding
    from monitoring.topics.discovery import Candidate

    rows = load_ag_news(data_dir, "test")[:80]
    rng = random.Random(5)
    pairs = [_predict(r, rng, "o") for r in rows]
    policy = ReviewPolicy(budget=Budget(capacity=6, uniform=2, topic_cap=6), expire_hours=24)
    save_batch(
        engine=engine, pairs=pairs[:20], policy=policy, rng=rng, model_labels={VERSION: AG_LABELS}
    )
    members = [a.id for a, _ in pairs[20:30]]
    save_batch(engine=engine, pairs=pairs[20:30], policy=policy, rng=rng)
    cand = Candidate(members, len(members), 0.9, "World", 0.5, 0, ["x"], ["t"])
    cid = onboarding.save_discovery(engine, [cand], model_version=VERSION)[0]
    assert onboarding.accept(engine, cid, "Crypto", admin="a", known_labels=AG_LABELS) == 10
    with engine.begin() as conn:
        conn.execute(text("UPDATE review_items SET created_at = now() - interval '25 hours'"))
    save_batch(engine=engine, pairs=pairs[30:], policy=policy, rng=rng)  # expires, renumbers
    with engine.connect() as conn:
        onboard = conn.execute(
            text("SELECT status, priority FROM review_items WHERE reason = 'onboarding'")
        ).all()
    assert len(onboard) == 10 and all(s == "pending" and p == -1 for s, p in onboard), onboard
    first = review_queue.claim_next(engine, REVIEWER, claim_minutes=10)
    assert first is not None and first.suggested == "Crypto" and "Crypto" in first.keyed
    assert onboarding.cancel(engine, "Crypto", admin="a") == 10  # the held one included
    with pytest.raises(onboarding.TopicError, match="not a topic being onboarded"):
        onboarding.cancel(engine, "Crypto", admin="a")
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM review_items "
                    "WHERE reason = 'onboarding' AND status = 'pending'"
                )
            ).scalar_one()
            == 0
        )
