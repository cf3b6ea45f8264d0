"""End-to-end benchmark of the streaming path on real Kafka and Postgres.

Three measurements, in one run, on the same model and texts:

1. **model only**: the classifier alone on the benchmark texts in batches of the worker's
   batch size (the ceiling).
2. **drain**: ``workers`` worker processes (one consumer group on the articles topic's
   partitions) are started and warmed up on a few articles until the group is stable; then
   N articles are produced at once and timed until every one is stored. Throughput = the
   rows committed after the first commit / time from the first to the last committed row;
   efficiency = drain throughput / model-only throughput. The workers' own CPU time over
   the drain gives the cost per article, whatever else the machine was running.
3. **offered load**: articles offered at a fixed rate (default 1000/min) to the running
   workers; latency = time from the Kafka message timestamp to the committed row
   (p50/p95/max). Skipped when ``offered_articles`` is 0.

Lost = produced and never stored; duplicates = articles processed more than once
(redeliveries counted by the sink) plus id conflicts: see :mod:`pipeline.proof.stored`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from pipeline.core.datasets import LabelledText
from pipeline.core.db.predictions import committed_at_sql
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from pipeline.produce import article_messages, produce
from pipeline.proof.stored import StreamCounts, prediction_counts, stream_counts, wait_stored
from pipeline.worker_process import start_worker, stop_worker

Report = Callable[[str], None]


@dataclasses.dataclass
class BenchResult:
    machine: str
    model_version: str
    model_graph: str
    articles: int
    model_only_per_s: float
    drain_seconds: float
    drain_per_min: float
    efficiency: float
    offered_rate_per_min: float
    offered_articles: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    lost: int
    duplicates: int
    batch_size: int
    workers: int = 1
    partitions: int = 0
    cpu_count: int = 0
    ort_threads: int = 0  # per worker; 0 = ONNX Runtime's default
    worker_cpu_s: float = 0.0  # user + system seconds of all workers over the drain
    articles_per_cpu_s: float = 0.0  # drain articles / worker_cpu_s
    drain_per_min_per_core: float = 0.0  # drain_per_min / cpu_count

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def machine_description() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_group_stable(
    bootstrap: str, group: str, members: int, timeout_s: float, report: Report
) -> None:
    """Wait until the consumer group is Stable with ``members`` members, each assigned
    partitions (a rebalance during the drain would be timed as throughput)."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            assigned = [m for m in desc.members if m.assignment.topic_partitions]
            seen = f"{desc.state}, {len(desc.members)} members, {len(assigned)} assigned"
            if desc.state == ConsumerGroupState.STABLE and len(assigned) == members:
                return
        except Exception as exc:  # not known yet, or the broker is busy: try again
            seen = repr(exc)
        time.sleep(1.0)
    raise RuntimeError(f"consumer group {group} not stable with {members} members: {seen}")


def drain_rate_per_min(engine: Engine, prefix: str, committed: str) -> tuple[float, float, int]:
    """(articles/min, seconds, rows) from the first to the last committed row of the
    stream; the rows of the first commit are not counted (their work precedes it)."""
    with engine.connect() as conn:
        first, last, total = conn.execute(
            text(
                f"SELECT min({committed}), max({committed}), count(*) FROM predictions p "
                "WHERE p.article_id LIKE :p"
            ),
            {"p": prefix + "-%"},
        ).one()
        at_first = conn.execute(
            text(
                f"SELECT count(*) FROM predictions p WHERE p.article_id LIKE :p "
                f"AND {committed} = :t"
            ),
            {"p": prefix + "-%", "t": first},
        ).scalar_one()
    seconds = max(1e-3, (last - first).total_seconds())
    return (int(total) - int(at_first)) / seconds * 60, seconds, int(total)


def model_only_rate(clf: Classifier, texts: Sequence[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        clf.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


@dataclasses.dataclass(frozen=True)
class DrainFigures:
    """The drain measurement: N articles produced at once to the warmed-up workers."""

    per_min: float
    seconds: float
    stored: int  # rows stored (redeliveries included)
    unique: int  # distinct articles stored
    worker_cpu_s: float
    counts: StreamCounts
    committed_sql: str  # SQL for a row's commit time (see committed_at_sql)


@dataclasses.dataclass(frozen=True)
class OfferedFigures:
    """The offered-load measurement; empty when no articles were offered."""

    latencies_s: list[float] = dataclasses.field(default_factory=list)
    unique: int = 0
    counts: StreamCounts | None = None


def run_bench(
    settings: Settings,
    *,
    rows: Sequence[LabelledText],
    model_dir: Path,
    articles: int,
    offered_per_min: float,
    offered_articles: int,
    engine: Engine,
    workdir: Path,
    report: Report,
    workers: int = 1,
) -> BenchResult:
    from pipeline.stack.kafka import create_topics

    tag = uuid.uuid4().hex[:6]
    s = bench_settings(settings, tag)
    create_topics(
        s.kafka_bootstrap,
        {s.topic_articles: settings.articles_partitions, s.topic_dlq: 1, s.topic_predictions: 8},
    )
    clf = Classifier.load(model_dir)
    ceiling = measure_model_only(clf, rows, settings.batch_max_size, report)
    procs = start_workers(
        s, model_dir=model_dir, workdir=workdir, tag=tag, workers=workers, report=report
    )
    offered = OfferedFigures()
    try:
        warm_up(s, rows=rows, engine=engine, tag=tag, workers=workers, report=report)
        drain = measure_drain(
            s, rows=rows, engine=engine, tag=tag, articles=articles, procs=procs, report=report
        )
        if offered_articles:
            offered = measure_offered_load(
                s,
                rows=rows,
                engine=engine,
                tag=tag,
                articles=offered_articles,
                per_min=offered_per_min,
                committed=drain.committed_sql,
                report=report,
            )
    finally:
        for proc in procs:
            stop_worker(proc)
    return bench_result(
        settings,
        clf=clf,
        ceiling=ceiling,
        drain=drain,
        offered=offered,
        articles=articles,
        offered_per_min=offered_per_min,
        offered_articles=offered_articles,
        workers=workers,
    )


def bench_settings(settings: Settings, tag: str) -> Settings:
    """The settings with this run's own topics and consumer group."""
    return settings.model_copy(
        update={
            "topic_articles": f"bench-{tag}-articles",
            "topic_dlq": f"bench-{tag}-dlq",
            "topic_predictions": f"bench-{tag}-predictions",
            "worker_name": f"bench-{tag}",
        }
    )


def measure_model_only(
    clf: Classifier, rows: Sequence[LabelledText], batch: int, report: Report
) -> float:
    """The classifier alone on up to 2,000 of the texts (articles/s): the ceiling."""
    texts = [f"{r.title} {r.body}".strip() for r in rows[: min(len(rows), 2000)]]
    report(f"model only: {len(texts)} texts, batch {batch} ...")
    ceiling = model_only_rate(clf, texts, batch)
    report(f"  {ceiling:.1f} articles/s")
    return ceiling


def start_workers(
    s: Settings, *, model_dir: Path, workdir: Path, tag: str, workers: int, report: Report
) -> list[subprocess.Popen[bytes]]:
    """``workers`` worker processes in the bench's consumer group, logging to ``workdir``."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    workdir.mkdir(parents=True, exist_ok=True)
    report(f"starting {workers} worker(s) on {s.articles_partitions} partitions ...")
    return [
        start_worker(s, model_dir, workdir / f"bench-worker-{tag}-{i}.log") for i in range(workers)
    ]


def warm_up(
    s: Settings,
    *,
    rows: Sequence[LabelledText],
    engine: Engine,
    tag: str,
    workers: int,
    report: Report,
) -> None:
    """A few batches per worker, stored, and the consumer group stable."""
    warm_prefix = f"bw{tag}"
    warm = max(s.batch_max_size, 8) * workers
    produce(
        article_messages(rows, limit=warm, loop=True, run_id=warm_prefix),
        bootstrap=s.kafka_bootstrap,
        topic=s.topic_articles,
        rate=0,
    )
    wait_stored(engine, warm_prefix, warm, 600, poll_s=1.0)
    wait_group_stable(s.kafka_bootstrap, s.worker_name, workers, 300, report)
    report(f"  group stable; warm-up of {warm} stored")


def measure_drain(
    s: Settings,
    *,
    rows: Sequence[LabelledText],
    engine: Engine,
    tag: str,
    articles: int,
    procs: Sequence[subprocess.Popen[bytes]],
    report: Report,
) -> DrainFigures:
    """Produce ``articles`` at once and time the workers until every one is stored."""
    drain_prefix = f"bd{tag}"
    report(f"drain: producing {articles} articles at once ...")
    cpu_before = sum(process_cpu_s(p.pid) for p in procs)
    produce(
        article_messages(rows, limit=articles, loop=True, run_id=drain_prefix),
        bootstrap=s.kafka_bootstrap,
        topic=s.topic_articles,
        rate=0,
    )
    wait_stored(engine, drain_prefix, articles, 1800, report=report, poll_s=1.0)
    worker_cpu_s = sum(process_cpu_s(p.pid) for p in procs) - cpu_before
    committed = committed_at_sql(engine)
    drain_rate, drain_s, drain_total = drain_rate_per_min(engine, drain_prefix, committed)
    drain_unique = prediction_counts(engine, drain_prefix)[1]
    report(f"  {drain_total} stored in {drain_s:.1f}s; workers used {worker_cpu_s:.1f} CPU s")
    return DrainFigures(
        per_min=drain_rate,
        seconds=drain_s,
        stored=drain_total,
        unique=drain_unique,
        worker_cpu_s=worker_cpu_s,
        counts=stream_counts(engine, drain_prefix),
        committed_sql=committed,
    )


def measure_offered_load(
    s: Settings,
    *,
    rows: Sequence[LabelledText],
    engine: Engine,
    tag: str,
    articles: int,
    per_min: float,
    committed: str,
    report: Report,
) -> OfferedFigures:
    """Offer ``articles`` at ``per_min``; the latency from enqueue to committed row."""
    offer_prefix = f"bo{tag}"
    report(f"offered load: {articles} articles at {per_min:.0f}/min ...")
    produce(
        article_messages(rows, limit=articles, loop=True, run_id=offer_prefix),
        bootstrap=s.kafka_bootstrap,
        topic=s.topic_articles,
        rate=per_min / 60,
    )
    wait_stored(engine, offer_prefix, articles, 600, report=report, poll_s=1.0)
    with engine.connect() as conn:
        lat = [
            float(r[0])
            for r in conn.execute(
                text(
                    f"SELECT EXTRACT(EPOCH FROM ({committed} - a.enqueued_at)) "
                    "FROM predictions p JOIN articles a ON a.id = p.article_id "
                    "WHERE p.article_id LIKE :p"
                ),
                {"p": offer_prefix + "-%"},
            )
        ]
    return OfferedFigures(
        latencies_s=lat,
        unique=prediction_counts(engine, offer_prefix)[1],
        counts=stream_counts(engine, offer_prefix),
    )


def bench_result(
    settings: Settings,
    *,
    clf: Classifier,
    ceiling: float,
    drain: DrainFigures,
    offered: OfferedFigures,
    articles: int,
    offered_per_min: float,
    offered_articles: int,
    workers: int,
) -> BenchResult:
    """The figures of the three measurements, with what they were measured on."""
    arr = np.array(offered.latencies_s) if offered.latencies_s else None
    cores = os.cpu_count() or 1
    counts = [drain.counts] + ([offered.counts] if offered.counts is not None else [])
    return BenchResult(
        machine=machine_description(),
        model_version=clf.version,
        model_graph=clf.graph.name,
        articles=articles,
        model_only_per_s=ceiling,
        drain_seconds=drain.seconds,
        drain_per_min=drain.per_min,
        efficiency=(drain.per_min / 60) / ceiling,
        offered_rate_per_min=offered_per_min,
        offered_articles=offered_articles,
        latency_p50_s=None if arr is None else float(np.percentile(arr, 50)),
        latency_p95_s=None if arr is None else float(np.percentile(arr, 95)),
        latency_max_s=None if arr is None else float(np.max(arr)),
        lost=(articles - drain.unique) + (offered_articles - offered.unique),
        duplicates=sum(c.redelivered + c.conflicts for c in counts),
        batch_size=settings.batch_max_size,
        workers=workers,
        partitions=settings.articles_partitions,
        cpu_count=cores,
        ort_threads=settings.ort_threads,
        worker_cpu_s=drain.worker_cpu_s,
        articles_per_cpu_s=articles / drain.worker_cpu_s if drain.worker_cpu_s > 0 else 0.0,
        drain_per_min_per_core=drain.per_min / cores,
    )


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
