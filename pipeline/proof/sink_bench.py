"""Benchmark of the prediction sink alone: no Kafka, no model.

Each batch goes through the worker's own storing call, :func:`pipeline.sink.save_batch` (one
transaction: articles upserted with their deliveries counter, predictions
inserted ``ON CONFLICT DO NOTHING``, review picks, the model's label order on the first
batch). Articles are real texts turned into Kafka-shaped messages and validated as the
worker validates them; only the model's scores are made up (seeded), so the rows are the
ones a worker writes.

Where it writes: a scratch database created for the run, migrated to head (the real
schema and indexes), and dropped at the end unless ``keep_database``. The live tables are
left alone: bench rows there would reach the reviewers' queue and the drift windows.

Per batch size, two passes over the same batches:

1. **first delivery**: every row new; rows/s and ms per batch (p50/p95).
2. **re-delivery**: the same batches stored again; they must add no row and change
   nothing but ``articles.deliveries`` (each article's count goes from 1 to 2).

Afterwards the database is counted; every figure below can fail: distinct articles with a
prediction = expected, rows per table unchanged by the re-delivery, deliveries summed =
2 x rows, and a digest of every stored column except ``deliveries`` equal before and
after the re-delivery.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, text

from pipeline.batch import RawMessage, validate_batch
from pipeline.core.datasets import LabelledText
from pipeline.core.db.scratch import create_database, drop_database
from pipeline.core.records import CleanArticle, Prediction
from pipeline.core.settings import Settings
from pipeline.produce import article_messages
from pipeline.sink import ReviewPolicy, WriteResult, save_batch

Report = Callable[[str], None]
BATCH_SIZES = (64, 128, 256, 512, 1024)
LABELS = ("World", "Sports", "Business", "Sci/Tech")


@dataclasses.dataclass(frozen=True)
class PassFigures:
    seconds: float
    rows_per_s: float
    batch_ms_p50: float
    batch_ms_p95: float


@dataclasses.dataclass(frozen=True)
class TableCounts:
    articles: int
    predictions: int
    distinct_predicted: int  # distinct articles with a prediction of this run's version
    review_items: int
    conflicts: int
    deliveries: int  # sum of articles.deliveries
    digest: str  # md5 over every stored column except articles.deliveries


@dataclasses.dataclass(frozen=True)
class SizeResult:
    batch_size: int
    rows: int
    batches: int
    first: PassFigures
    redelivery: PassFigures
    stored_reported: int  # what the sink returned as stored, summed over the first pass
    duplicates_reported: int  # what it returned as duplicates in the re-delivery pass
    after_first: TableCounts
    after_redelivery: TableCounts
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "problems": list(self.problems), "ok": self.ok}


@dataclasses.dataclass(frozen=True)
class SinkBenchResult:
    machine: str
    database: str
    run_prefix: str
    model_version: str
    rows_per_size: int
    target_rows_per_s: float
    sizes: list[SizeResult]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sizes)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "database": self.database,
            "run_prefix": self.run_prefix,
            "model_version": self.model_version,
            "rows_per_size": self.rows_per_size,
            "target_rows_per_s": self.target_rows_per_s,
            "sizes": [s.to_json() for s in self.sizes],
            "ok": self.ok,
        }


def build_pairs(
    rows: Sequence[LabelledText],
    *,
    n: int,
    prefix: str,
    topic: str,
    partitions: int,
    version: str,
    max_bytes: int,
    seed: int = 0,
) -> list[tuple[CleanArticle, Prediction]]:
    """``n`` (article, prediction) pairs as a worker holds them before storing: messages
    laid out over ``partitions`` like the producer's, validated by the worker's validator;
    the scores are random (seeded) but shaped like the model's."""
    stamp = datetime.now(UTC)
    stamp_ms = int(stamp.timestamp() * 1000)
    msgs = [
        RawMessage(out.value, out.key, topic, k % partitions, k // partitions, stamp_ms)
        for k, out in enumerate(article_messages(rows, limit=n, loop=True, run_id=prefix))
    ]
    checked = validate_batch(msgs, max_bytes=max_bytes, now=lambda: stamp)
    if checked.dead or len(checked.articles) != n:
        raise ValueError(f"{len(checked.dead)} of the benchmark messages failed validation")
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(len(LABELS), 0.6), size=n)
    pairs = []
    for art, p in zip(checked.articles, probs, strict=True):
        order = np.argsort(p)[::-1]
        probabilities = tuple(float(x) for x in p)
        pairs.append(
            (
                art,
                Prediction(
                    article_id=art.id,
                    model_version=version,
                    topic=LABELS[int(order[0])],
                    confidence=probabilities[int(order[0])],
                    margin=probabilities[int(order[0])] - probabilities[int(order[1])],
                    probabilities=probabilities,
                    latency_ms=float(rng.uniform(5, 50)),
                    received_at=art.received_at,
                    predicted_at=stamp,
                ),
            )
        )
    return pairs


def table_counts(engine: Engine, prefix: str, version: str) -> TableCounts:
    like = {"p": f"{prefix}-%", "v": version}
    with engine.connect() as conn:
        articles, deliveries, a_digest = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(deliveries), 0), "
                "md5(coalesce(string_agg((to_jsonb(a) - 'deliveries')::text, '' ORDER BY id), ''))"
                " FROM articles a WHERE id LIKE :p"
            ),
            like,
        ).one()
        predictions, distinct, p_digest = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT article_id), "
                "md5(coalesce(string_agg(to_jsonb(p)::text, '' ORDER BY id), ''))"
                " FROM predictions p WHERE article_id LIKE :p AND model_version = :v"
            ),
            like,
        ).one()
        review, r_digest = conn.execute(
            text(
                "SELECT count(*), md5(coalesce(string_agg(to_jsonb(r)::text, '' ORDER BY id), ''))"
                " FROM review_items r WHERE article_id LIKE :p"
            ),
            like,
        ).one()
        conflicts = conn.execute(
            text("SELECT count(*) FROM article_conflicts WHERE article_id LIKE :p"), like
        ).scalar_one()
    digest = f"{a_digest}:{p_digest}:{r_digest}"
    return TableCounts(
        int(articles),
        int(predictions),
        int(distinct),
        int(review),
        int(conflicts),
        int(deliveries),
        digest,
    )


def _timed_pass(
    engine: Engine,
    batches: Sequence[Sequence[tuple[CleanArticle, Prediction]]],
    *,
    policy: ReviewPolicy,
    rng: random.Random,
    labels: Mapping[str, Sequence[str]] | None,
) -> tuple[PassFigures, list[WriteResult]]:
    """Store each batch with the worker's call; ``labels`` goes with the first batch only,
    as a worker records a version's label order once."""
    times: list[float] = []
    results: list[WriteResult] = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        results.append(
            save_batch(
                engine=engine,
                pairs=batch,
                policy=policy,
                rng=rng,
                model_labels=labels if i == 0 else None,
            )
        )
        times.append(time.perf_counter() - start)
    total = sum(times)
    ms = np.array(times) * 1000
    rows = sum(len(b) for b in batches)
    return (
        PassFigures(
            seconds=total,
            rows_per_s=rows / total if total > 0 else float("inf"),
            batch_ms_p50=float(np.percentile(ms, 50)),
            batch_ms_p95=float(np.percentile(ms, 95)),
        ),
        results,
    )


def check_size(
    *,
    rows: int,
    stored: int,
    first_dups: int,
    redelivered_stored: int,
    redelivered_dups: int,
    redelivered_review: int,
    after_first: TableCounts,
    after_redelivery: TableCounts,
) -> tuple[str, ...]:
    """Every way the stored rows can differ from what a correct sink leaves."""
    problems = []
    a, b = after_first, after_redelivery
    if stored != rows or first_dups != 0:
        problems.append(f"first pass: sink reported {stored} stored, {first_dups} duplicates")
    if a.articles != rows or a.predictions != rows or a.distinct_predicted != rows:
        problems.append(
            f"first pass: {a.articles} articles, {a.predictions} predictions "
            f"({a.distinct_predicted} distinct) in the database, expected {rows}"
        )
    if a.deliveries != rows or a.conflicts:
        problems.append(f"first pass: deliveries {a.deliveries}, conflicts {a.conflicts}")
    if redelivered_stored or redelivered_dups != rows or redelivered_review:
        problems.append(
            f"re-delivery: sink reported {redelivered_stored} stored, {redelivered_dups} "
            f"duplicates, {redelivered_review} review items"
        )
    if (b.articles, b.predictions, b.distinct_predicted, b.review_items, b.conflicts) != (
        a.articles,
        a.predictions,
        a.distinct_predicted,
        a.review_items,
        a.conflicts,
    ):
        problems.append(f"re-delivery changed the row counts: {a} -> {b}")
    if b.deliveries != 2 * rows:
        problems.append(f"re-delivery: deliveries {b.deliveries}, expected {2 * rows}")
    if b.digest != a.digest:
        problems.append("re-delivery changed stored columns other than deliveries")
    return tuple(problems)


def bench_size(
    engine: Engine,
    pairs: Sequence[tuple[CleanArticle, Prediction]],
    *,
    batch_size: int,
    prefix: str,
    version: str,
    policy: ReviewPolicy,
    seed: int = 0,
) -> SizeResult:
    """Store ``pairs`` (ids ``<prefix>-<n>``, all new) in batches of ``batch_size``, then
    store the same batches again, and check what the database holds after each pass."""
    batches = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
    rng = random.Random(seed)
    labels = {version: list(LABELS)}
    first, first_results = _timed_pass(engine, batches, policy=policy, rng=rng, labels=labels)
    after_first = table_counts(engine, prefix, version)
    again, again_results = _timed_pass(engine, batches, policy=policy, rng=rng, labels=None)
    after_again = table_counts(engine, prefix, version)
    problems = check_size(
        rows=len(pairs),
        stored=sum(len(r.stored) for r in first_results),
        first_dups=sum(r.duplicates for r in first_results),
        redelivered_stored=sum(len(r.stored) for r in again_results),
        redelivered_dups=sum(r.duplicates for r in again_results),
        redelivered_review=sum(r.review_items for r in again_results),
        after_first=after_first,
        after_redelivery=after_again,
    )
    return SizeResult(
        batch_size=batch_size,
        rows=len(pairs),
        batches=len(batches),
        first=first,
        redelivery=again,
        stored_reported=sum(len(r.stored) for r in first_results),
        duplicates_reported=sum(r.duplicates for r in again_results),
        after_first=after_first,
        after_redelivery=after_again,
        problems=problems,
    )


@contextmanager
def scratch_database(settings: Settings, name: str, *, keep: bool = False) -> Iterator[Settings]:
    """A new database migrated to head; dropped on the way out unless ``keep``."""
    from pipeline.core.db.migrate import upgrade

    admin = create_engine(settings.database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        create_database(admin, name)
        scratch = settings.model_copy(update={"pg_database": name})
        try:
            upgrade(scratch.database_url())
            yield scratch
        finally:
            if not keep:
                drop_database(admin, name)
    finally:
        admin.dispose()


def run_sink_bench(
    settings: Settings,
    *,
    rows: Sequence[LabelledText],
    per_size: int,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    keep_database: bool = False,
    target_rows_per_s: float = 5000.0,
    report: Report,
) -> SinkBenchResult:
    from pipeline.core.db.engine import make_engine
    from pipeline.proof.bench import machine_description

    tag = uuid.uuid4().hex[:8]
    database = f"nf_sinkbench_{tag}"
    version = f"sinkbench-{tag}"
    policy = ReviewPolicy(
        settings.review_uniform_share, settings.review_uncertain_share, settings.review_topic_cap
    )
    results: list[SizeResult] = []
    with scratch_database(settings, database, keep=keep_database) as scratch:
        engine = make_engine(scratch)
        try:
            with engine.connect() as conn:  # connect before the clock starts
                conn.execute(text("SELECT 1"))
            for size in batch_sizes:
                prefix = f"sb{tag}-b{size}"
                pairs = build_pairs(
                    rows,
                    n=per_size,
                    prefix=prefix,
                    topic=settings.topic_articles,
                    partitions=settings.articles_partitions,
                    version=version,
                    max_bytes=settings.max_message_bytes,
                )
                report(f"batch {size}: {per_size} rows, stored twice ...")
                r = bench_size(
                    engine, pairs, batch_size=size, prefix=prefix, version=version, policy=policy
                )
                report(
                    f"  {r.first.rows_per_s:,.0f} rows/s first, "
                    f"{r.redelivery.rows_per_s:,.0f} rows/s re-delivered"
                    + ("" if r.ok else f"; [red]FAILED[/red]: {'; '.join(r.problems)}")
                )
                results.append(r)
        finally:
            engine.dispose()
    if keep_database:
        report(f"kept database {database}")
    return SinkBenchResult(
        machine=machine_description(),
        database=database + ("" if keep_database else " (dropped)"),
        run_prefix=f"sb{tag}",
        model_version=version,
        rows_per_size=per_size,
        target_rows_per_s=target_rows_per_s,
        sizes=results,
    )


def write_json(result: SinkBenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
