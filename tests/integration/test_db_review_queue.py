"""The review queue's, the sink's and the on-call pages' data access under
``pipeline.core.db`` (``review_queue``, ``reviews``, ``articles``, ``predictions``,
``drift_runs``, ``events``) against a real, freshly migrated Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, text

from monitoring.web.seed import DEFAULT_LABELS, seed_review_items
from pipeline.core.db import articles, drift_runs, events, predictions, review_queue, reviews
from pipeline.core.db.engine import make_engine
from pipeline.core.errors import RegistryError
from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _article(article_id: str, title: str = "t", *, offset: int = -1) -> CleanArticle:
    return CleanArticle(
        id=article_id,
        title=title,
        body="b",
        text=f"{title} b",
        source=None,
        url=None,
        published_at=None,
        language=None,
        received_at=NOW,
        partition=offset,
        offset=offset,
        topic="articles" if offset >= 0 else None,
    )


def _prediction(article_id: str, version: str = "v1") -> Prediction:
    return Prediction(article_id, version, "World", 0.9, 0.5, (0.9, 0.1), 2.0, NOW, NOW)


def _label(conn: Connection, item_id: int, reviewer: str) -> review_queue.LabelledItem | None:
    return review_queue.label_held_item(
        conn, item_id=item_id, reviewer=reviewer, label="World", note=None, simulated=False
    )


def test_claim_label_second_review_and_skip(engine: Engine) -> None:
    seed_review_items(engine, 4, prefix="q")
    with engine.begin() as conn:
        assert review_queue.select_held_item(conn, reviewer="ann", claim_s=60) is None
        first = review_queue.claim_free_item(conn, reviewer="ann", claim_s=60)
        assert first is not None
        assert review_queue.select_held_item(conn, reviewer="ann", claim_s=60) == first
        other = review_queue.claim_free_item(conn, reviewer="bob", claim_s=60)
        assert other not in (None, first)
        assert (
            review_queue.claim_free_item(conn, reviewer="cy", claim_s=60, article_prefix="x")
            is None
        )

    item = review_queue.select_review_item(engine, item_id=first)
    assert item.item_id == first and item.round == 1 and item.article_id.startswith("q-")
    assert item.labels == list(DEFAULT_LABELS) and len(item.probabilities) == len(item.labels)
    labels = review_queue.select_item_labels(engine, item_id=first)
    assert labels == review_queue.ItemLabels(list(DEFAULT_LABELS), item.topic)
    assert review_queue.select_item_labels(engine, item_id=10**9) is None

    with engine.begin() as conn:
        assert _label(conn, first, "bob") is None
        done = _label(conn, first, "ann")
        assert done is not None and done.round == 1 and done.article_id == item.article_id
        review_queue.queue_second_review(conn, first=done, exclude_reviewer="ann")
        review_queue.queue_second_review(conn, first=done, exclude_reviewer="ann")  # once
        assert (
            review_queue.release_held_item(conn, item_id=other, reviewer="ann", penalty=7) is False
        )
        assert review_queue.release_held_item(conn, item_id=other, reviewer="bob", penalty=7)
        skips = conn.execute(text("SELECT skips FROM review_items WHERE id = :i"), {"i": other})
        assert skips.scalar_one() == 1
    assert reviews.count_reviews_by_status(engine) == {"pending": 4, "done": 1}

    with engine.begin() as conn:  # round 2 goes to anyone but ann
        second = conn.execute(text("SELECT id FROM review_items WHERE round = 2")).scalar_one()
        conn.execute(text("UPDATE review_items SET priority = -1 WHERE id = :i"), {"i": second})
        assert review_queue.claim_free_item(conn, reviewer="ann", claim_s=60) != second
        assert review_queue.claim_free_item(conn, reviewer="bob", claim_s=60) == second
        _label(conn, second, "bob")
    assert review_queue.select_agreement(engine) == review_queue.Agreement(1, 1)
    activity = review_queue.select_reviewer_activity(engine, reviewer="ann")
    assert (activity.labelled_today, activity.labelled_last_hour, activity.gaps_s) == (1, 1, [])
    assert predictions.select_latest_model_labels(engine) == list(DEFAULT_LABELS)


def test_budgeted_fill_reads_replaces_renumbers_and_queues(engine: Engine) -> None:
    seed_review_items(engine, 3, prefix="f")
    with engine.begin() as conn:
        reviews.lock_review_queue(conn)
        queued = reviews.select_budgeted_pending(conn, claim_s=60)
        assert len(queued) == 3 and not any(q.held for q in queued)
        ids = sorted(q.item_id for q in queued)
        review_queue.claim_free_item(conn, reviewer="ann", claim_s=60)
        held = review_queue.select_held_item(conn, reviewer="ann", claim_s=60)
        assert [q.held for q in reviews.select_budgeted_pending(conn, claim_s=60)].count(True) == 1
        # the held item is neither replaced nor renumbered
        assert reviews.replace_review_items(conn, item_ids=ids, claim_s=60) == 2
        reviews.renumber_review_items(conn, priorities={i: 5 for i in ids}, claim_s=60)
        prio = conn.execute(
            text("SELECT priority FROM review_items WHERE id = :i"), {"i": held}
        ).scalar_one()
        assert prio != 5
        free = next(q for q in queued if q.item_id != held)
        reviews.queue_review_items(
            conn,
            items=[reviews.NewReviewItem(free.prediction_id, "f-1", "uniform", 3)],
        )  # that prediction has a round-1 item (replaced): nothing new
    assert reviews.count_reviews_by_status(engine) == {"pending": 1, "replaced": 2}


def test_articles_upsert_texts_deliveries_and_conflicts(engine: Engine) -> None:
    with engine.begin() as conn:
        first = articles.upsert_articles(
            conn, articles=[_article("a1", offset=3), _article("a2")], deliveries=[2, 1]
        )
        assert first == {"a1", "a2"}
        again = articles.upsert_articles(
            conn, articles=[_article("a1"), _article("a2", "other")], deliveries=[1, 1]
        )
        assert again == {"a1"}  # a2 is stored with another title
        assert articles.select_article_texts(conn, ids=["a2", "zz"]) == {
            "a2": articles.ArticleText("t", "b")
        }
        articles.add_deliveries(conn, counts={"a2": 4})
        articles.insert_conflicts(conn, articles=[_article("a2", "other", offset=9)])
        rows = conn.execute(text("SELECT id, deliveries, kafka_offset FROM articles ORDER BY id"))
        assert rows.all() == [("a1", 3, 3), ("a2", 5, None)]
        conflict = conn.execute(
            text("SELECT article_id, title, kafka_offset FROM article_conflicts")
        )
        assert conflict.all() == [("a2", "other", 9)]

        new = predictions.insert_new_predictions(
            conn, predictions=[_prediction("a1"), _prediction("a2")]
        )
        assert set(new) == {("a1", "v1"), ("a2", "v1")}
        repeat = predictions.insert_new_predictions(
            conn, predictions=[_prediction("a1"), _prediction("a1", "v2")]
        )
        assert list(repeat) == [("a1", "v2")]
        predictions.record_model_labels(conn, labels={"v1": ["World", "Sports"]})
        predictions.record_model_labels(conn, labels={"v1": ["Sports"]})  # first order stays
    assert predictions.select_latest_model_labels(engine) == ["World", "Sports"]
    serving = predictions.count_predictions_by_version(engine)
    assert {(s.model_version, s.total) for s in serving} == {("v1", 2), ("v2", 1)}


def test_on_call_reads_are_whole_typed_rows(engine: Engine) -> None:
    assert drift_runs.list_drift_runs(engine) == []
    assert drift_runs.get_drift_run(engine, run_id=1) is None
    run_id = drift_runs.insert_drift_run(
        engine,
        drift_runs.NewDriftRun(
            started_at=NOW,
            finished_at=NOW,
            model_version="v1",
            level="warn",
            window_size=500,
            psi_confidence=0.15,
            details={"histogram": {"edges": [0.5]}},
            decision={"action": "alert"},
        ),
    )
    run = drift_runs.get_drift_run(engine, run_id=run_id)
    assert run is not None and run.level == "warn" and run.psi_topics is None
    assert run.details == {"histogram": {"edges": [0.5]}} and run.decision == {"action": "alert"}
    assert drift_runs.list_drift_runs(engine, limit=5) == [run]

    events.record_model_event(
        engine=engine, kind="promoted", model_name="m", version="2", drift_run_id=run_id
    )
    (event,) = events.list_model_events(engine)
    assert (event.kind, event.model_name, event.drift_run_id, event.metrics) == (
        "promoted",
        "m",
        run_id,
        {},
    )


def test_on_call_pages_render_the_records(
    db: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from fastapi.testclient import TestClient

    from monitoring.web.app import create_app
    from monitoring.web.users import add_user
    from pipeline.core import registry

    def no_registry(*args: object) -> None:
        raise RegistryError("no registry in this test")  # the pages show Postgres' history

    monkeypatch.setattr(registry, "version_by_alias", no_registry)
    monkeypatch.setattr(registry, "list_versions", no_registry)

    run_id = drift_runs.insert_drift_run(
        engine,
        drift_runs.NewDriftRun(
            started_at=NOW,
            finished_at=NOW,
            model_version="v1",
            level="drift",
            window_size=900,
            psi_confidence=0.31,
            psi_topics=0.02,
            details={"histogram": {"edges": [0.5], "reference": [0.4, 0.6], "current": [0.7, 0.3]}},
        ),
    )
    events.record_model_event(engine=engine, kind="rejected", model_name="m", version="3")
    add_user(engine, "oscar", "correct horse battery", "admin")
    with TestClient(create_app(db, engine=engine)) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        assert token
        signed = http.post(
            "/login",
            data={"username": "oscar", "password": "correct horse battery", "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        listing = http.get("/drift")
        detail = http.get(f"/drift/{run_id}")
        models = http.get("/models")
        dashboard = http.get("/dashboard")
        missing = http.get(f"/drift/{run_id + 1}")
    assert listing.status_code == 200 and f'href="/drift/{run_id}"' in listing.text
    assert detail.status_code == 200 and 'id="level">drift<' in detail.text
    assert "<svg" in detail.text  # the confidence histogram
    assert models.status_code == 200 and "rejected" in models.text
    assert dashboard.status_code == 200 and f"run #{run_id}" in dashboard.text
    assert missing.status_code == 404
