"""End-to-end benchmark of the streaming path on real Kafka and Postgres.

Three measurements, in one run, on the same model and texts:

1. **model only**: the classifier alone on the benchmark texts in batches of the worker's
   batch size (the ceiling).
2. **drain**: N articles are produced up front, then one worker is started and timed until
   every one is stored; throughput = N / time from first to last stored prediction.
   efficiency = drain throughput / model-only throughput.
3. **offered load**: articles offered at a fixed rate (default 1000/min) to a running worker;
   latency = time from the Kafka message timestamp to the committed row (p50/p95/max).

Lost = produced and never stored; duplicates = articles processed more than once
(redeliveries counted by the sink) plus id conflicts: see :mod:`pipeline.proof.stored`.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
from pipeline.proof.stored import prediction_counts, stream_counts, wait_stored
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
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    lost: int
    duplicates: int
    batch_size: int

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


def model_only_rate(clf: Classifier, texts: Sequence[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        clf.predict(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


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
) -> BenchResult:
    from pipeline.stack.kafka import create_topics

    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(
        update={
            "topic_articles": f"bench-{tag}-articles",
            "topic_dlq": f"bench-{tag}-dlq",
            "topic_predictions": f"bench-{tag}-predictions",
            "worker_name": f"bench-{tag}",
        }
    )
    create_topics(
        s.kafka_bootstrap,
        {s.topic_articles: settings.articles_partitions, s.topic_dlq: 1, s.topic_predictions: 8},
    )
    clf = Classifier.load(model_dir)
    texts = [f"{r.title} {r.body}".strip() for r in rows[: min(len(rows), 2000)]]
    report(f"model only: {len(texts)} texts, batch {settings.batch_max_size} ...")
    ceiling = model_only_rate(clf, texts, settings.batch_max_size)
    report(f"  {ceiling:.1f} articles/s")

    drain_prefix = f"bd{tag}"
    report(f"drain: producing {articles} articles, then starting one worker ...")
    produce(
        article_messages(rows, limit=articles, loop=True, run_id=drain_prefix),
        bootstrap=s.kafka_bootstrap,
        topic=s.topic_articles,
        rate=0,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    proc = start_worker(s, model_dir, workdir / f"bench-worker-{tag}.log")
    try:
        wait_stored(engine, drain_prefix, articles, 1800, report=report, poll_s=1.0)
        with engine.connect() as conn:
            first, last = conn.execute(
                text(
                    "SELECT min(predicted_at), max(predicted_at) FROM predictions "
                    "WHERE article_id LIKE :p"
                ),
                {"p": drain_prefix + "-%"},
            ).one()
        # the first batch's latency includes the consumer group join; count from its end
        drain_s = max(1e-3, (last - first).total_seconds())
        drain_total, drain_unique = prediction_counts(engine, drain_prefix)
        report(f"  {drain_total} stored in {drain_s:.1f}s")

        offer_prefix = f"bo{tag}"
        report(f"offered load: {offered_articles} articles at {offered_per_min:.0f}/min ...")
        produce(
            article_messages(rows, limit=offered_articles, loop=True, run_id=offer_prefix),
            bootstrap=s.kafka_bootstrap,
            topic=s.topic_articles,
            rate=offered_per_min / 60,
        )
        wait_stored(engine, offer_prefix, offered_articles, 600, report=report, poll_s=1.0)
        committed = committed_at_sql(engine)
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
        offer_unique = prediction_counts(engine, offer_prefix)[1]
        drain_counts = stream_counts(engine, drain_prefix)
        offer_counts = stream_counts(engine, offer_prefix)
    finally:
        stop_worker(proc)
    arr = np.array(lat) if lat else np.array([float("nan")])
    drain_rate = (drain_total - settings.batch_max_size) / drain_s * 60
    return BenchResult(
        machine=machine_description(),
        model_version=clf.version,
        model_graph=clf.graph.name,
        articles=articles,
        model_only_per_s=ceiling,
        drain_seconds=drain_s,
        drain_per_min=drain_rate,
        efficiency=(drain_rate / 60) / ceiling,
        offered_rate_per_min=offered_per_min,
        offered_articles=offered_articles,
        latency_p50_s=float(np.percentile(arr, 50)),
        latency_p95_s=float(np.percentile(arr, 95)),
        latency_max_s=float(np.max(arr)),
        lost=(articles - drain_unique) + (offered_articles - offer_unique),
        duplicates=sum(c.redelivered + c.conflicts for c in (drain_counts, offer_counts)),
        batch_size=settings.batch_max_size,
    )


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
