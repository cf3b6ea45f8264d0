"""The data-access modules under pipeline/core/db against a real, freshly migrated Postgres:
filters, ordering, limits and the advisory lock's ownership by connection."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from pipeline.core.db import drift_runs, events, locks, predictions, reviews
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _articles(engine: Engine, ids: list[str], *, enqueued: list[datetime] | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [
                {
                    "id": a,
                    "title": f"title {a}",
                    "body": f"body {a}",
                    "received_at": datetime.now(UTC),
                    "enqueued_at": enqueued[i] if enqueued else None,
                }
                for i, a in enumerate(ids)
            ],
        )


def _prediction(
    engine: Engine,
    article_id: str,
    *,
    version: str = "v1",
    topic: str = "World",
    confidence: float = 0.9,
    at: datetime | None = None,
) -> int:
    at = at or datetime.now(UTC)
    with engine.begin() as conn:
        pid = conn.execute(
            insert(PredictionRow).returning(PredictionRow.id),
            {
                "article_id": article_id,
                "model_version": version,
                "topic": topic,
                "confidence": confidence,
                "margin": 0.1,
                "probabilities": [confidence],
                "latency_ms": 1.0,
                "received_at": at,
                "predicted_at": at,
            },
        ).scalar_one()
    return int(pid)


def _review(
    engine: Engine,
    prediction_id: int,
    article_id: str,
    *,
    status: str = "done",
    label: str | None = None,
    round_: int = 1,
    labelled_at: datetime | None = None,
    reason: str = "uniform",
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ReviewItemRow),
            {
                "prediction_id": prediction_id,
                "article_id": article_id,
                "reason": reason,
                "priority": 1,
                "round": round_,
                "status": status,
                "label": label,
                "labelled_at": labelled_at,
            },
        )


def test_prediction_reads(engine: Engine) -> None:
    now = datetime.now(UTC)
    ids = [f"s-{i}" for i in range(4)] + ["old-0", "other-0"]
    _articles(engine, ids, enqueued=[now - timedelta(seconds=10 * (i + 1)) for i in range(6)])
    # s-0..s-3: recent, v1 (s-3 also served by v2); old-0: v1 three days ago; other-0: v3.
    confs = [0.5, 0.6, 0.7, 0.8]
    topics = ["World", "Sports", "Sports", "Business"]
    for a, c, t in zip(ids[:4], confs, topics, strict=True):
        _prediction(engine, a, confidence=c, topic=t)
    _prediction(engine, "s-3", version="v2", topic="Sports")
    _prediction(engine, "old-0", confidence=0.1, at=now - timedelta(days=3))
    _prediction(engine, "other-0", version="v3")

    latest = predictions.latest_predictions(engine, "v1", limit=3)
    assert latest == [(0.1, "World"), (0.8, "Business"), (0.7, "Sports")]  # newest id first
    assert isinstance(latest[0], predictions.ConfidenceTopic) and latest[0].confidence == 0.1
    recent = predictions.predictions_since(engine, "v1", minutes=60)
    assert sorted(r.confidence for r in recent) == confs  # the 3-day-old row is out
    assert predictions.predictions_since(engine, "v9", minutes=60) == []

    # 6 predictions in the last 5 minutes (not the old one): 6 / 5 per minute.
    assert predictions.throughput_per_min(engine) == pytest.approx(6 / 5)
    assert predictions.serving_versions(engine) == {"v1": 4, "v2": 1, "v3": 1}

    assert predictions.prediction_count(engine, "s") == 5  # rows, not articles
    assert predictions.prediction_count(engine, "old") == 1
    assert predictions.prediction_count(engine, "nothing") == 0
    topics_seen = predictions.topic_counts(engine, "s")
    assert topics_seen == {"Sports": 3, "World": 1, "Business": 1}
    assert next(iter(topics_seen)) == "Sports"  # most frequent first
    assert sorted(predictions.stream_model_versions(engine, "s")) == ["v1", "v2"]

    lat = predictions.stream_latency(engine, "s")
    assert lat.stored == 5
    # Enqueued 10, 20, 30, 40 s before `now` (s-3 served twice); committed (or predicted)
    # at about `now`: p50 30 s, p95 40 s.
    assert lat.p50_s == pytest.approx(30, abs=5) and lat.p95_s == pytest.approx(40, abs=5)
    empty = predictions.stream_latency(engine, "nothing")
    assert empty == predictions.StreamLatency(0, None, None)

    phase = predictions.phase_stats(engine, "s")
    assert phase.stored == 5 and sorted(phase.model_versions) == ["v1", "v2"]
    assert phase.first_at is not None and phase.last_at is not None
    assert phase.p50_s == pytest.approx(lat.p50_s) and phase.p95_s == pytest.approx(lat.p95_s)
    none = predictions.phase_stats(engine, "nothing")
    assert none == predictions.PhaseStats(0, None, None, None, None, [])

    # Several reads on one connection the caller holds.
    with engine.connect() as conn:
        assert predictions.prediction_count(conn, "s") == 5
        assert predictions.serving_versions(conn)["v1"] == 4
        assert not conn.closed
    assert conn.closed


def test_review_reads(engine: Engine) -> None:
    now = datetime.now(UTC)
    ids = [f"r-{i}" for i in range(6)] + ["x-0"]
    _articles(engine, ids)
    pids = [_prediction(engine, a, topic="World") for a in ids[:6]]
    other = _prediction(engine, "x-0", version="v2", topic="World")
    t0 = now - timedelta(hours=1)
    _review(engine, pids[0], "r-0", label="World", labelled_at=t0)  # correct
    _review(engine, pids[1], "r-1", label="Sports", labelled_at=t0)  # wrong
    _review(engine, pids[2], "r-2", label="__none__", labelled_at=t0)  # not counted
    _review(engine, pids[3], "r-3", status="pending")  # not counted, pending
    _review(engine, pids[4], "r-4", label="World", round_=2, labelled_at=t0)  # round 2
    _review(engine, pids[4], "r-4", label="Sports", labelled_at=now)  # round 1, latest label
    _review(engine, pids[5], "r-5", status="pending")
    _review(engine, other, "x-0", label="World", labelled_at=t0)  # another version

    counts = reviews.reviewed_accuracy_counts(engine, "v1")
    assert counts == reviews.ReviewedCounts(correct=1, labelled=3)
    assert reviews.reviewed_accuracy_counts(engine, "v2") == (1, 1)
    assert reviews.reviewed_accuracy_counts(engine, "v9") == (0, 0)

    assert reviews.pending_review_count(engine) == 2
    assert reviews.review_item_count(engine, "r") == 7
    assert reviews.review_item_count(engine, "x") == 1

    got = reviews.reviewed_articles(engine, ["World", "Sports"])
    assert [r.article_id for r in got] == ["r-0", "r-1", "r-4", "x-0"]  # by id, one each
    by_id = {r.article_id: r for r in got}
    assert by_id["r-4"].label == "Sports"  # the latest label of r-4 wins
    assert by_id["r-0"] == reviews.ReviewedArticle("r-0", "title r-0", "body r-0", "World")
    assert [r.article_id for r in reviews.reviewed_articles(engine, ["Sports"])] == [
        "r-1",
        "r-4",
    ]
    assert reviews.reviewed_articles(engine, []) == []

    # what retraining holds out: first-round uniform reviews naming a topic, nothing else
    _articles(engine, ["u-0"])
    _review(
        engine,
        _prediction(engine, "u-0", topic="World"),
        "u-0",
        label="World",
        labelled_at=t0,
        reason="uncertainty",
    )
    everyone = [*ids, "u-0", "missing"]
    assert reviews.uniform_reviewed_ids(engine, article_ids=everyone) == {
        "r-0",
        "r-1",
        "r-4",
        "x-0",
    }
    assert reviews.uniform_reviewed_ids(engine, article_ids=[]) == set()


def test_drift_runs(engine: Engine) -> None:
    now = datetime.now(UTC)
    assert drift_runs.max_drift_run_id(engine) == 0
    assert drift_runs.recent_drift_runs(engine) == []
    ids = []
    for i in range(7):
        ids.append(
            drift_runs.insert_drift_run(
                engine,
                drift_runs.NewDriftRun(
                    started_at=now + timedelta(minutes=i),
                    finished_at=now + timedelta(minutes=i, seconds=5),
                    model_version=f"m{i}",
                    level="ok" if i % 2 else "drift",
                    window_size=100 * i,
                    psi_confidence=0.01 * i if i else None,
                    report_path=f"/r/{i}.html" if i == 6 else None,
                    details={"reason": f"run {i}"},
                ),
            )
        )
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert drift_runs.max_drift_run_id(engine) == ids[-1]

    recent = drift_runs.recent_drift_runs(engine)
    assert [r.id for r in recent] == ids[:1:-1]  # the latest 5, newest first
    assert recent[0].report_path == "/r/6.html" and recent[0].window_size == 600
    assert recent[0].started_at == now + timedelta(minutes=6)
    assert recent[0].psi_confidence == pytest.approx(0.06)
    assert [r.id for r in drift_runs.recent_drift_runs(engine, limit=2)] == ids[:4:-1]
    assert list(dataclasses.asdict(recent[0])) == [
        "id",
        "started_at",
        "level",
        "window_size",
        "psi_confidence",
        "psi_topics",
        "estimated_accuracy",
        "reviewed_accuracy",
        "report_path",
    ]

    after = drift_runs.drift_runs_after(engine, ids[3])
    assert [r.id for r in after] == ids[4:]  # oldest first
    assert [r.model_version for r in after] == ["m4", "m5", "m6"]
    assert [r.level for r in after] == ["drift", "ok", "drift"]
    assert after[0].psi_confidence == pytest.approx(0.04)
    assert drift_runs.drift_runs_after(engine, ids[-1]) == []
    first = drift_runs.drift_runs_after(engine, 0)[0]
    assert first.psi_confidence is None and first.window_size == 0


def test_model_events(engine: Engine) -> None:
    assert events.max_model_event_id(engine) == 0
    ids = [
        events.record_model_event(engine=engine, kind=k, model_name=n, version=v, reason=r)
        for k, n, v, r in [
            ("retrain_started", "a", None, "drift"),
            ("retrain_finished", "a", "2", "promoted"),
            ("retrain_started", "b", None, "drift"),
            ("promoted", "a", "2", "gate passed"),
            ("retrain_started", "a", None, "drift"),
        ]
    ]
    assert events.max_model_event_id(engine) == ids[-1]
    since = datetime.now(UTC) - timedelta(hours=1)
    assert (
        events.count_model_events_since(engine, kind="retrain_started", model_name="a", since=since)
        == 2
    )
    assert (
        events.count_model_events_since(engine, kind="retrain_started", model_name="b", since=since)
        == 1
    )
    assert (
        events.count_model_events_since(
            engine, kind="retrain_finished", model_name="b", since=since
        )
        == 0
    )
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert (
        events.count_model_events_since(engine, kind="retrain_started", model_name="a", since=later)
        == 0
    )

    recent = events.recent_model_events(engine, limit=3)
    assert [e.id for e in recent] == ids[:1:-1]
    assert recent[1].kind == "promoted" and recent[1].version == "2"
    assert recent[1].reason == "gate passed" and recent[1].previous_version is None
    assert len(events.recent_model_events(engine)) == 5

    watched = events.model_events_after(engine, ids[0], model_name="a")
    assert [e.id for e in watched] == [ids[1], ids[3], ids[4]]
    assert [e.kind for e in watched] == ["retrain_finished", "promoted", "retrain_started"]
    assert events.model_events_after(engine, 0, model_name="b")[0].id == ids[2]
    assert events.model_events_after(engine, 0, model_name="a'b") == []


def test_advisory_lock_belongs_to_its_connection(engine: Engine) -> None:
    key = 0x74657374
    with engine.connect() as first, engine.connect() as second:
        assert locks.try_advisory_lock(first, key)
        first.commit()  # a session-level lock outlives the transaction
        assert not locks.try_advisory_lock(second, key)
        second.commit()
        assert not locks.advisory_unlock(second, key)  # not held by this session
        assert locks.advisory_unlock(first, key)
        first.commit()
        assert locks.try_advisory_lock(second, key)
        assert locks.advisory_unlock(second, key)
        second.commit()


def test_recently_received_and_per_topic_review_counts(engine: Engine) -> None:
    """The recent reviewed rows are those received within the hours before the newest of the
    given articles (their own stamps, not the wall clock); per-topic counts are by the
    reviewer's label, uniform first-round reviews of the version only."""
    newest = datetime(2026, 11, 20, 12, tzinfo=UTC)
    stamps = {"rr-old": newest - timedelta(hours=80), "rr-mid": newest - timedelta(hours=70)}
    stamps["rr-new"] = newest
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [{"id": a, "title": a, "body": "b", "received_at": t} for a, t in stamps.items()],
        )
    assert reviews.recently_received(engine, article_ids=list(stamps), hours=72) == {
        "rr-mid",
        "rr-new",
    }
    assert reviews.recently_received(engine, article_ids=["rr-old"], hours=72) == {"rr-old"}
    assert reviews.recently_received(engine, article_ids=list(stamps), hours=0) == set()
    assert reviews.recently_received(engine, article_ids=[], hours=72) == set()

    predicted = {"rr-old": "World", "rr-mid": "Sports", "rr-new": "World"}
    for article, topic in predicted.items():
        pid = _prediction(engine, article, version="rt1", topic=topic, at=stamps[article])
        _review(engine, pid, article, label="World")
    _articles(engine, ["rr-unc"])
    pid = _prediction(engine, "rr-unc", version="rt1", topic="World", at=stamps["rr-new"])
    _review(engine, pid, "rr-unc", label="World", reason="uncertainty")  # not uniform
    assert reviews.uniform_topic_counts(engine, "rt1") == {"World": (2, 3)}
    recent = reviews.uniform_topic_counts(
        engine, "rt1", since=newest - timedelta(hours=75), until=newest
    )
    assert recent == {"World": (1, 2)}
    assert reviews.uniform_topic_counts(engine, "rt-none") == {}
