"""Replay a labelled dataset into the `articles` topic at a set rate (the producer side).

Example:
    newsflow produce ag_news --rate 1000/min --limit 5000 --bad-share 0.01
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from pipeline.core.datasets import LabelledText
from pipeline.malformed import BAD_KINDS, bad_messages

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")


def parse_rate(text: str) -> float:
    """'1000/min' -> messages per second. '0' or 'max' -> unlimited (0.0)."""
    if text.strip() in {"0", "max", "unlimited"}:
        return 0.0
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"rate {text!r} is not like 1000/min, 50/s or 20000/hour")
    per = {
        "s": 1,
        "sec": 1,
        "second": 1,
        "m": 60,
        "min": 60,
        "minute": 60,
        "h": 3600,
        "hour": 3600,
    }[m.group(2)]
    return float(m.group(1)) / per


@dataclasses.dataclass(frozen=True)
class Outgoing:
    key: bytes | None
    value: bytes
    bad_kind: str | None = None
    label: str | None = None


def article_messages(
    rows: Sequence[LabelledText],
    *,
    limit: int | None,
    loop: bool,
    run_id: str | None = None,
    bad_share: float = 0.0,
    max_bytes: int = 256 * 1024,
    seed: int = 0,
) -> Iterator[Outgoing]:
    """Articles as JSON with unique ids (``<run>-<n>``), mixed with malformed ones."""
    run = run_id or uuid.uuid4().hex[:8]
    rng = random.Random(seed)
    source = itertools.cycle(rows) if loop else iter(rows)
    for n, row in enumerate(source):
        if limit is not None and n >= limit:
            return
        ident = f"{run}-{n}"
        if bad_share and rng.random() < bad_share:
            kind = BAD_KINDS[rng.randrange(len(BAD_KINDS))]
            value, _ = bad_messages(ident, max_bytes)[kind]
            yield Outgoing(ident.encode(), value, bad_kind=kind)
            continue
        doc = {
            "id": ident,
            "title": row.title,
            "body": row.body,
            "source": "replay",
            "language": "en",
        }
        yield Outgoing(ident.encode(), json.dumps(doc).encode(), label=row.label)


@dataclasses.dataclass
class ProduceStats:
    sent: int = 0
    bad: int = 0
    failed: int = 0
    seconds: float = 0.0


FLUSH_S = 330.0  # a little beyond the producer's 300 s delivery timeout


def produce(
    messages: Iterator[Outgoing],
    *,
    bootstrap: str,
    topic: str,
    rate: float,
    on_progress: Callable[[int], None] | None = None,
) -> ProduceStats:
    """Send with delivery reports; pace to ``rate`` msg/s (0 = as fast as possible)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.max.bytes": 16 * 1024 * 1024,
            "compression.type": "lz4",
        }
    )
    stats = ProduceStats()

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            stats.failed += 1

    start = time.monotonic()
    for i, out in enumerate(messages):
        if rate:
            due = start + i / rate
            # poll() returns early whenever a delivery report is served: loop until due
            while (delay := due - time.monotonic()) > 0:
                producer.poll(delay)
        while True:
            try:
                producer.produce(topic, key=out.key, value=out.value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        stats.sent += 1
        stats.bad += out.bad_kind is not None
        producer.poll(0)
        if on_progress:
            on_progress(1)
    # Wait out librdkafka's own delivery timeout (message.timeout.ms, 300 s): every message
    # then has a definite outcome. A 60 s cut dropped 648 messages still queued while a
    # restarted broker came back (the fault suite's kafka_restart case, under load).
    remaining = producer.flush(FLUSH_S)
    stats.failed += remaining
    stats.seconds = time.monotonic() - start
    return stats
