"""The sink benchmark's correctness part on a real PostgreSQL: the worker's batch store,
first delivery then the same batches again, counted in the database."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.core.datasets import LabelledText
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings
from pipeline.proof.sink_bench import bench_size, build_pairs, check_size, table_counts
from pipeline.sink import ReviewPolicy

pytestmark = pytest.mark.integration

TEXTS = [
    LabelledText(str(i), f"Title {i} with 'quotes', {{braces}} and \\ back", f"Body {i} ü", "World")
    for i in range(7)
]


def test_first_delivery_stores_every_row_and_redelivery_only_counts(db: Settings) -> None:
    engine = make_engine(db)
    policy = ReviewPolicy(uniform_share=0.1, uncertain_share=0.1, topic_cap=100)
    try:
        results = []
        for size in (8, 32):
            prefix = f"sbt-b{size}"
            pairs = build_pairs(
                TEXTS,
                n=100,
                prefix=prefix,
                topic="articles",
                partitions=4,
                version="sinkbench-test",
                max_bytes=db.max_message_bytes,
            )
            results.append(
                bench_size(
                    engine,
                    pairs,
                    batch_size=size,
                    prefix=prefix,
                    version="sinkbench-test",
                    policy=policy,
                )
            )
        for r in results:
            assert r.ok, r.problems
            assert r.batches == -(-100 // r.batch_size)
            assert r.stored_reported == 100 and r.duplicates_reported == 100
            first, again = r.after_first, r.after_redelivery
            assert (first.articles, first.predictions, first.distinct_predicted) == (100, 100, 100)
            assert first.deliveries == 100 and first.review_items > 0
            assert dataclasses.replace(again, deliveries=100) == first  # only deliveries moved
            assert again.deliveries == 200
            assert r.first.rows_per_s > 0 and r.redelivery.batch_ms_p95 >= 0
        # the two runs do not see each other's rows
        assert table_counts(engine, "sbt-b8", "sinkbench-test").articles == 100
    finally:
        engine.dispose()


def test_a_wrong_count_is_reported(db: Settings) -> None:
    engine = make_engine(db)
    try:
        empty = table_counts(engine, "nothing-here", "v")
    finally:
        engine.dispose()
    assert empty.articles == 0 and empty.deliveries == 0
    problems = check_size(
        rows=10,
        stored=10,
        first_dups=0,
        redelivered_stored=0,
        redelivered_dups=10,
        redelivered_review=0,
        after_first=empty,
        after_redelivery=empty,
    )
    assert any("first pass" in p for p in problems)
    assert any("deliveries 0, expected 20" in p for p in problems)
