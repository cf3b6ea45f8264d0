"""pipeline.core.db.topics and pipeline.core.db.review_interchange against a real, freshly
migrated Postgres: discovery's input, candidates, topics, onboarding reviews and the Label
Studio export/import rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select, text

from pipeline.core.db import review_interchange, topics
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import (
    ArticleRow,
    ModelLabelsRow,
    PredictionRow,
    ReviewItemRow,
    TopicRow,
)
from pipeline.core.records import NONE_LABEL
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _articles(engine: Engine, ids: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [
                {
                    "id": a,
                    "title": f"title {a}",
                    "body": f"body {a}",
                    "received_at": datetime.now(UTC),
                }
                for a in ids
            ],
        )


def _prediction(
    engine: Engine, article_id: str, *, version: str = "v1", topic: str = "World", conf: float = 0.9
) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(PredictionRow).returning(PredictionRow.id),
                {
                    "article_id": article_id,
                    "model_version": version,
                    "topic": topic,
                    "confidence": conf,
                    "margin": 0.1,
                    "probabilities": [conf],
                    "latency_ms": 1.0,
                    "received_at": now,
                    "predicted_at": now,
                },
            ).scalar_one()
        )


def _review(
    engine: Engine,
    prediction_id: int,
    article_id: str,
    *,
    status: str = "done",
    label: str | None = None,
    round_: int = 1,
    priority: int = 1,
    labelled_at: datetime | None = None,
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(ReviewItemRow).returning(ReviewItemRow.id),
                {
                    "prediction_id": prediction_id,
                    "article_id": article_id,
                    "reason": "uniform",
                    "priority": priority,
                    "round": round_,
                    "status": status,
                    "label": label,
                    "labelled_at": labelled_at,
                },
            ).scalar_one()
        )


def _candidate(rank: int, members: list[str]) -> topics.NewCandidate:
    return topics.NewCandidate(
        rank=rank,
        size=len(members),
        separation=0.5 + rank / 10,
        cohesion=0.7,
        nearest_topic="World",
        none_of_these=1,
        terms=["church", "faith"],
        examples=[f"title {m}" for m in members],
        members=members,
    )


def test_discovery_pool_reads(engine: Engine) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    _articles(engine, ["a-2", "a-1", "a-3", "b-1", "b-2"])
    p = {a: _prediction(engine, a, conf=c) for a, c in [("a-1", 0.3), ("a-2", 0.2), ("a-3", 0.95)]}
    _prediction(engine, "b-1", version="v2", topic="Sports", conf=0.99)
    _prediction(engine, "b-2", version="v2", topic="Sports", conf=0.97)
    # a-2 and a-1 marked "none of these" (a-1 twice, then relabelled); a-3 only pending.
    _review(engine, p["a-2"], "a-2", label=NONE_LABEL, labelled_at=t0)
    _review(engine, p["a-1"], "a-1", label=NONE_LABEL, labelled_at=t0)
    _review(engine, p["a-1"], "a-1", label=NONE_LABEL, round_=2, labelled_at=t0)
    _review(engine, p["a-1"], "a-1", label="World", round_=3, labelled_at=t0 + timedelta(1))
    _review(engine, p["a-3"], "a-3", status="pending")
    _review(engine, p["a-3"], "a-3", status="pending", label=NONE_LABEL, round_=2)

    marked = topics.select_none_of_these(engine)
    assert marked == [  # once each, by id; a pending item counts for nothing
        topics.PoolArticle("a-1", "title a-1", "body a-1"),
        topics.PoolArticle("a-2", "title a-2", "body a-2"),
    ]

    low = topics.select_least_confident(engine, model_version="v1", limit=2)
    assert [a.article_id for a in low] == ["a-2", "a-1"]  # least confident first
    every = topics.select_least_confident(engine, model_version=None, limit=10)
    assert [a.article_id for a in every] == ["a-2", "a-1", "a-3", "b-2", "b-1"]
    assert topics.select_least_confident(engine, model_version="v9", limit=10) == []

    confident = topics.select_confident_texts(
        engine, model_version=None, per_topic=1, min_confidence=0.9
    )
    assert confident == [
        topics.TopicText("Sports", "title b-1 body b-1"),  # the most confident of its topic
        topics.TopicText("World", "title a-3 body a-3"),
    ]
    v1 = topics.select_confident_texts(engine, model_version="v1", per_topic=5, min_confidence=0.1)
    assert [t.text for t in v1] == [
        "title a-3 body a-3",
        "title a-1 body a-1",
        "title a-2 body a-2",
    ]


def test_candidates_are_stored_superseded_and_decided(engine: Engine) -> None:
    with engine.begin() as conn:
        assert topics.supersede_open_candidates(conn) == 0
        first = [
            topics.insert_candidate(conn, candidate=_candidate(r, [f"m-{r}"]), model_version="v1")
            for r in (1, 2)
        ]
    with engine.begin() as conn:
        assert topics.supersede_open_candidates(conn) == 2
        newer = topics.insert_candidate(
            conn, candidate=_candidate(1, ["x-1", "x-2"]), model_version=None
        )

    open_now = topics.select_candidates(engine, status="open")
    assert [c.id for c in open_now] == [newer]
    got = open_now[0]
    assert (got.rank, got.size, got.status, got.model_version) == (1, 2, "open", None)
    assert got.members == ["x-1", "x-2"] and got.terms == ["church", "faith"]
    assert got.examples == ["title x-1", "title x-2"] and got.name is None
    assert got.to_json()["members"] == ["x-1", "x-2"]
    superseded = topics.select_candidates(engine, status="superseded")
    assert [c.id for c in superseded] == first  # by rank within one discovery
    assert len(topics.select_candidates(engine, status=None)) == 3
    assert len(topics.select_candidates(engine, status=None, limit=2)) == 2

    with engine.begin() as conn:
        locked = topics.lock_candidate(conn, candidate_id=newer)
        assert locked == got
        assert topics.lock_candidate(conn, candidate_id=10**9) is None
        topics.accept_candidate(conn, candidate_id=newer, name="Religion", admin="ann")
        topics.dismiss_candidate(conn, candidate_id=first[0], admin="bob")
    assert topics.select_candidate_name(engine, candidate_id=newer) == "Religion"
    assert topics.select_candidate_name(engine, candidate_id=first[0]) is None
    assert topics.select_candidate_name(engine, candidate_id=10**9) is None
    assert [c.id for c in topics.select_candidates(engine, status="accepted")] == [newer]
    assert [c.id for c in topics.select_candidates(engine, status="dismissed")] == [first[0]]
    with engine.connect() as conn:
        decided = conn.execute(
            text("SELECT decided_by FROM topic_candidates WHERE id = ANY(:i) ORDER BY id"),
            {"i": [first[0], newer]},
        ).scalars()
        assert list(decided) == ["bob", "ann"]


def test_topic_lifecycle(engine: Engine) -> None:
    with engine.begin() as conn:
        cid = topics.insert_candidate(conn, candidate=_candidate(1, ["m-1"]), model_version="v1")
        conn.execute(
            insert(ModelLabelsRow), [{"model_version": "v1", "labels": ["World", "Sports"]}]
        )
        conn.execute(insert(ModelLabelsRow), [{"model_version": "v2", "labels": ["World", "Tech"]}])
    assert topics.select_known_labels(engine) == ["Sports", "Tech", "World"]

    # One transaction each: created_at is the transaction's now().
    with engine.begin() as conn:
        topics.insert_onboarding_topic(conn, name="Religion", candidate_id=cid, admin="ann")
    with engine.begin() as conn:
        topics.insert_onboarding_topic(conn, name="Crypto", candidate_id=cid, admin="ann")
    with engine.begin() as conn:
        topics.request_topic_change(conn, name="Sports", merge_into=None, admin="bob")
    with engine.begin() as conn:
        topics.request_topic_change(conn, name="Tech", merge_into="World", admin="bob")
    assert topics.select_topic_names(engine, statuses=("onboarding",)) == ["Religion", "Crypto"]
    assert topics.select_topic_names(engine, statuses=("removing", "merging")) == [
        "Sports",
        "Tech",
    ]
    assert topics.select_pending_changes(engine) == [
        topics.PendingChange("Sports", None),
        topics.PendingChange("Tech", "World"),
    ]
    with engine.begin() as conn:  # asking again replaces the request
        topics.request_topic_change(conn, name="Sports", merge_into="World", admin="cy")
        assert topics.lock_topic_status(conn, name="Sports") == "merging"
        assert topics.lock_topic_status(conn, name="Nothing") is None

    with engine.begin() as conn:
        assert topics.activate_topics(conn, names=["Religion", "Sports"], version="v3") == 1
        assert topics.retire_topics(conn, names=["Sports", "Tech", "Religion"], version="v3") == 2
        topics.cancel_topic(conn, name="Crypto", admin="dee")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                TopicRow.name, TopicRow.status, TopicRow.retrain_version, TopicRow.created_by
            ).order_by(TopicRow.name)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Crypto", "cancelled", None, "dee"),
        ("Religion", "active", "v3", "ann"),
        ("Sports", "merged", "v3", "cy"),
        ("Tech", "merged", "v3", "bob"),
    ]
    assert topics.select_pending_changes(engine) == []

    summaries = topics.select_topics(engine)
    assert [s.name for s in summaries] == ["Tech", "Sports", "Crypto", "Religion"]  # newest first
    assert all(s.pending == 0 for s in summaries)
    assert (summaries[-1].status, summaries[-1].created_by) == ("active", "ann")
    assert len(topics.select_topics(engine, limit=1)) == 1


def test_onboarding_reviews(engine: Engine) -> None:
    _articles(engine, ["m-1", "m-2", "other"])
    _prediction(engine, "m-1", version="v1")
    latest = _prediction(engine, "m-1", version="v2")
    only = _prediction(engine, "m-2", version="v1")
    _prediction(engine, "other", version="v1")
    with engine.begin() as conn:
        cid = topics.insert_candidate(conn, candidate=_candidate(1, ["m-1"]), model_version="v1")
        topics.insert_onboarding_topic(conn, name="Religion", candidate_id=cid, admin="ann")
        queued = topics.queue_onboarding_reviews(
            conn, members=["m-1", "m-2", "gone"], suggested_label="Religion", review_round=10
        )
        assert queued == 2
        again = topics.queue_onboarding_reviews(
            conn, members=["m-1"], suggested_label="Religion", review_round=10
        )
        assert again == 0  # the same prediction and round is queued once
    with engine.connect() as conn:
        items = conn.execute(
            select(
                ReviewItemRow.prediction_id,
                ReviewItemRow.reason,
                ReviewItemRow.priority,
                ReviewItemRow.round,
                ReviewItemRow.status,
                ReviewItemRow.suggested_label,
            ).order_by(ReviewItemRow.article_id)
        ).all()
    assert [tuple(r) for r in items] == [
        (latest, "onboarding", -1, 10, "pending", "Religion"),  # the latest prediction
        (only, "onboarding", -1, 10, "pending", "Religion"),
    ]
    assert [s.pending for s in topics.select_topics(engine)] == [2]

    # Label m-1 "Religion" (the latest review counts), then withdraw the rest.
    t0 = datetime.now(UTC)
    _review(engine, only, "m-2", label="Religion", round_=1, labelled_at=t0)
    _review(engine, only, "m-2", label="World", round_=2, labelled_at=t0 + timedelta(1))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE review_items SET status = 'done', label = 'Religion', labelled_at = now() "
                "WHERE prediction_id = :p AND round = 10"
            ),
            {"p": latest},
        )
    assert topics.count_latest_labels(engine, label="Religion") == 1  # m-2 is World now
    assert topics.count_latest_labels(engine, label="World") == 1
    with engine.begin() as conn:
        assert topics.withdraw_onboarding_reviews(conn, suggested_label="Religion") == 1
        assert topics.withdraw_onboarding_reviews(conn, suggested_label="Religion") == 0
    assert [s.pending for s in topics.select_topics(engine)] == [0]


def test_topic_changes_are_serialised(engine: Engine) -> None:
    with engine.connect() as holder, engine.connect() as other:
        with holder.begin():
            topics.lock_topic_changes(holder)
            took = other.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": topics.TOPICS_LOCK}
            ).scalar_one()
            assert took is False
            other.rollback()
        # The transaction ended: the lock is free again.
        with other.begin():
            topics.lock_topic_changes(other)


def test_review_interchange(engine: Engine) -> None:
    _articles(engine, ["r-1", "r-2", "r-3"])
    p1 = _prediction(engine, "r-1", version="v1", topic="Sports", conf=0.6)
    p2 = _prediction(engine, "r-2", version="v9", topic="World", conf=0.7)
    p3 = _prediction(engine, "r-3", version="v1")
    with engine.begin() as conn:
        conn.execute(
            insert(ModelLabelsRow), [{"model_version": "v1", "labels": ["World", "Sports"]}]
        )
    late = _review(engine, p1, "r-1", status="pending", priority=5)
    early = _review(engine, p2, "r-2", status="pending", priority=0)
    done = _review(engine, p3, "r-3", label="World", labelled_at=datetime.now(UTC))

    pending = review_interchange.select_items_for_export(engine, status="pending", limit=10)
    assert [i.review_item_id for i in pending] == [early, late]  # priority first
    assert pending[1] == review_interchange.ExportedItem(
        review_item_id=late,
        round=1,
        reason="uniform",
        article_id="r-1",
        title="title r-1",
        body="body r-1",
        model_version="v1",
        topic="Sports",
        confidence=0.6,
    )
    assert len(review_interchange.select_items_for_export(engine, status="pending", limit=1)) == 1
    exported_done = review_interchange.select_items_for_export(engine, status="done", limit=10)
    assert [i.review_item_id for i in exported_done] == [done]

    with engine.begin() as conn:
        known = review_interchange.lock_item_for_label(conn, review_item_id=late)
        assert known == review_interchange.LockedItem("pending", ["World", "Sports"])
        unknown = review_interchange.lock_item_for_label(conn, review_item_id=early)
        assert unknown == review_interchange.LockedItem("pending", ["World"])  # its pick only
        assert review_interchange.lock_item_for_label(conn, review_item_id=10**9) is None
        review_interchange.record_external_label(
            conn, review_item_id=late, label="World", reviewer="labelstudio:ann"
        )
    with engine.connect() as conn:
        row = conn.execute(
            select(ReviewItemRow.status, ReviewItemRow.label, ReviewItemRow.reviewer).where(
                ReviewItemRow.id == late
            )
        ).one()
        assert tuple(row) == ("done", "World", "labelstudio:ann")
        locked = review_interchange.lock_item_for_label(conn, review_item_id=late)
        assert locked is not None and locked.status == "done"
