"""Provisional suggestions on a real database: an admin names a topic, the worker's refresher
stores its prototype in the served model's space within one model poll, and the batches that
follow queue the items near it for review with the name suggested, within the topic's share
of the budget; once reviewers reject them, no more are queued. A tiny random BERT serves (its
embeddings put texts of one template close together), so the test takes seconds."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from monitoring.topics import onboarding
from monitoring.topics.discovery import Candidate
from pipeline.batch import BatchHandler, Outlets, RawMessage
from pipeline.core.db import suggestions as suggestions_db
from pipeline.core.db.engine import make_engine
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from pipeline.delivery import StopGuard
from pipeline.hotswap import ModelHolder
from pipeline.metrics import build_metrics
from pipeline.sink import ReviewPolicy
from pipeline.suggestions import SuggestionHolder, SuggestPolicy, refresh
from pipeline.worker import refresh_suggestions

pytestmark = pytest.mark.integration
TOPIC = "Medicine"
MEDICAL = "Doctors treat patients with a new vaccine against the flu virus case {}"
OTHERS = (
    "Stocks rally as the central bank cuts interest rates quarter {}",
    "The team won the league match with a late goal game {}",
)


async def _sent(key: bytes | None, value: bytes) -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def _batch(items: Sequence[tuple[str, str]], start: int) -> list[RawMessage]:
    return [
        RawMessage(
            json.dumps({"id": i, "title": t, "body": ""}).encode(),
            i.encode(),
            "articles",
            0,
            start + n,
            1_780_000_000_000,
        )
        for n, (i, t) in enumerate(items)
    ]


def _stream(prefix: str, medical: int, others: int) -> list[tuple[str, str]]:
    out = [(f"{prefix}m{i}", MEDICAL.format(f"{prefix}{i}")) for i in range(medical)]
    return out + [(f"{prefix}o{i}", OTHERS[i % 2].format(f"{prefix}{i}")) for i in range(others)]


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _items(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT article_id, reason, priority, suggested_label, suggestion_cosine "
                    "FROM review_items ORDER BY article_id"
                )
            )
        )


def test_naming_a_topic_queues_suggestions_from_the_stream(
    db: Settings, engine: Engine, tiny_bert: Path
) -> None:
    settings = db.model_copy(
        update={
            "model_poll_s": 1.0,
            "topic_suggest_min_cosine": 0.98,
            "topic_suggest_min_answered": 5,
            "review_budget_per_hour": 18,  # x 1 h x 0.5: 9 suggestions pending per topic
            "review_lookahead_hours": 1.0,
            "topic_label_request_share": 0.5,
        }
    )
    policy = SuggestPolicy.from_settings(settings)
    assert policy.cap == 9
    clf = Classifier.load(tiny_bert, threads=1, warmup=False)
    assert clf.has_embedding
    models = ModelHolder(clf)
    holder = SuggestionHolder()
    handler = BatchHandler(
        holder=models,
        engine=engine,
        outlets=Outlets(dead_letters=_sent, predictions=_sent),
        metrics=build_metrics(),
        guard=StopGuard(3600, exit_=lambda code: None),
        policy=ReviewPolicy(uniform_share=0.0, uncertain_share=0.0),
        now=lambda: datetime(2026, 12, 7, 12, tzinfo=UTC),
        rng=random.Random(0),
        suggestions=holder,
        suggest_cap=policy.cap,
    )

    # the stream before anyone named a topic: nothing suggested, no embeddings asked for
    first = _stream("a", medical=6, others=6)
    asyncio.run(handler.handle(_batch(first, 0)))
    assert _items(engine) == []

    # an admin names the cluster of medical articles: its 6 members are queued at once
    [cid] = onboarding.save_discovery(
        engine,
        [
            Candidate(
                members=[i for i, _ in first[:6]],
                size=6,
                separation=0.5,
                nearest_topic="Sci/Tech",
                cohesion=0.9,
                none_of_these=0,
                terms=["doctors", "vaccine"],
                examples=[t for _, t in first[:3]],
            )
        ],
        model_version=clf.version,
    )
    assert onboarding.accept(engine, cid, TOPIC, admin="admin", known_labels=clf.labels) == 6

    # the worker's refresher stores the prototype within one model poll
    stop = threading.Event()
    named_at = time.monotonic()
    thread = threading.Thread(
        target=refresh_suggestions, args=(settings, engine, models, holder, stop), daemon=True
    )
    thread.start()
    try:
        deadline = named_at + 10
        while (holder.current is None or TOPIC not in holder.current.topics) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        started_after = time.monotonic() - named_at
    finally:
        stop.set()
        thread.join(timeout=10)
    assert holder.current is not None and holder.current.topics == (TOPIC,)
    assert started_after <= settings.model_poll_s + 2, started_after
    [proto] = suggestions_db.select_prototypes(engine, model_version=clf.version)
    assert (proto.topic, proto.examples, proto.labelled) == (TOPIC, 6, 0)

    # the next batch: 5 near the named examples, 4 not; 3 fit under the cap (9 - 6 pending)
    asyncio.run(handler.handle(_batch(_stream("b", medical=5, others=4), 100)))
    suggested = suggestions_db.select_suggested(engine, topic=TOPIC)
    assert len(suggested) == 3
    assert all(a.startswith("bm") and c >= 0.98 for a, c in suggested), suggested
    items = {r.article_id: r for r in _items(engine)}
    assert not [a for a in items if a.startswith("bo")]  # nothing far from it
    assert all(items[a].reason == "onboarding" and items[a].priority == -1 for a, _ in suggested)
    assert all(items[a].suggested_label == TOPIC for a, _ in suggested)  # the page shows it

    # a reviewer rejects every suggestion: the worker stops suggesting the topic
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE review_items SET status = 'done', label = 'World', reviewer = 'r', "
                "labelled_at = now() WHERE suggested_label = :t"
            ),
            {"t": TOPIC},
        )
    found = refresh(engine, clf, policy=policy, holder=holder)
    assert found is not None and found.topics == ()
    holder.set(found)
    before = len(_items(engine))
    asyncio.run(handler.handle(_batch(_stream("c", medical=4, others=0), 200)))
    assert len(_items(engine)) == before  # nothing new queued, and nothing stalls
