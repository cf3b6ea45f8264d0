"""How much of a stream (article ids ``<prefix>-<n>``) is stored: shared by the benchmark,
the fault suite and the demo."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from sqlalchemy import Engine, text


def prediction_counts(engine: Engine, prefix: str) -> tuple[int, int]:
    """(prediction rows, distinct articles) of the stream; the difference is duplicates."""
    with engine.connect() as conn:
        rows, distinct = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT article_id) FROM predictions "
                "WHERE article_id LIKE :p"
            ),
            {"p": f"{prefix}-%"},
        ).one()
    return int(rows), int(distinct)


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
