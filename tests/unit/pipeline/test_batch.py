"""The worker's batch handling, driven directly: a real tiny ONNX model, a real scratch
database (the integration tests), and in-memory outlets that record what was sent to which
topic. Failures are real too: a closed port for a database outage, a CHECK constraint for a
row Postgres refuses, a model session that raises on one input."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from pipeline.batch import BatchHandler, BatchOutcome, Outlets, Pair, RawMessage
from pipeline.core.db.engine import make_engine
from pipeline.core.records import DeadLetterReason
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from pipeline.delivery import BatchAbandoned, StopGuard
from pipeline.hotswap import ModelHolder
from pipeline.malformed import BAD_KINDS, bad_messages
from pipeline.metrics import WorkerMetrics, build_metrics
from pipeline.proof.badinput import hostile_but_valid
from pipeline.sink import ReviewPolicy, WriteResult, save_batch
from tests.conftest import free_port

TOPIC = "articles"
MAX_BYTES = 256 * 1024
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOSTILE_KINDS = tuple(hostile_but_valid("x", MAX_BYTES))


class Recorder:
    """Stands in for Faust's producer: each send resolves at once; records per topic."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[bytes | None, bytes]]] = {"dlq": [], "predictions": []}

    def outlet(self, topic: str) -> Any:
        async def send(key: bytes | None, value: bytes) -> asyncio.Future[None]:
            self.sent[topic].append((key, value))
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

        return send

    def outlets(self) -> Outlets:
        return Outlets(dead_letters=self.outlet("dlq"), predictions=self.outlet("predictions"))

    def dead(self) -> dict[str, dict[str, Any]]:
        """Dead letters by key."""
        return {(k or b"").decode(): json.loads(v) for k, v in self.sent["dlq"]}

    def predicted_ids(self) -> list[str]:
        return [json.loads(v)["article_id"] for _, v in self.sent["predictions"]]


class Rig:
    """A handler wired to a recorder, with the exit calls and backoff sleeps it made."""

    def __init__(
        self,
        classifier: Classifier,
        engine: Engine,
        save: Any = save_batch,
        on_pause: Any = None,
    ) -> None:
        self.recorder = Recorder()
        self.exits: list[int] = []
        self.sleeps: list[float] = []
        self.metrics: WorkerMetrics = build_metrics()
        self.guard = StopGuard(3600, exit_=self.exits.append)
        self.on_pause = on_pause

        async def pause(seconds: float) -> None:
            self.sleeps.append(seconds)
            if self.on_pause is not None:
                self.on_pause(self)

        self.handler = BatchHandler(
            holder=ModelHolder(classifier),
            engine=engine,
            outlets=self.recorder.outlets(),
            metrics=self.metrics,
            guard=self.guard,
            policy=ReviewPolicy(uniform_share=0.0, uncertain_share=0.0),
            max_message_bytes=MAX_BYTES,
            save=save,
            now=lambda: NOW,
            pause=pause,
            rng=random.Random(0),
        )

    def handle(self, messages: Sequence[RawMessage]) -> BatchOutcome:
        return asyncio.run(self.handler.handle(messages))

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return float(value or 0.0)


def article(ident: str, title: str = "", body: str = "") -> bytes:
    return json.dumps(
        {"id": ident, "title": title or f"Markets rally as {ident} reports", "body": body}
    ).encode()


def batch(values: Sequence[tuple[str, bytes]], start: int = 0) -> list[RawMessage]:
    """(key, value) pairs as one partition's messages at consecutive offsets."""
    return [
        RawMessage(v, k.encode(), TOPIC, 0, start + i, 1_780_000_000_000)
        for i, (k, v) in enumerate(values)
    ]


def good(n: int, prefix: str = "a") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i}", article(f"{prefix}{i}")) for i in range(n)]


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql)))


def stored_ids(engine: Engine) -> list[str]:
    return sorted(r[0] for r in rows(engine, "SELECT article_id FROM predictions"))


@pytest.fixture(scope="module")
def classifier(tiny_bert: Path) -> Classifier:
    return Classifier.load(tiny_bert, threads=1)


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


@pytest.fixture
def dead_engine(base_settings: Settings) -> Iterator[Engine]:
    """An engine whose server is down: connecting is refused (a real OperationalError)."""
    eng = make_engine(base_settings.model_copy(update={"pg_port": free_port()}))
    yield eng
    eng.dispose()


class PoisonedSession:
    """A real ONNX session that fails on any input holding ``poison_id`` (as a model can fail
    on one input); everything else is the session's."""

    def __init__(self, session: Any, poison_id: int) -> None:
        self._session, self._poison = session, poison_id

    def run(self, outputs: Any, feed: Mapping[str, np.ndarray]) -> Any:
        if (feed["input_ids"] == self._poison).any():
            raise RuntimeError("ORT failed on this input")
        return self._session.run(outputs, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.mark.integration
def test_a_good_batch_is_stored_and_published(classifier: Classifier, engine: Engine) -> None:
    rig = Rig(classifier, engine)
    out = rig.handle(batch(good(5)))
    ids = [f"a{i}" for i in range(5)]
    assert stored_ids(engine) == ids
    assert sorted(p.article_id for p in out.stored) == ids and out.dead == []
    assert sorted(rig.recorder.predicted_ids()) == ids and rig.recorder.sent["dlq"] == []
    record = json.loads(rig.recorder.sent["predictions"][0][1])
    assert record["model_version"] == classifier.version
    assert record["topic"] in classifier.labels
    assert len(record["probabilities"]) == len(classifier.labels)
    (labels,) = rows(engine, "SELECT model_version, labels FROM model_labels")
    assert tuple(labels) == (classifier.version, classifier.labels)
    assert rig.metric("newsflow_predicted_total") == 5
    assert rig.metric("newsflow_consumed_total") == 5


@pytest.mark.integration
def test_malformed_and_hostile_messages_are_dead_lettered_and_the_rest_stored(
    classifier: Classifier, engine: Engine
) -> None:
    # each kind under its own key (the kinds with a valid id carry that key as their id)
    bad = {f"bad-{k}": bad_messages(f"bad-{k}", MAX_BYTES)[k] for k in BAD_KINDS}
    hostile = [hostile_but_valid(f"hv-{k}", MAX_BYTES)[k] for k in HOSTILE_KINDS]
    mixed = (
        good(3, "g1")
        + [(key, value) for key, (value, _) in bad.items()]
        + [(k.decode(), v) for k, v in hostile]
        + good(3, "g2")
    )
    rig = Rig(classifier, engine)
    out = rig.handle(batch(mixed))

    dead = rig.recorder.dead()
    assert {key: rec["reason"] for key, rec in dead.items()} == {
        key: reason.value for key, (_, reason) in bad.items()
    }
    for rec in dead.values():
        assert rec["detail"] and rec["topic"] == TOPIC and "original_sha256" in rec
    expected = sorted(
        [k for k, _ in good(3, "g1") + good(3, "g2")] + [k.decode() for k, _ in hostile]
    )
    assert stored_ids(engine) == expected
    assert sorted(rig.recorder.predicted_ids()) == expected
    assert len(out.dead) == len(bad)
    assert rig.metric("newsflow_dead_letters_total", reason="invalid_json") == sum(
        r is DeadLetterReason.INVALID_JSON for _, r in bad.values()
    )


@pytest.mark.integration
def test_a_model_failure_on_one_message_dead_letters_only_that_one(
    tiny_bert: Path, engine: Engine
) -> None:
    clf = Classifier.load(tiny_bert, threads=1)
    (poison_id,) = clf.tokenizer.encode("poison", add_special_tokens=False).ids
    clf.session = PoisonedSession(clf.session, poison_id)
    msgs = [*good(2), ("p0", article("p0", title="poison in the well")), *good(2, "b")]
    rig = Rig(clf, engine)
    out = rig.handle(batch(msgs))

    assert stored_ids(engine) == ["a0", "a1", "b0", "b1"]
    assert sorted(rig.recorder.predicted_ids()) == ["a0", "a1", "b0", "b1"]
    dead = rig.recorder.dead()
    assert list(dead) == ["p0"] and [d.offset for d in out.dead] == [2]
    assert dead["p0"]["reason"] == "internal_error"
    assert "model failed" in dead["p0"]["detail"] and "ORT failed" in dead["p0"]["detail"]
    assert json.loads(dead["p0"]["original"])["id"] == "p0"
    assert rig.metric("newsflow_batch_fallbacks_total", stage="classify") == 1


@pytest.mark.integration
def test_a_database_outage_is_retried_with_backoff_until_it_is_back(
    classifier: Classifier, engine: Engine, dead_engine: Engine
) -> None:
    calls: list[str] = []

    def save(*, engine: Engine, pairs: Sequence[Pair], **kw: Any) -> WriteResult:
        down = len(calls) < 3
        calls.append("down" if down else "up")
        return save_batch(engine=dead_engine if down else engine, pairs=pairs, **kw)

    rig = Rig(classifier, engine, save=save)
    rig.handle(batch(good(4)))

    assert calls == ["down", "down", "down", "up"]
    assert rig.sleeps == sorted(rig.sleeps) and len(rig.sleeps) == 3 and rig.sleeps[0] >= 0.2
    assert stored_ids(engine) == ["a0", "a1", "a2", "a3"]
    assert sorted(rig.recorder.predicted_ids()) == ["a0", "a1", "a2", "a3"]
    assert rig.recorder.sent["dlq"] == [] and rig.exits == []
    assert rig.metric("newsflow_store_retries_total") == 3
    assert rig.metric("newsflow_batch_fallbacks_total", stage="store") == 0


@pytest.mark.integration
def test_a_row_the_database_refuses_dead_letters_only_the_culprit(
    classifier: Classifier, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("ALTER TABLE articles ADD CONSTRAINT no_forbidden CHECK (title <> 'forbidden')")
        )
    msgs = [*good(2), ("f0", article("f0", title="forbidden")), *good(2, "b")]
    rig = Rig(classifier, engine)
    out = rig.handle(batch(msgs))

    assert stored_ids(engine) == ["a0", "a1", "b0", "b1"]
    assert sorted(r[0] for r in rows(engine, "SELECT id FROM articles")) == stored_ids(engine)
    assert sorted(rig.recorder.predicted_ids()) == ["a0", "a1", "b0", "b1"]
    dead = rig.recorder.dead()
    assert list(dead) == ["f0"] and [d.offset for d in out.dead] == [2]
    assert dead["f0"]["reason"] == "store_rejected"
    assert "no_forbidden" in dead["f0"]["detail"]
    assert rig.metric("newsflow_batch_fallbacks_total", stage="store") == 1
    assert rig.metric("newsflow_store_retries_total") == 0  # a data error is not retried
    # the version's label order went in with the first stored message, once
    assert len(rows(engine, "SELECT * FROM model_labels")) == 1


@pytest.mark.integration
def test_a_redelivered_batch_stores_and_publishes_nothing_twice(
    classifier: Classifier, engine: Engine
) -> None:
    msgs = batch(good(4))
    rig = Rig(classifier, engine)
    first = rig.handle(msgs)
    again = rig.handle(msgs)

    assert len(first.stored) == 4 and again.stored == [] and again.dead == []
    assert stored_ids(engine) == ["a0", "a1", "a2", "a3"]
    assert [r[0] for r in rows(engine, "SELECT deliveries FROM articles")] == [2, 2, 2, 2]
    assert sorted(rig.recorder.predicted_ids()) == ["a0", "a1", "a2", "a3"]
    assert rig.metric("newsflow_duplicates_total") == 4
    assert rig.metric("newsflow_predicted_total") == 4


def test_a_stop_during_retries_gives_the_batch_up_unacknowledged(
    classifier: Classifier, dead_engine: Engine
) -> None:
    """The database is down; SIGTERM arrives during the second backoff. The handler gives
    the batch up (the process would exit; here the exit is recorded and the handler raises,
    so the agent's loop body never returns and Faust never acknowledges the batch)."""
    calls: list[int] = []

    def save(**kw: Any) -> WriteResult:
        calls.append(1)
        return save_batch(**{**kw, "engine": dead_engine})

    def stop_on_second_sleep(rig: Rig) -> None:
        if len(rig.sleeps) == 2:
            rig.guard.stopping = True  # as SIGTERM leaves it (without the watchdog)

    rig = Rig(classifier, dead_engine, save=save, on_pause=stop_on_second_sleep)
    with pytest.raises(BatchAbandoned):
        rig.handle(batch(good(3)))

    assert rig.exits == [0]
    assert len(calls) == 2  # no third attempt, and no message-by-message fallback
    assert rig.recorder.sent == {"dlq": [], "predictions": []}
    assert rig.metric("newsflow_batch_fallbacks_total", stage="store") == 0
