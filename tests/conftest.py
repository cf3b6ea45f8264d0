"""Shared fixtures. Integration tests run against the real local stack (Kafka + Postgres):
the session fixture starts it when it is not up (set NEWSFLOW_TEST_NO_START=1 to forbid that
and fail instead). Each test gets its own database and topic names."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline.core.db.scratch import drop_database
from pipeline.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def data_dir(base_settings: Settings) -> Path:
    path = base_settings.data_dir
    if not (path / "ag_news" / "test.csv.gz").exists():
        pytest.fail(f"datasets not found under {path}; set NEWSFLOW_DATA_DIR to ../shared/data")
    return path


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Settings:
    from pipeline.stack import stack_status, stack_up

    if not all(s.up for s in stack_status(base_settings)):
        if os.environ.get("NEWSFLOW_TEST_NO_START") == "1":
            pytest.fail("the local stack is not up; run `newsflow stack up`")
        stack_up(base_settings)
    return base_settings


def _admin_engine(settings: Settings):  # type: ignore[no-untyped-def]
    return create_engine(
        settings.database_url("postgres"), isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )


@pytest.fixture
def empty_db(stack: Settings) -> Iterator[Settings]:
    """A brand-new, empty database; dropped afterwards."""
    name = f"nf_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(stack)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield stack.model_copy(update={"pg_database": name})
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def db(empty_db: Settings) -> Settings:
    """A fresh database migrated to head."""
    from pipeline.core.db.migrate import upgrade

    upgrade(empty_db.database_url())
    return empty_db


@pytest.fixture
def topics(stack: Settings) -> Iterator[Settings]:
    """Unique topic names (articles with 4 partitions) created for this test."""
    from confluent_kafka.admin import AdminClient

    from pipeline.stack.kafka import ensure_topics

    tag = uuid.uuid4().hex[:8]
    s = stack.model_copy(
        update={
            "topic_articles": f"t-{tag}-articles",
            "topic_dlq": f"t-{tag}-articles.dlq",
            "topic_predictions": f"t-{tag}-predictions",
            "articles_partitions": 4,
            "predictions_partitions": 2,
            "worker_name": f"nf-test-{tag}",
        }
    )
    ensure_topics(s)
    yield s
    AdminClient({"bootstrap.servers": s.kafka_bootstrap}).delete_topics(
        [s.topic_articles, s.topic_dlq, s.topic_predictions]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from retraining.bases.tiny import write_tiny_model_folder

    return write_tiny_model_folder(tmp_path_factory.mktemp("models") / "bert", "bert")


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from retraining.bases.tiny import write_tiny_model_folder

    return write_tiny_model_folder(
        tmp_path_factory.mktemp("models") / "roberta", "roberta", version="tiny-roberta-1"
    )
