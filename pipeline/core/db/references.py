"""Data access for ``drift_references``: the distributions drift checks compare with (the
model folder's training sample, the champion's first live predictions, an operator's
baseline window), at most one ``active`` per model version; and the time-stamped reads of
``predictions`` and ``articles`` that references and drift windows are built from.

A reference's ``hour_mix`` (topic counts per hour of the week, keys ``"0"`` = Monday
00:00–01:00 UTC … ``"167"``) and ``chunks`` (:class:`ChunkPsi`) are JSONB; the records here
carry them typed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, insert, text

from pipeline.core.db.access import Db, connected
from pipeline.core.db.models import DriftReferenceRow

KINDS = ("training", "live", "baseline")
STATUSES = ("active", "retired", "rejected")


@dataclasses.dataclass(frozen=True)
class ChunkPsi:
    """The reference cut into ``count`` consecutive chunks of ``rows`` rows, each chunk's PSI
    against the whole reference (confidence with ``bins`` quantile bins; topic mix, None when
    the reference has no per-row topics)."""

    rows: int
    bins: int
    confidence: tuple[float, ...]
    topics: tuple[float, ...] | None

    @property
    def count(self) -> int:
        return len(self.confidence)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "bins": self.bins,
            "confidence": list(self.confidence),
            "topics": None if self.topics is None else list(self.topics),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChunkPsi:
        topics = raw.get("topics")
        return cls(
            rows=int(raw["rows"]),
            bins=int(raw["bins"]),
            confidence=tuple(float(v) for v in raw["confidence"]),
            topics=None if topics is None else tuple(float(v) for v in topics),
        )


HourMix = dict[int, dict[str, int]]  # hour of the week (0 = Monday 00h UTC) -> topic counts


@dataclasses.dataclass(frozen=True)
class NewReference:
    model_version: str
    kind: str  # training | live | baseline
    status: str  # active | rejected (a new reference is never stored retired)
    n_rows: int
    confidences: Sequence[float]  # in time order (training: the folder's sample order)
    topic_mix: Mapping[str, float]  # share per topic
    window_from: datetime | None = None
    window_to: datetime | None = None
    hour_mix: HourMix | None = None
    chunks: ChunkPsi | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reference kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.status not in ("active", "rejected"):
            raise ValueError(f"a new reference is active or rejected, not {self.status!r}")


@dataclasses.dataclass(frozen=True)
class Reference:
    """A stored reference (``id`` None: read from a model folder, not stored)."""

    id: int | None
    model_version: str
    kind: str
    status: str
    reason: str
    window_from: datetime | None
    window_to: datetime | None
    n_rows: int
    confidences: tuple[float, ...]
    topic_mix: dict[str, float]
    hour_mix: HourMix | None
    chunks: ChunkPsi | None
    created_at: datetime | None


class TimedPrediction(NamedTuple):
    confidence: float
    topic: str
    at: datetime  # predicted_at


class StoredArticle(NamedTuple):
    id: str
    title: str
    body: str
    received_at: datetime


_COLUMNS = (
    "id, model_version, kind, status, reason, window_from, window_to, n_rows, confidences, "
    "topic_mix, hour_mix, chunks, created_at"
)


def _reference(row: Row[Any]) -> Reference:
    v = row._asdict()
    hour_mix = v["hour_mix"]
    return Reference(
        id=int(v["id"]),
        model_version=str(v["model_version"]),
        kind=str(v["kind"]),
        status=str(v["status"]),
        reason=str(v["reason"]),
        window_from=v["window_from"],
        window_to=v["window_to"],
        n_rows=int(v["n_rows"]),
        confidences=tuple(float(c) for c in v["confidences"]),
        topic_mix={str(k): float(s) for k, s in v["topic_mix"].items()},
        hour_mix=(
            None
            if hour_mix is None
            else {int(h): {str(t): int(n) for t, n in c.items()} for h, c in hour_mix.items()}
        ),
        chunks=None if v["chunks"] is None else ChunkPsi.from_json(v["chunks"]),
        created_at=v["created_at"],
    )


def _values(ref: NewReference) -> dict[str, Any]:
    return {
        "model_version": ref.model_version,
        "kind": ref.kind,
        "status": ref.status,
        "reason": ref.reason,
        "window_from": ref.window_from,
        "window_to": ref.window_to,
        "n_rows": ref.n_rows,
        "confidences": [float(c) for c in ref.confidences],
        "topic_mix": dict(ref.topic_mix),
        "hour_mix": (
            None
            if ref.hour_mix is None
            else {str(h): dict(c) for h, c in sorted(ref.hour_mix.items())}
        ),
        "chunks": None if ref.chunks is None else ref.chunks.to_json(),
    }


def store_reference(engine: Engine, ref: NewReference) -> Reference:
    """Store ``ref`` in one transaction; an active one retires the version's active
    reference first. Returns the stored row."""
    with engine.begin() as conn:
        _lock_version(conn, ref.model_version)
        return _store(conn, ref)


def _store(conn: Connection, ref: NewReference) -> Reference:
    if ref.status == "active":
        conn.execute(
            text(
                "UPDATE drift_references SET status = 'retired' "
                "WHERE model_version = :v AND status = 'active'"
            ),
            {"v": ref.model_version},
        )
    new_id = conn.execute(
        insert(DriftReferenceRow).returning(DriftReferenceRow.id), _values(ref)
    ).scalar_one()
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM drift_references WHERE id = :i"), {"i": new_id}
    ).one()
    return _reference(row)


def _lock_version(conn: Connection, model_version: str) -> None:
    """Serialise reference writes of one version (until the transaction ends)."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('newsflow-drift-reference:' || :v))"),
        {"v": model_version},
    )


def store_training_reference(engine: Engine, ref: NewReference) -> Reference:
    """The version's training reference, stored active unless the version already has an
    active reference (two checks at once store one); returns the version's active one."""
    with engine.begin() as conn:
        _lock_version(conn, ref.model_version)
        current = active_reference(conn, model_version=ref.model_version)
        return current if current is not None else _store(conn, ref)


def store_live_reference(engine: Engine, ref: NewReference) -> Reference | None:
    """Store the version's live reference (active or rejected) unless it was settled or
    judged meanwhile (two checks at once store one): None when the version already has an
    adopted live or a baseline reference (:func:`feed_reference_adopted`), or a rejected live
    window that reaches ``ref``'s start."""
    with engine.begin() as conn:
        _lock_version(conn, ref.model_version)
        if feed_reference_adopted(conn, model_version=ref.model_version):
            return None
        last = last_rejected_live(conn, model_version=ref.model_version)
        if last is not None and _reaches(last, ref.window_from):
            return None
        return _store(conn, ref)


def _reaches(judged: Reference, start: datetime | None) -> bool:
    """Whether ``judged``'s window ends at or after ``start``: a window starting there would
    overlap one already judged."""
    return start is None or judged.window_to is None or judged.window_to >= start


def active_reference(db: Db, *, model_version: str) -> Reference | None:
    """The reference in use for ``model_version``, or None."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM drift_references "
                "WHERE model_version = :v AND status = 'active'"
            ),
            {"v": model_version},
        ).first()
    return _reference(row) if row is not None else None


def get_reference(db: Db, *, reference_id: int) -> Reference | None:
    with connected(db) as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS} FROM drift_references WHERE id = :i"), {"i": reference_id}
        ).first()
    return _reference(row) if row is not None else None


def feed_reference_adopted(db: Db, *, model_version: str) -> bool:
    """Whether ``model_version`` has a live or baseline reference that was adopted (active,
    or retired by a later one): then no live window is tried any more. Rejected windows do
    not count: a later live window is tried (:func:`last_rejected_live`)."""
    with connected(db) as conn:
        found = conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM drift_references WHERE model_version = :v "
                "AND status <> 'rejected' AND kind IN ('baseline', 'live'))"
            ),
            {"v": model_version},
        ).scalar_one()
    return bool(found)


def rejected_baseline_until(db: Db, *, model_version: str) -> datetime | None:
    """The end of the latest refused baseline window of ``model_version`` (None: none was
    refused). The automatic week reference tries no window that would overlap it
    (:mod:`monitoring.week_reference`)."""
    with connected(db) as conn:
        found = conn.execute(
            text(
                "SELECT max(window_to) FROM drift_references WHERE model_version = :v "
                "AND kind = 'baseline' AND status = 'rejected'"
            ),
            {"v": model_version},
        ).scalar_one()
    return found if isinstance(found, datetime) else None


def last_rejected_live(db: Db, *, model_version: str) -> Reference | None:
    """The latest live window of ``model_version`` that was refused, or None."""
    with connected(db) as conn:
        row = conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM drift_references WHERE model_version = :v "
                "AND kind = 'live' AND status = 'rejected' ORDER BY window_to DESC NULLS LAST, "
                "id DESC LIMIT 1"
            ),
            {"v": model_version},
        ).first()
    return _reference(row) if row is not None else None


def list_references(db: Db, *, limit: int = 20) -> list[Reference]:
    """The latest ``limit`` references of every version, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(f"SELECT {_COLUMNS} FROM drift_references ORDER BY id DESC LIMIT :n"),
            {"n": limit},
        ).all()
    return [_reference(r) for r in rows]


def first_predictions(db: Db, *, model_version: str, limit: int) -> list[TimedPrediction]:
    """The first ``limit`` predictions of ``model_version``, oldest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT confidence, topic, predicted_at FROM predictions "
                "WHERE model_version = :v ORDER BY predicted_at, id LIMIT :n"
            ),
            {"v": model_version, "n": limit},
        ).all()
    return [TimedPrediction(float(r[0]), str(r[1]), r[2]) for r in rows]


def latest_timed_predictions(
    db: Db, *, model_version: str, limit: int, minutes: float | None = None
) -> list[TimedPrediction]:
    """The drift window with its times: the last ``limit`` predictions of ``model_version``,
    or (``minutes``) those of the last ``minutes``; oldest first."""
    if minutes is not None:
        sql = (
            "SELECT confidence, topic, predicted_at FROM predictions WHERE model_version = :v "
            "AND predicted_at >= now() - make_interval(secs => :s) ORDER BY predicted_at, id"
        )
        params: dict[str, Any] = {"v": model_version, "s": minutes * 60}
    else:
        sql = (
            "SELECT * FROM (SELECT confidence, topic, predicted_at, id FROM predictions "
            "WHERE model_version = :v ORDER BY id DESC LIMIT :n) w ORDER BY predicted_at, id"
        )
        params = {"v": model_version, "n": limit}
    with connected(db) as conn:
        rows = conn.execute(text(sql), params).all()
    return [TimedPrediction(float(r[0]), str(r[1]), r[2]) for r in rows]


def count_articles_between(db: Db, *, start: datetime, end: datetime) -> int:
    """Articles received in ``[start, end)``."""
    with connected(db) as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM articles WHERE received_at >= :a AND received_at < :b"),
                {"a": start, "b": end},
            ).scalar_one()
        )


def articles_between(db: Db, *, start: datetime, end: datetime, limit: int) -> list[StoredArticle]:
    """Articles received in ``[start, end)`` in time order; where there are more than
    ``limit``, ``limit`` of them spread evenly over the window (its rhythm kept)."""
    total = count_articles_between(db, start=start, end=end)
    keep = min(limit, total)
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, title, body, received_at FROM (SELECT id, title, body, received_at, "
                "row_number() OVER (ORDER BY received_at, id) AS rn FROM articles "
                "WHERE received_at >= :a AND received_at < :b) w "
                "WHERE rn * :k / :t > (rn - 1) * :k / :t ORDER BY rn"
            ),
            {"a": start, "b": end, "k": keep, "t": max(total, 1)},
        ).all()
    return [StoredArticle(str(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]
