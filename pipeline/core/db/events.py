"""Data access for model events (registrations, promotions, rejections, rollbacks,
retraining starts and ends)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from pipeline.core.db.access import Db, connected
from pipeline.core.db.models import ModelEventRow


@dataclasses.dataclass(frozen=True)
class ModelEventSummary:
    """A recent event as ``newsflow status`` shows it."""

    id: int
    at: datetime
    kind: str
    version: str | None
    previous_version: str | None
    reason: str


@dataclasses.dataclass(frozen=True)
class WatchedModelEvent:
    """An event as the demo's watcher reports it."""

    id: int
    kind: str
    version: str | None
    previous_version: str | None
    reason: str


@dataclasses.dataclass(frozen=True)
class ModelEvent:
    """A whole stored event, as the on-call model history shows it."""

    id: int
    at: datetime
    kind: str
    model_name: str
    version: str | None
    previous_version: str | None
    drift_run_id: int | None
    reason: str
    metrics: dict[str, Any]


def record_model_event(
    *,
    engine: Engine,
    kind: str,
    model_name: str,
    version: str | None,
    previous_version: str | None = None,
    reason: str = "",
    metrics: dict[str, Any] | None = None,
    drift_run_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """Store one event, at ``at`` (default: the database's clock)."""
    with engine.begin() as conn:
        new_id = conn.execute(
            insert(ModelEventRow).returning(ModelEventRow.id),
            {
                "kind": kind,
                "model_name": model_name,
                "version": version,
                "previous_version": previous_version,
                "reason": reason,
                "metrics": metrics or {},
                "drift_run_id": drift_run_id,
                **({"at": at} if at is not None else {}),
            },
        ).scalar_one()
    return int(new_id)


def count_model_events_since(db: Db, *, kind: str, model_name: str, since: datetime) -> int:
    """Events of ``kind`` for ``model_name`` at or after ``since``."""
    with connected(db) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(ModelEventRow)
                .where(
                    ModelEventRow.kind == kind,
                    ModelEventRow.at >= since,
                    ModelEventRow.model_name == model_name,
                )
            ).scalar_one()
        )


def recent_model_events(db: Db, limit: int = 8) -> list[ModelEventSummary]:
    """The latest ``limit`` events of every model name, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, at, kind, version, previous_version, reason FROM model_events "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [ModelEventSummary(*r) for r in rows]


def model_events_after(db: Db, after: int, *, model_name: str) -> list[WatchedModelEvent]:
    """Events of ``model_name`` with an id above ``after``, oldest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, kind, version, previous_version, reason FROM model_events "
                "WHERE id > :after AND model_name = :name ORDER BY id"
            ),
            {"after": after, "name": model_name},
        ).all()
    return [WatchedModelEvent(*r) for r in rows]


def max_model_event_id(db: Db) -> int:
    """The highest event id (0 when there is none)."""
    with connected(db) as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM model_events")).scalar_one())


def list_model_events(db: Db, *, limit: int = 100) -> list[ModelEvent]:
    """The latest ``limit`` whole events of every model name, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, at, kind, model_name, version, previous_version, drift_run_id, "
                "reason, metrics FROM model_events ORDER BY id DESC LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [ModelEvent(*r) for r in rows]


@dataclasses.dataclass(frozen=True)
class LiveAccuracy:
    """A version's accuracy on the uniformly reviewed live items of the live check that
    promoted it (``metrics["live_check"]`` of its latest ``promoted`` event)."""

    accuracy: float
    n: int
    event_id: int
    # (correct, items) by the reviewers' topic; empty where the event predates it
    by_topic: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


def read_topic_counts(raw: object) -> dict[str, tuple[int, int]]:
    """``metrics["live_check"]["challenger_by_topic"]`` as counts; a malformed entry (a
    hand-edited event) makes the whole mapping empty: no evidence rather than a failed check."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, tuple[int, int]] = {}
    for topic, pair in raw.items():
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            and 0 <= pair[0] <= pair[1]
        ):
            return {}
        out[str(topic)] = (pair[0], pair[1])
    return out


def promoted_live_accuracy(db: Db, *, version: str) -> LiveAccuracy | None:
    """The live check's accuracy for ``version`` (the served version string, recorded as
    ``metrics["model_version"]``, or the registry's) at its latest promotion; None when it
    was not promoted through a live check that measured one."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                "SELECT id, metrics->'live_check'->>'challenger_accuracy', "
                "metrics->'live_check'->>'n_reviewed', "
                "metrics->'live_check'->'challenger_by_topic' FROM model_events "
                "WHERE kind = 'promoted' AND (metrics->>'model_version' = :v OR version = :v) "
                "AND metrics->'live_check'->>'challenger_accuracy' IS NOT NULL "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"v": version},
        ).first()
    if row is None or row[2] is None:
        return None
    try:
        accuracy, n = float(row[1]), int(row[2])
    except ValueError:  # a hand-edited event: no evidence rather than a failed check
        return None
    if not (0.0 <= accuracy <= 1.0) or n <= 0:
        return None
    return LiveAccuracy(accuracy, n, int(row[0]), read_topic_counts(row[3]))
