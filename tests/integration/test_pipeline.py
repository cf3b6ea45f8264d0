"""End to end with real Kafka, Postgres and worker processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.datasets import load_dataset
from pipeline.core.settings import Settings
from pipeline.malformed import BAD_KINDS, bad_messages
from pipeline.produce import Outgoing, article_messages, produce
from pipeline.stack import postgres
from tests.conftest import free_port
from tests.integration.helpers import Worker, prediction_counts, read_topic, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: Settings, topics: Settings) -> Settings:
    return topics.model_copy(update={"pg_database": db.pg_database, "review_uniform_share": 0.05})


@pytest.fixture
def workers(env: Settings, tiny_bert: Path, tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started  # tests start workers with `spawn`
    for w in started:
        w.stop()


def spawn(workers: list[Worker], env: Settings, model: Path, tmp_path: Path) -> Worker:
    w = Worker(env, model, free_port(), tmp_path / f"worker{len(workers)}.log")
    workers.append(w)
    w.wait_ready()
    return w


def test_2000_articles_in_2000_rows_and_bad_input_to_dlq(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    spawn(workers, env, tiny_bert, tmp_path)
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)[:2000]
    good = list(article_messages(rows, limit=2000, loop=False, run_id="e2e"))
    bad = {k: bad_messages(f"bad-{k}", env.max_message_bytes)[k] for k in BAD_KINDS}
    extra = Outgoing(
        b"e2e-unknown",
        json.dumps({"id": "e2e-unknown", "title": "Kept", "unknown_field": [1, 2]}).encode(),
    )
    msgs = (
        good[:1000]
        + [Outgoing(f"bad-{k}".encode(), v) for k, (v, _) in bad.items()]
        + [extra]
        + good[1000:]
    )
    stats = produce(iter(msgs), bootstrap=env.kafka_bootstrap, topic=env.topic_articles, rate=0)
    assert stats.failed == 0

    wait_for(lambda: prediction_counts(env, "e2e")[0] >= 2001, 180, "2001 predictions")
    time.sleep(2)
    assert prediction_counts(env, "e2e") == (2001, 2001)

    dead = read_topic(env, env.topic_dlq, expect=len(bad))
    assert len(dead) == len(bad)
    got = {key.decode(): rec["reason"] for key, rec in dead if key}
    assert got == {f"bad-{k}": reason.value for k, (_, reason) in bad.items()}
    for _, rec in dead:
        assert rec["detail"] and rec["rejected_at"] and rec["offset"] >= 0

    published = read_topic(env, env.topic_predictions, expect=2001)
    assert len(published) == 2001
    assert workers[0].metric("newsflow_dead_letters_total") == len(bad)
    assert workers[0].proc.poll() is None  # no input stopped the worker


def test_redelivered_articles_create_no_duplicates(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)[:300]
    msgs = list(article_messages(rows, limit=300, loop=False, run_id="redo"))
    # the same articles twice on the topic: a producer retry
    produce(
        iter(msgs + msgs[:100]), bootstrap=env.kafka_bootstrap, topic=env.topic_articles, rate=0
    )
    spawn(workers, env, tiny_bert, tmp_path)
    wait_for(lambda: prediction_counts(env, "redo")[0] >= 300, 120, "300 predictions")
    workers[0].stop()
    # a whole replay: a new consumer group re-reads every offset of the topic
    replay = env.model_copy(update={"worker_name": env.worker_name + "-replay"})
    w = spawn(workers, replay, tiny_bert, tmp_path)
    wait_for(lambda: w.metric("newsflow_consumed_total") >= 400, 120, "replay consumed")
    time.sleep(1)
    assert prediction_counts(env, "redo") == (300, 300)
    assert w.metric("newsflow_duplicates_total") >= 400


def test_two_workers_split_the_partitions(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    a = spawn(workers, env, tiny_bert, tmp_path)
    b = spawn(workers, env, tiny_bert, tmp_path)
    time.sleep(5)  # let the group settle with two members
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)
    produce(
        article_messages(rows, limit=1200, loop=False, run_id="pair"),
        bootstrap=env.kafka_bootstrap,
        topic=env.topic_articles,
        rate=0,
    )
    wait_for(lambda: prediction_counts(env, "pair")[0] >= 1200, 180, "1200 predictions")
    assert prediction_counts(env, "pair") == (1200, 1200)
    ca, cb = a.metric("newsflow_consumed_total"), b.metric("newsflow_consumed_total")
    assert ca > 0 and cb > 0, (ca, cb)
    assert ca + cb >= 1200


@pytest.mark.serial  # stops the shared PostgreSQL
def test_postgres_stopped_mid_stream_loses_nothing(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    w = spawn(workers, env, tiny_bert, tmp_path)
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)
    n = 1500
    producer = threading.Thread(
        target=produce,
        kwargs={
            "messages": article_messages(rows, limit=n, loop=False, run_id="pgdown"),
            "bootstrap": env.kafka_bootstrap,
            "topic": env.topic_articles,
            "rate": 150.0,
        },
    )
    producer.start()
    wait_for(lambda: prediction_counts(env, "pgdown")[0] >= 200, 60, "first rows")
    assert postgres.stop(env)
    try:
        time.sleep(8)
        assert w.proc.poll() is None
    finally:
        postgres.start(env)
    producer.join(60)
    wait_for(lambda: prediction_counts(env, "pgdown")[0] >= n, 180, f"{n} predictions")
    time.sleep(2)
    assert prediction_counts(env, "pgdown") == (n, n)
    assert w.metric("newsflow_store_retries_total") > 0
