"""Helpers for tests that run real worker processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from pipeline.core.settings import Settings
from pipeline.worker_process import start_worker


class Worker:
    """A real `newsflow worker` process."""

    def __init__(
        self, settings: Settings, model_dir: Path | None, metrics_port: int, log: Path
    ) -> None:
        self.port = metrics_port
        self.log = log
        self.proc = start_worker(settings, model_dir, log, metrics_port=metrics_port)

    def metric(self, name: str) -> float:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read()
        except OSError:
            return -1.0
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def serving(self) -> set[str]:
        """The model versions this worker reports serving (``newsflow_model_info`` = 1)."""
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read()
        except OSError:
            return set()
        return set(re.findall(r'newsflow_model_info\{version="([^"]+)"\} 1\.0', body.decode()))

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: self.metric("newsflow_model_info") >= 1, timeout, f"worker {self.log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def prediction_counts(settings: Settings, prefix: str) -> tuple[int, int]:
    engine = create_engine(settings.database_url())
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT article_id) FROM predictions "
                    "WHERE article_id LIKE :p"
                ),
                {"p": prefix + "%"},
            ).one()
            return int(row[0]), int(row[1])
    except Exception:
        return -1, -1
    finally:
        engine.dispose()


def read_topic(
    settings: Settings, topic: str, expect: int, timeout: float = 60
) -> list[tuple[bytes | None, dict[str, object]]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, dict[str, object]]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append((msg.key(), json.loads(msg.value())))
        # linger briefly to catch any extras beyond what was expected
        end = time.monotonic() + 2
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append((msg.key(), json.loads(msg.value())))
    finally:
        consumer.close()
    return out
