"""SIGTERM stops a worker within 10 s in every state — database down, broker down, mid-batch —
and acknowledges nothing that was not stored: a new worker on the same consumer group then
stores every article (nothing lost). These tests stop the stack's real Postgres and Kafka."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.datasets import load_dataset
from pipeline.core.settings import Settings
from pipeline.produce import article_messages, produce
from pipeline.stack import kafka, postgres
from tests.conftest import free_port
from tests.integration.helpers import Worker, prediction_counts, wait_for

# serial: stops Kafka and PostgreSQL, so it runs alone after the parallel part
pytestmark = [pytest.mark.integration, pytest.mark.serial]
STOP_LIMIT_S = 10.0


@pytest.fixture
def env(db: Settings, topics: Settings) -> Settings:
    return topics.model_copy(update={"pg_database": db.pg_database})


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop(signal.SIGKILL)


def _spawn(workers: list[Worker], env: Settings, model: Path, tmp_path: Path) -> Worker:
    w = Worker(env, model, free_port(), tmp_path / f"worker{len(workers)}.log")
    workers.append(w)
    w.wait_ready()
    return w


def _sigterm_seconds(w: Worker) -> float:
    start = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    try:
        w.proc.wait(60)
    except Exception:
        w.proc.kill()
        return float("inf")
    return time.monotonic() - start


def _send(env: Settings, rows: list, run_id: str, n: int, rate: float = 0) -> None:  # type: ignore[type-arg]
    stats = produce(
        article_messages(rows, limit=n, loop=False, run_id=run_id),
        bootstrap=env.kafka_bootstrap,
        topic=env.topic_articles,
        rate=rate,
    )
    assert stats.failed == 0


def test_sigterm_with_postgres_down_stops_in_10s_and_loses_nothing(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)
    w = _spawn(workers, env, tiny_bert, tmp_path)
    _send(env, rows, "before", 100)
    wait_for(lambda: prediction_counts(env, "before")[0] >= 100, 60, "first rows")
    assert postgres.stop(env)
    try:
        _send(env, rows[100:], "pgdown", 300)
        wait_for(lambda: w.metric("newsflow_store_retries_total") > 0, 30, "a store retry")
        took = _sigterm_seconds(w)
    finally:
        postgres.start(env)
    assert took <= STOP_LIMIT_S, f"SIGTERM took {took:.1f} s with Postgres down"
    _spawn(workers, env, tiny_bert, tmp_path)  # same consumer group: resumes where acked
    wait_for(lambda: prediction_counts(env, "pgdown")[0] >= 300, 120, "300 rows after restart")
    time.sleep(1)
    assert prediction_counts(env, "pgdown") == (300, 300)
    print(f"SIGTERM with Postgres down: {took:.1f} s")


def test_sigterm_with_kafka_down_stops_in_10s(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)
    w = _spawn(workers, env, tiny_bert, tmp_path)
    _send(env, rows, "kbefore", 100)
    wait_for(lambda: prediction_counts(env, "kbefore")[0] >= 100, 60, "first rows")
    assert kafka.stop(env)
    try:
        time.sleep(3)
        took = _sigterm_seconds(w)
    finally:
        kafka.start(env)
    assert took <= STOP_LIMIT_S, f"SIGTERM took {took:.1f} s with Kafka down"
    _spawn(workers, env, tiny_bert, tmp_path)
    _send(env, rows[100:], "kafter", 100)
    wait_for(lambda: prediction_counts(env, "kafter")[0] >= 100, 120, "rows after restart")
    assert prediction_counts(env, "kbefore") == (100, 100)
    print(f"SIGTERM with Kafka down: {took:.1f} s")


def test_sigterm_mid_stream_stops_in_10s_and_a_restart_loses_nothing(
    env: Settings, data_dir: Path, tiny_bert: Path, workers: list[Worker], tmp_path: Path
) -> None:
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)
    n = 3000
    w = _spawn(workers, env, tiny_bert, tmp_path)
    sender = threading.Thread(target=_send, args=(env, rows, "mid", n, 100.0))
    sender.start()
    wait_for(lambda: prediction_counts(env, "mid")[0] >= 300, 60, "rows flowing")
    took = _sigterm_seconds(w)
    assert took <= STOP_LIMIT_S, f"SIGTERM took {took:.1f} s mid-stream"
    stored_at_stop = prediction_counts(env, "mid")[0]
    w2 = _spawn(workers, env, tiny_bert, tmp_path)
    sender.join(120)
    wait_for(lambda: prediction_counts(env, "mid")[0] >= n, 180, f"{n} rows after restart")
    time.sleep(1)
    assert prediction_counts(env, "mid") == (n, n)
    redelivered = w2.metric("newsflow_duplicates_total")
    print(
        f"SIGTERM mid-stream: {took:.1f} s; {stored_at_stop} stored at the stop, "
        f"{redelivered:.0f} redelivered to the new worker"
    )
