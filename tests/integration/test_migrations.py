from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, inspect

from pipeline.core.db.migrate import current_revision, downgrade, head_revision, upgrade
from pipeline.core.db.models import Base
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
TABLES = {
    "articles",
    "predictions",
    "review_items",
    "drift_runs",
    "model_events",
    "article_conflicts",
}


def test_upgrade_then_downgrade_on_real_postgres(empty_db: Settings) -> None:
    url = empty_db.database_url()
    engine = create_engine(url)
    try:
        upgrade(url)
        assert current_revision(url) == head_revision()
        insp = inspect(engine)
        assert set(insp.get_table_names()) >= TABLES
        uniques = {u["name"] for u in insp.get_unique_constraints("predictions")}
        assert "uq_prediction_article_version" in uniques
        upgrade(url)  # idempotent
        downgrade(url, "base")
        assert current_revision(url) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(url)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_match_the_models(db: Settings) -> None:
    """Every model column exists in the migrated schema (no drift between the two)."""
    engine = create_engine(db.database_url())
    try:
        insp = inspect(engine)
        for table in Base.metadata.sorted_tables:
            cols = {c["name"] for c in insp.get_columns(table.name)}
            assert {c.name for c in table.columns} == cols, table.name
    finally:
        engine.dispose()


def test_wrong_password_is_a_clear_error(stack: Settings) -> None:
    from pydantic import SecretStr

    from pipeline.core.db.engine import make_engine, wait_for_database
    from pipeline.core.errors import DatabaseError

    bad = stack.model_copy(update={"pg_password": SecretStr("wrong-password")})
    with pytest.raises(DatabaseError, match="did not answer") as info:
        wait_for_database(make_engine(bad), timeout_s=1)
    assert "wrong-password" not in str(info.value)


# Migration 0008: day partitions, on a database with rows ---------------------------------

ROWS = {
    "articles": "SELECT id, title, received_at, deliveries FROM articles ORDER BY id",
    "predictions": "SELECT id, article_id, model_version, predicted_at FROM predictions "
    "ORDER BY id",
    "review_items": "SELECT id, prediction_id, article_id, status, label FROM review_items "
    "ORDER BY id",
}


def _seed_unpartitioned(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Rows over three days (two ago, yesterday, today) in the tables as 0007 left them:
    articles, two model versions' predictions, review items naming them."""
    from sqlalchemy import text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO articles (id, title, body, received_at) SELECT 'a-' || g, "
                    "'t' || g, 'b', now() - make_interval(days => g % 3) "
                    "FROM generate_series(1, 30) g"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO predictions (article_id, model_version, topic, confidence, "
                    "margin, probabilities, latency_ms, received_at, predicted_at) "
                    "SELECT a.id, v, 'World', 0.9, 0.5, '{0.9,0.1}', 1, a.received_at, "
                    "a.received_at + interval '1 second' FROM articles a, "
                    "unnest(ARRAY['v1', 'v2']) v"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO review_items (prediction_id, article_id, reason, priority, "
                    "status, label) SELECT id, article_id, 'uniform', 1, "
                    "CASE WHEN id % 2 = 0 THEN 'done' ELSE 'pending' END, "
                    "CASE WHEN id % 2 = 0 THEN 'World' END FROM predictions WHERE id % 5 = 0"
                )
            )
        with engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(text(q))] for t, q in ROWS.items()}
    finally:
        engine.dispose()


def _kinds(engine: Engine) -> dict[str, str]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, relkind FROM pg_class WHERE relname IN ('articles', "
                "'predictions') AND relnamespace = 'public'::regnamespace"
            )
        )
        return {str(r[0]): str(r[1]) for r in rows}


def test_partitioning_migration_keeps_every_row_and_writes_stay_idempotent(
    empty_db: Settings,
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from pipeline.core.db import articles, partitions, predictions
    from pipeline.core.records import CleanArticle, Prediction

    url = empty_db.database_url()
    upgrade(url, "0007")
    seeded = _seed_unpartitioned(url)
    upgrade(url)
    engine = create_engine(url)
    try:
        assert _kinds(engine) == {"articles": "p", "predictions": "p"}
        with engine.connect() as conn:
            assert {t: [tuple(r) for r in conn.execute(text(q))] for t, q in ROWS.items()} == seeded
            days = {p.day for p in partitions.list_day_partitions(conn, "predictions")}
            assert (
                len(days) == 3
                and conn.execute(text("SELECT count(*) FROM ONLY predictions_default")).scalar_one()
                == 0
            )
            per_version = conn.execute(
                text("SELECT model_version, sum(predictions) FROM prediction_counts GROUP BY 1")
            ).all()
        assert sorted((v, int(n)) for v, n in per_version) == [("v1", 30), ("v2", 30)]
        # a redelivery hours later: the article counts a delivery, no prediction is added
        later = datetime.now(UTC) + timedelta(hours=1)
        again = CleanArticle("a-1", "t1", "b", "t1 b", None, None, None, None, later)
        with engine.begin() as conn:
            assert articles.upsert_articles(conn, articles=[again], deliveries=[1]) == {"a-1"}
            repeat = Prediction("a-1", "v1", "World", 0.9, 0.5, (0.9, 0.1), 1.0, later, later)
            new = Prediction("a-1", "v3", "World", 0.9, 0.5, (0.9, 0.1), 1.0, later, later)
            stored = predictions.insert_new_predictions(conn, predictions=[repeat, new, new])
        assert list(stored) == [("a-1", "v3")]
        # the id sequence goes on from the old table's
        assert stored["a-1", "v3"] > max(int(str(r[0])) for r in seeded["predictions"])
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT count(*), sum(deliveries) FROM articles WHERE id = 'a-1'")
            ).one() == (1, 2)
        # back to plain tables: the rows and the foreign keys return
        downgrade(url, "0007")
        assert _kinds(engine) == {"articles": "r", "predictions": "r"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM predictions")).scalar_one() == 61
        fks = {fk["name"] for fk in inspect(engine).get_foreign_keys("review_items")}
        assert {"review_items_prediction_id_fkey", "review_items_article_id_fkey"} <= fks
    finally:
        engine.dispose()


def test_an_interrupted_partitioning_migration_leaves_the_old_tables(empty_db: Settings) -> None:
    from sqlalchemy import text

    url = empty_db.database_url()
    upgrade(url, "0007")
    seeded = _seed_unpartitioned(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:  # the name of a partition the migration creates late
            conn.execute(text("CREATE TABLE predictions_default (x int)"))
        with pytest.raises(Exception, match="predictions_default"):
            upgrade(url)
        assert current_revision(url) == "0007"
        assert _kinds(engine) == {"articles": "r", "predictions": "r"}
        with engine.connect() as conn:
            assert {t: [tuple(r) for r in conn.execute(text(q))] for t, q in ROWS.items()} == seeded
        assert len(inspect(engine).get_foreign_keys("review_items")) == 2
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE predictions_default"))
        upgrade(url)  # the cause removed, it goes through
        assert _kinds(engine) == {"articles": "p", "predictions": "p"}
        with engine.connect() as conn:
            assert {t: [tuple(r) for r in conn.execute(text(q))] for t, q in ROWS.items()} == seeded
    finally:
        engine.dispose()
