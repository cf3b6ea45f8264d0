from __future__ import annotations

import json

import pytest

from pipeline.core.datasets import LabelledText
from pipeline.produce import article_messages, parse_rate


def test_parse_rate() -> None:
    assert parse_rate("1000/min") == pytest.approx(1000 / 60)
    assert parse_rate("50/s") == 50
    assert parse_rate("3600/hour") == 1
    assert parse_rate("0") == 0.0
    with pytest.raises(ValueError, match="not like"):
        parse_rate("fast")


def test_messages_have_unique_ids_and_loop() -> None:
    rows = [LabelledText("a", "T", "B", "World"), LabelledText("b", "T2", "B2", "Sports")]
    out = list(article_messages(rows, limit=5, loop=True, run_id="r"))
    ids = [json.loads(o.value)["id"] for o in out]
    assert ids == ["r-0", "r-1", "r-2", "r-3", "r-4"]
    assert out[2].label == "World"


def test_bad_share_mixes_in_malformed() -> None:
    rows = [LabelledText("a", "T", "B", "World")]
    out = list(article_messages(rows, limit=1000, loop=True, run_id="r", bad_share=0.2, seed=1))
    bad = [o for o in out if o.bad_kind]
    assert 150 < len(bad) < 250
    assert len({o.bad_kind for o in bad}) >= 12


@pytest.mark.integration
def test_rate_is_respected(stack) -> None:  # type: ignore[no-untyped-def]
    """Pacing holds even while delivery reports wake the producer up (real broker)."""
    import time

    from pipeline.produce import Outgoing, produce

    msgs = (Outgoing(f"r{i}".encode(), b"{}") for i in range(40))
    start = time.monotonic()
    stats = produce(msgs, bootstrap=stack.kafka_bootstrap, topic=stack.topic_dlq, rate=20.0)
    elapsed = time.monotonic() - start
    assert stats.sent == 40 and stats.failed == 0
    assert 1.9 <= elapsed < 4.0  # 40 messages at 20/s: the last is due at 1.95 s
