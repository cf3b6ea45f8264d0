"""Retention on a real, freshly migrated Postgres: day partitions created ahead (rows the
DEFAULT partition took move into them), old days dropped while the rows reviews, live drift
references and open topic candidates use are kept, one prune at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from pipeline.core.db import partitions, retention
from pipeline.core.db.engine import make_engine
from pipeline.core.db.locks import advisory_unlock, try_advisory_lock
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _rows(engine: Engine, prefix: str, at: datetime, n: int) -> list[int]:
    """``n`` articles received at ``at`` with one prediction each (made a second later);
    returns the prediction ids."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO articles (id, title, body, received_at) "
                "SELECT :p || '-' || g, 't', 'b', :at FROM generate_series(1, :n) g"
            ),
            {"p": prefix, "at": at, "n": n},
        )
        ids = conn.execute(
            text(
                "INSERT INTO predictions (article_id, model_version, topic, confidence, margin, "
                "probabilities, latency_ms, received_at, predicted_at) "
                "SELECT :p || '-' || g, 'v1', 'World', 0.9, 0.5, '{0.9,0.1}', 1, :at, "
                ":at + interval '1 second' FROM generate_series(1, :n) g RETURNING id"
            ),
            {"p": prefix, "at": at, "n": n},
        ).scalars()
        return sorted(int(i) for i in ids)


def _review(engine: Engine, prediction_id: int, article_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO review_items (prediction_id, article_id, reason, priority, status, "
                "label) VALUES (:p, :a, 'uniform', 1, :s, :l)"
            ),
            {
                "p": prediction_id,
                "a": article_id,
                "s": status,
                "l": "World" if status == "done" else None,
            },
        )


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def day_at(today: date, days_ago: int) -> datetime:
    """Noon UTC ``days_ago`` days before ``today``."""
    return partitions.day_start(today) - timedelta(days=days_ago) + timedelta(hours=12)


def _ids(engine: Engine, sql: str) -> set[object]:
    with engine.connect() as conn:
        return set(conn.execute(text(sql)).scalars())


def test_partitions_ahead_take_the_rows_the_default_partition_holds(engine: Engine) -> None:
    _rows(engine, "early", NOW, 3)  # a fresh database: only DEFAULT partitions exist
    assert _count(engine, "SELECT count(*) FROM ONLY predictions_default") == 3
    created = partitions.create_partitions_ahead(engine, ahead=2)
    today = partitions.utc_today(NOW)
    assert partitions.partition_name("articles", today) in created and len(created) == 6
    assert _count(engine, "SELECT count(*) FROM ONLY predictions_default") == 0
    assert _count(engine, f"SELECT count(*) FROM ONLY predictions_p{today:%Y%m%d}") == 3
    assert _count(engine, "SELECT count(*) FROM articles") == 3
    assert partitions.create_partitions_ahead(engine, ahead=2) == []  # idempotent
    with pytest.raises(ValueError, match="days ahead"):
        partitions.days_ahead(today, -1)


def test_prune_drops_old_days_and_keeps_what_reviews_references_and_candidates_use(
    engine: Engine,
) -> None:
    today = partitions.utc_today(NOW)
    old, older, recent = (day_at(today, d) for d in (33, 35, 1))
    with engine.begin() as conn:
        partitions.ensure_partitions(
            conn, days=[partitions.utc_today(d) for d in (old, older, recent, NOW)]
        )
    labelled, expired, plain, *_ = _rows(engine, "o", older, 6)
    pending, in_window, member, *_ = _rows(engine, "p", old, 5)
    _rows(engine, "r", recent, 4)
    _review(engine, labelled, "o-1", "done")
    _review(engine, expired, "o-2", "expired")
    _review(engine, pending, "p-1", "pending")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO drift_references (model_version, kind, status, n_rows, confidences, "
                "topic_mix, window_from, window_to) VALUES ('v1', 'live', 'active', 1, "
                "'{0.9}', '{}', :a, :a)"
            ),
            {"a": old + timedelta(seconds=1)},  # every "p" prediction is in the window
        )
        conn.execute(
            text(
                "INSERT INTO topic_candidates (rank, size, separation, cohesion, terms, "
                "examples, members) VALUES (1, 1, 0.5, 0.5, '[]', '[]', :m)"
            ),
            {"m": json.dumps(["o-4"])},
        )
    before = _count(engine, "SELECT count(*) FROM predictions")

    dry = retention.prune(engine, retention_days=30, dry_run=True)
    assert {d.name for d in dry.dropped} == {
        f"{t}_p{partitions.utc_today(d):%Y%m%d}"
        for t in ("articles", "predictions")
        for d in (old, older)
    }
    assert _count(engine, "SELECT count(*) FROM predictions") == before  # nothing changed

    done = retention.prune(engine, retention_days=30)
    by_name = {d.name: d for d in done.dropped}
    assert by_name[f"predictions_p{partitions.utc_today(older):%Y%m%d}"].rows == 6
    assert (
        by_name[f"predictions_p{partitions.utc_today(older):%Y%m%d}"].kept == 2
    )  # labelled, member
    assert by_name[f"predictions_p{partitions.utc_today(old):%Y%m%d}"].kept == 5  # in the window
    assert done.review_items_deleted == 1  # the expired one went with its prediction
    kept_ids = _ids(engine, "SELECT id FROM ONLY predictions_default")
    assert {labelled, pending, in_window, member} <= kept_ids and expired not in kept_ids
    assert plain not in kept_ids
    kept_articles = _ids(engine, "SELECT id FROM ONLY articles_default")
    assert {"o-1", "o-4", "p-1", "p-2", "p-5"} <= kept_articles and "o-2" not in kept_articles
    # every review item still finds its prediction and article
    orphans = _count(
        engine,
        "SELECT count(*) FROM review_items r WHERE NOT EXISTS (SELECT 1 FROM predictions p "
        "WHERE p.id = r.prediction_id) OR NOT EXISTS (SELECT 1 FROM articles a "
        "WHERE a.id = r.article_id)",
    )
    assert orphans == 0 and _count(engine, "SELECT count(*) FROM review_items") == 2
    assert _count(engine, "SELECT count(*) FROM predictions WHERE article_id LIKE 'r-%'") == 4
    with engine.connect() as conn:
        days = {p.day for p in partitions.list_day_partitions(conn, "predictions")}
    assert partitions.utc_today(older) not in days and partitions.utc_today(recent) in days

    # the review that kept the pending item expires: the next prune deletes its rows
    with engine.begin() as conn:
        conn.execute(text("UPDATE review_items SET status = 'expired' WHERE status = 'pending'"))
        conn.execute(text("UPDATE drift_references SET status = 'retired'"))
    again = retention.prune(engine, retention_days=30)
    assert again.dropped == () and again.default_deleted["predictions"] == 5
    assert _count(engine, "SELECT count(*) FROM ONLY predictions_default") == 2
    assert "no day partition old enough" in "\n".join(again.lines())


def test_a_second_prune_at_once_is_refused(engine: Engine) -> None:
    with engine.connect() as holder:
        assert try_advisory_lock(holder, retention.PRUNE_LOCK)
        holder.commit()
        with pytest.raises(retention.PruneBusyError, match="another prune is running"):
            retention.prune(engine, retention_days=30)
        with pytest.raises(retention.PruneBusyError):
            retention.prune(engine, retention_days=30, wait_s=0.3)
        advisory_unlock(holder, retention.PRUNE_LOCK)
        holder.commit()
    assert retention.prune(engine, retention_days=30).dropped == ()
