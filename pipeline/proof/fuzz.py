"""The fuzz campaign of `newsflow faults` (case ``fuzz``): seeded random mutations of valid
messages sent to a running worker in rounds, each round followed by a canary article that
must be stored within ``CANARY_TARGET_S``; afterwards every mutation must be found stored
(by its Kafka partition and offset), as a recorded id conflict, or in the dead-letter topic
(by partition and offset, never as ``internal_error``)."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from typing import Any

from sqlalchemy import Engine, text

from pipeline.core.settings import Settings
from pipeline.proof.badinput import fuzz_message

CANARY_TARGET_S = 5.0


@dataclasses.dataclass
class FuzzOutcome:
    sent: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)  # pos -> kind
    canary_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def canary_max_s(self) -> float:
        return max(self.canary_s, default=0.0)


def _stored(engine: Engine, ident: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT 1 FROM predictions WHERE article_id = :i"), {"i": ident}
            ).first()
            is not None
        )


def run_fuzz(
    settings: Settings,
    engine: Engine,
    count: int,
    *,
    tag: str,
    seed: int = 0,
    round_size: int = 50,
    partitions: int = 8,
) -> FuzzOutcome:
    """Send ``count`` mutations in rounds of ``round_size``, a canary after each round."""
    from confluent_kafka import Producer

    rng = random.Random(seed)
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "message.max.bytes": 2_000_000}
    )
    out = FuzzOutcome()
    landed: list[tuple[str, int, int]] = []

    def delivered(kind: str) -> Any:
        def done(err: Any, msg: Any) -> None:
            if err is None:
                landed.append((kind, msg.partition(), msg.offset()))

        return done

    for r in range(0, count, round_size):
        part = (r // round_size) % partitions
        for i in range(r, min(count, r + round_size)):
            kind, key, value = fuzz_message(rng, f"fz{tag}-{i}", settings.max_message_bytes)
            producer.produce(
                settings.topic_articles,
                key=key,
                value=value,
                partition=part,
                on_delivery=delivered(kind),
            )
            producer.poll(0)
        canary = f"cn{tag}-{r}"
        doc = {"id": canary, "title": "Canary", "body": "Markets open higher."}
        producer.produce(
            settings.topic_articles, key=canary.encode(), value=json.dumps(doc), partition=part
        )
        producer.flush(30)
        start = time.monotonic()
        while not _stored(engine, canary) and time.monotonic() - start < 60:
            time.sleep(0.05)
        out.canary_s.append(round(time.monotonic() - start, 3))
    producer.flush(30)
    out.sent = {(p, o): kind for kind, p, o in landed}
    return out


@dataclasses.dataclass(frozen=True)
class FuzzAccount:
    sent: int
    stored: int
    conflicts: int
    dead: int
    unaccounted: int
    internal_errors: int
    reasons: dict[str, int]
    kinds: dict[str, int]


def account(
    engine: Engine, topic: str, outcome: FuzzOutcome, dead_letters: list[tuple[str, bytes]]
) -> FuzzAccount:
    """Where each mutation ended: stored, conflict or dead letter (by partition, offset)."""

    def positions(table: str) -> set[tuple[int, int]]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT kafka_partition, kafka_offset FROM {table} WHERE kafka_topic = :t"),
                {"t": topic},
            )
            return {(int(p), int(o)) for p, o in rows if p is not None}

    stored, conflicts = positions("articles"), positions("article_conflicts")
    dead: dict[tuple[int, int], str] = {}
    for _, value in dead_letters:
        try:
            rec = json.loads(value)
            dead[(int(rec["partition"]), int(rec["offset"]))] = str(rec["reason"])
        except (ValueError, KeyError, TypeError):
            continue
    mine = set(outcome.sent)
    s, c = mine & stored, mine & conflicts
    d = {p: r for p, r in dead.items() if p in mine}
    reasons = Counter(d.values())
    return FuzzAccount(
        sent=len(mine),
        stored=len(s),
        conflicts=len(c),
        dead=len(d),
        unaccounted=len(mine - s - c - set(d)),
        internal_errors=reasons.get("internal_error", 0),
        reasons=dict(reasons),
        kinds=dict(Counter(outcome.sent.values())),
    )
