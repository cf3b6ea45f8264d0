"""How much of a stream (article ids ``<prefix>-<n>``) is stored and how often it was
processed: shared by the benchmark, the fault suite, the soak, ``newsflow run`` and the
demo. (Latency to the committed row: ``pipeline.core.db.predictions.committed_at_sql``.)

Every figure here can show a failure. ``redelivered`` is the sum over articles of the
deliveries beyond the first (a message with the same id and text processed again after a
crash or rebalance: the sink counts it in ``articles.deliveries``); ``conflicts`` are
messages that reused a stored id with other text. Rows per (article, model version) are
unique by the schema, so they are not counted: they cannot differ from 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

from sqlalchemy import Engine

from pipeline.core.db.articles import count_stream_redeliveries
from pipeline.core.db.predictions import count_stream_predictions


@dataclasses.dataclass(frozen=True)
class StreamCounts:
    stored: int  # distinct articles of the stream with a prediction
    redelivered: int  # processings beyond the first, summed over articles
    conflicts: int  # messages that reused a stored id with another text


def stream_counts(engine: Engine, prefix: str) -> StreamCounts:
    stored = count_stream_predictions(engine, prefix=prefix).articles
    deliveries = count_stream_redeliveries(engine, prefix=prefix)
    return StreamCounts(stored, deliveries.redelivered, deliveries.conflicts)


def prediction_counts(engine: Engine, prefix: str) -> tuple[int, int]:
    """(prediction rows, distinct articles) of the stream."""
    counted = count_stream_predictions(engine, prefix=prefix)
    return counted.rows, counted.articles


def wait_stored(
    engine: Engine,
    prefix: str,
    n: int,
    timeout_s: float,
    *,
    report: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> float:
    """Wait until ``n`` distinct articles of the stream are stored (database errors count
    as "not yet": it may be coming back); returns the seconds waited."""
    started = time.monotonic()
    last = -1
    while time.monotonic() - started < timeout_s:
        distinct = -1
        with contextlib.suppress(Exception):
            distinct = prediction_counts(engine, prefix)[1]
        if distinct >= n:
            break
        if report is not None and distinct != last and distinct >= 0:
            report(f"  stored {distinct}/{n}")
            last = distinct
        time.sleep(poll_s)
    return time.monotonic() - started
