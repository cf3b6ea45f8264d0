"""Data access for ``alerts`` (the state of each of newsflow's own alert conditions) and
``alert_deliveries`` (the webhook outbox, then a short log of what became of each
notification). The rules live in :mod:`monitoring.alerts`; the HTTP side in
:mod:`monitoring.alert_delivery`.

A state change and the notification it causes are written in one transaction
(:func:`save_alert`), so a crash never loses one without the other. A new notification for a
key supersedes that key's pending one (the receiver needs the latest state, not the history),
which keeps the outbox at most one row per key; finished rows beyond the last
:data:`KEEP_LOG` per key are deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from pipeline.core.db.access import Db, connected
from pipeline.core.db.models import AlertDeliveryRow, AlertRow

KEEP_LOG = 20  # finished deliveries kept per key
ALERTS_LOCK = 0x616C7274  # "alrt"


@dataclasses.dataclass(frozen=True)
class AlertState:
    """One condition's state: the current (or last) episode and what the receiver knows."""

    key: str
    severity: str
    status: str  # firing | resolved
    summary: str
    details: dict[str, Any]
    first_seen: datetime  # start of the current (or last) firing episode
    last_seen: datetime
    resolved_at: datetime | None = None
    last_notified: datetime | None = None
    notified_status: str | None = None  # what the receiver was last told
    notification_count: int = 0
    silenced_until: datetime | None = None
    silenced_by: str | None = None


@dataclasses.dataclass(frozen=True)
class NewDelivery:
    status: str  # firing | resolved
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime


@dataclasses.dataclass(frozen=True)
class Delivery:
    id: int
    alert_key: str
    status: str
    state: str  # pending | delivered | expired | superseded
    payload: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime
    attempts: int
    last_http_status: int | None
    last_error: str
    finished_at: datetime | None


@dataclasses.dataclass(frozen=True)
class AlertOverview:
    """A row of the on-call page: the state, pending deliveries and the latest delivery."""

    state: AlertState
    pending: int
    last_delivery: Delivery | None


_ALERT_COLUMNS = (
    "key, severity, status, summary, details, first_seen, last_seen, resolved_at, "
    "last_notified, notified_status, notification_count, silenced_until, silenced_by"
)
_DELIVERY_COLUMNS = (
    "id, alert_key, status, state, payload, created_at, next_attempt_at, expires_at, "
    "attempts, last_http_status, last_error, finished_at"
)


def _state(row: Row[Any]) -> AlertState:
    return AlertState(**row._mapping)


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(**row._mapping)


@contextlib.contextmanager
def serialized(engine: Engine) -> Iterator[None]:
    """Hold the alerts' advisory lock (blocking; held for milliseconds): a drift check, a
    retraining and the delivery passes of several hosts never decide on the same state at
    once, so none sends a notice twice."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ALERTS_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ALERTS_LOCK})
            conn.commit()


def get_alert(db: Db, *, key: str) -> AlertState | None:
    with connected(db) as conn:
        row = conn.execute(
            text(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE key = :k"), {"k": key}
        ).first()
    return _state(row) if row else None


def list_alert_states(db: Db) -> list[AlertState]:
    with connected(db) as conn:
        rows = conn.execute(text(f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY key")).all()
    return [_state(r) for r in rows]


def save_alert(engine: Engine, *, state: AlertState, delivery: NewDelivery | None) -> None:
    """Upsert ``state``; with ``delivery``, supersede the key's pending notification and
    queue this one (one transaction)."""
    values = dataclasses.asdict(state)
    with engine.begin() as conn:
        stmt = pg_insert(AlertRow).values(**values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={k: stmt.excluded[k] for k in values if k != "key"},
            )
        )
        if delivery is None:
            return
        conn.execute(
            text(
                "UPDATE alert_deliveries SET state = 'superseded', finished_at = :at "
                "WHERE alert_key = :k AND state = 'pending'"
            ),
            {"k": state.key, "at": delivery.created_at},
        )
        conn.execute(
            insert(AlertDeliveryRow).values(
                alert_key=state.key,
                status=delivery.status,
                state="pending",
                payload=delivery.payload,
                created_at=delivery.created_at,
                next_attempt_at=delivery.created_at,
                expires_at=delivery.expires_at,
            )
        )
        conn.execute(
            text(
                "DELETE FROM alert_deliveries WHERE alert_key = :k AND state <> 'pending' "
                "AND id NOT IN (SELECT id FROM alert_deliveries WHERE alert_key = :k "
                "AND state <> 'pending' ORDER BY id DESC LIMIT :keep)"
            ),
            {"k": state.key, "keep": KEEP_LOG},
        )


def set_silence(engine: Engine, *, key: str, until: datetime | None, by: str | None) -> bool:
    """Silence ``key`` until ``until`` (None lifts it); False when there is no such alert."""
    with engine.begin() as conn:
        found = conn.execute(
            text("UPDATE alerts SET silenced_until = :u, silenced_by = :b WHERE key = :k"),
            {"k": key, "u": until, "b": by},
        ).rowcount
    return bool(found)


def claim_due_delivery(engine: Engine, *, now: datetime, lease: timedelta) -> Delivery | None:
    """The oldest pending delivery that is due, leased for ``lease`` (its next attempt moved
    past it), so a second delivery pass, here or on another host, skips it meanwhile."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "UPDATE alert_deliveries SET next_attempt_at = :until WHERE id = ("
                "SELECT id FROM alert_deliveries WHERE state = 'pending' "
                "AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT 1 "
                "FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_DELIVERY_COLUMNS}"
            ),
            {"now": now, "until": now + lease},
        ).first()
    return _delivery(row) if row else None


def record_attempt(
    engine: Engine,
    *,
    delivery_id: int,
    at: datetime,
    delivered: bool,
    http_status: int | None,
    error: str,
    next_attempt_at: datetime | None,
) -> None:
    """One attempt's outcome: delivered, pending again at ``next_attempt_at``, or expired
    (not delivered and no next attempt). A delivery superseded meanwhile stays superseded."""
    state = "delivered" if delivered else "pending" if next_attempt_at else "expired"
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE alert_deliveries SET attempts = attempts + 1, state = :state, "
                "last_http_status = :http, last_error = :error, "
                "next_attempt_at = coalesce(:next, next_attempt_at), "
                "finished_at = :finished "
                "WHERE id = :id AND state = 'pending'"
            ),
            {
                "id": delivery_id,
                "state": state,
                "http": http_status,
                "error": error[:2000],
                "next": next_attempt_at,
                "finished": None if state == "pending" else at,
            },
        )


def expire_delivery(engine: Engine, *, delivery_id: int, at: datetime) -> None:
    """Give up on a pending delivery whose retry window is over (no attempt made)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE alert_deliveries SET state = 'expired', finished_at = :at, "
                "last_error = CASE WHEN last_error = '' THEN 'retry window over' "
                "ELSE last_error END WHERE id = :id AND state = 'pending'"
            ),
            {"id": delivery_id, "at": at},
        )


def list_deliveries(db: Db, *, key: str | None = None, limit: int = 100) -> list[Delivery]:
    """Deliveries, newest first (``key``: of one alert)."""
    where = "WHERE alert_key = :k" if key is not None else ""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries {where} "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"k": key, "n": limit},
        ).all()
    return [_delivery(r) for r in rows]


def list_alerts(db: Db) -> list[AlertOverview]:
    """Every alert with its pending count and latest delivery (the on-call page)."""
    with connected(db) as conn:
        states = list_alert_states(conn)
        pending: dict[str, int] = {
            str(r[0]): int(r[1])
            for r in conn.execute(
                text(
                    "SELECT alert_key, count(*) FROM alert_deliveries "
                    "WHERE state = 'pending' GROUP BY alert_key"
                )
            ).all()
        }
        latest = {
            d.alert_key: d
            for d in (
                _delivery(r)
                for r in conn.execute(
                    text(
                        f"SELECT DISTINCT ON (alert_key) {_DELIVERY_COLUMNS} "
                        "FROM alert_deliveries ORDER BY alert_key, id DESC"
                    )
                ).all()
            )
        }
    return [AlertOverview(s, pending.get(s.key, 0), latest.get(s.key)) for s in states]
