from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.settings import Settings
from pipeline.sink import ReviewPolicy, save_batch

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def _pair(i: int, version: str = "v1", margin: float = 0.5) -> tuple[CleanArticle, Prediction]:
    art = CleanArticle(f"s-{i}", "t", "b", "t. b", None, None, None, None, NOW)
    pred = Prediction(art.id, version, "World", 0.7, margin, (0.7, 0.1, 0.1, 0.1), 3.0, NOW, NOW)
    return art, pred


def test_bulk_write_is_idempotent_and_samples_new_rows_only(db: Settings) -> None:
    engine = make_engine(db)
    policy = ReviewPolicy(uniform_share=0.0, uncertain_share=0.1, topic_cap=100)
    pairs = [_pair(i, margin=i / 100) for i in range(100)]
    first = save_batch(engine=engine, pairs=pairs, policy=policy, rng=random.Random(0))
    assert len(first.stored) == 100 and first.duplicates == 0 and first.review_items == 10
    again = save_batch(engine=engine, pairs=pairs + pairs[:5], policy=policy, rng=random.Random(0))
    assert again.stored == [] and again.duplicates == 105 and again.review_items == 0
    other = save_batch(
        engine=engine,
        pairs=[_pair(i, "v2") for i in range(10)],
        policy=policy,
        rng=random.Random(0),
    )
    assert len(other.stored) == 10  # a new model version is a new prediction
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ArticleRow)) == 100
        assert conn.scalar(select(func.count()).select_from(PredictionRow)) == 110
        review = conn.execute(
            select(ReviewItemRow.article_id, ReviewItemRow.reason).where(
                ReviewItemRow.reason == "uncertainty"
            )
        ).all()
    # the ten lowest-margin predictions of v1 (s-0..s-9) plus one from the v2 batch
    assert {r.article_id for r in review} >= {f"s-{i}" for i in range(10)}
    engine.dispose()


def test_same_id_other_text_is_a_recorded_conflict_and_redeliveries_are_counted(
    db: Settings,
) -> None:
    from sqlalchemy import text

    engine = make_engine(db)
    policy = ReviewPolicy(uniform_share=0.0, uncertain_share=0.0, topic_cap=0)
    art, pred = _pair(1)
    first = save_batch(engine=engine, pairs=[(art, pred)], policy=policy, rng=random.Random(0))
    assert len(first.stored) == 1 and first.conflicts == 0
    # the same message twice more (once in one batch with itself), and a claim on its id
    again = save_batch(
        engine=engine, pairs=[(art, pred), (art, pred)], policy=policy, rng=random.Random(0)
    )
    assert again.stored == [] and again.duplicates == 2 and again.conflicts == 0
    other = CleanArticle("s-1", "Another story", "b", "x", None, None, None, None, NOW, None, 2, 9)
    claim = save_batch(
        engine=engine,
        pairs=[(other, pred), _pair(2)],
        policy=policy,
        rng=random.Random(0),
    )
    assert claim.conflicts == 1 and [p.article_id for p in claim.stored] == ["s-2"]
    with engine.connect() as conn:
        title, deliveries = conn.execute(
            text("SELECT title, deliveries FROM articles WHERE id = 's-1'")
        ).one()
        assert (title, deliveries) == ("t", 3)  # the first writer keeps the id
        rows = conn.execute(
            text("SELECT article_id, title, kafka_partition, kafka_offset FROM article_conflicts")
        ).all()
        assert [tuple(r) for r in rows] == [("s-1", "Another story", 2, 9)]
    engine.dispose()


def test_real_postgres_failures_are_classified_as_data_errors_or_outages(db: Settings) -> None:
    """What Postgres really raises: a NUL in a text is a data error (isolate the message,
    never retry it forever); a database that does not answer is an outage (retry)."""
    from pipeline.delivery import is_transient_db_error

    engine = make_engine(db)
    bad = CleanArticle("nul", "a\x00b", "b", "t", None, None, None, None, NOW)
    pred = Prediction("nul", "v1", "World", 0.7, 0.5, (0.7, 0.1, 0.1, 0.1), 3.0, NOW, NOW)
    policy = ReviewPolicy()
    with pytest.raises(Exception) as data_error:
        save_batch(engine=engine, pairs=[(bad, pred)], policy=policy, rng=random.Random(0))
    assert not is_transient_db_error(data_error.value), repr(data_error.value)
    engine.dispose()
    down = make_engine(db.model_copy(update={"pg_port": 9}))
    with pytest.raises(Exception) as outage:
        save_batch(engine=down, pairs=[_pair(1)], policy=policy, rng=random.Random(0))
    assert is_transient_db_error(outage.value), repr(outage.value)
    down.dispose()


def test_every_copy_in_a_batch_is_judged_against_the_stored_text(db: Settings) -> None:
    """Found by attacking a live worker: with the stored text B, a batch A, A, A, B lost two
    of the A copies (neither stored nor recorded) and filed the real redelivery B as a
    conflict. Every message must end as the article (a delivery) or a conflict row."""
    from sqlalchemy import text

    engine = make_engine(db)
    policy = ReviewPolicy(uniform_share=0.0, uncertain_share=0.0, topic_cap=0)

    def msg(body: str, offset: int) -> tuple[CleanArticle, Prediction]:
        art = CleanArticle(
            "x", "t", body, "t. " + body, None, None, None, None, NOW, None, 0, offset
        )
        return art, Prediction("x", "v1", "World", 0.7, 0.5, (0.7, 0.1, 0.1, 0.1), 3.0, NOW, NOW)

    first = save_batch(engine=engine, pairs=[msg("B", 1)], policy=policy, rng=random.Random(0))
    assert len(first.stored) == 1
    batch = [msg("A", 2), msg("A", 3), msg("A", 4), msg("B", 5)]
    out = save_batch(engine=engine, pairs=batch, policy=policy, rng=random.Random(0))
    assert (out.conflicts, out.duplicates, len(out.stored)) == (3, 1, 0)
    # a new id whose batch holds two texts: the first is stored, the other a conflict
    batch = [msg("C", 6), msg("C", 7), msg("D", 8)]
    batch = [
        (dataclasses.replace(a, id="y"), dataclasses.replace(p, article_id="y")) for a, p in batch
    ]
    out = save_batch(engine=engine, pairs=batch, policy=policy, rng=random.Random(0))
    assert (out.conflicts, out.duplicates, len(out.stored)) == (1, 1, 1)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, deliveries FROM articles")).all())
        assert rows == {"x": 2, "y": 2}
        kept = sorted(conn.execute(text("SELECT kafka_offset FROM article_conflicts")).scalars())
        assert kept == [2, 3, 4, 8]  # every other-text copy kept, none vanished
    engine.dispose()
