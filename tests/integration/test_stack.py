"""The local stack: idempotent start, status, and real clients against the broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from pipeline.core.settings import Settings
from pipeline.stack import stack_status, stack_up

pytestmark = pytest.mark.integration


def test_stack_up_is_idempotent(stack: Settings) -> None:
    before = {s.name: s.pid for s in stack_status(stack)}
    said: list[str] = []
    stack_up(stack, report=said.append)
    after = {s.name: s.pid for s in stack_status(stack)}
    assert before == after and all(after.values())
    assert "postgres: already running" in said
    assert "kafka: already running" in said
    assert any("articles (exists)" in line for line in said)


def test_status_json_from_the_cli(stack: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitoring", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    services = {s["name"]: s for s in json.loads(out.stdout)["services"]}
    assert services["kafka"]["up"] is True and services["kafka"]["port"] == stack.kafka_port
    assert services["postgres"]["up"] is True and services["postgres"]["pid"] > 0


def test_topics_exist_with_configured_partitions(stack: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.topics[stack.topic_articles].partitions) == stack.articles_partitions
    assert stack.topic_dlq in meta.topics and stack.topic_predictions in meta.topics


def test_confluent_and_aiokafka_round_trip_in_a_group(topics: Settings) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": topics.kafka_bootstrap})
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(40)}
    for k, v in sent.items():
        producer.produce(topics.topic_articles, key=k, value=v)
    assert producer.flush(10) == 0

    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(
        {
            "bootstrap.servers": topics.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topics.topic_articles])
    got: dict[bytes, bytes] = {}
    for _ in range(200):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got[msg.key()] = msg.value()
        if len(got) == len(sent):
            break
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == sent

    async def with_aiokafka() -> dict[bytes, bytes]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        prod = AIOKafkaProducer(bootstrap_servers=topics.kafka_bootstrap)
        await prod.start()
        try:
            for i in range(10):
                await prod.send_and_wait(topics.topic_dlq, key=f"a{i}".encode(), value=b"x")
        finally:
            await prod.stop()
        cons = AIOKafkaConsumer(
            topics.topic_dlq,
            bootstrap_servers=topics.kafka_bootstrap,
            group_id=f"a-{group}",
            auto_offset_reset="earliest",
        )
        await cons.start()
        seen: dict[bytes, bytes] = {}
        try:
            while len(seen) < 10:
                batch = await cons.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        seen[r.key] = r.value
        finally:
            await cons.stop()
        return seen

    assert len(asyncio.run(asyncio.wait_for(with_aiokafka(), 60))) == 10
