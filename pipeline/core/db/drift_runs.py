"""Data access for ``drift_runs``: one row per drift check (written by the check, read by
``newsflow status``, the demo's watcher and the on-call pages).

Read records: :class:`DriftRun` is the whole row (the on-call pages); ``newsflow status`` and
the demo's watcher read the narrower :class:`DriftRunSummary` and :class:`WatchedDriftRun`,
whose fields their JSON output is built from."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, text

from pipeline.core.db.access import Db, connected
from pipeline.core.db.models import DriftRunRow


@dataclasses.dataclass(frozen=True)
class NewDriftRun:
    started_at: datetime
    finished_at: datetime
    model_version: str | None
    level: str  # ok | warn | drift | insufficient | error
    window_size: int
    psi_confidence: float | None = None
    psi_topics: float | None = None
    psi_evidently: float | None = None
    estimated_accuracy: float | None = None
    reviewed_accuracy: float | None = None
    report_path: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)  # the JSONB column
    decision: dict[str, Any] | None = None  # the retraining decision (JSONB)
    reference_id: int | None = None  # the drift reference compared with
    window_from: datetime | None = None  # the window's first and last prediction time
    window_to: datetime | None = None


@dataclasses.dataclass(frozen=True)
class DriftRunSummary:
    """A recent run as ``newsflow status`` shows it."""

    id: int
    started_at: datetime
    level: str
    window_size: int
    psi_confidence: float | None
    psi_topics: float | None
    estimated_accuracy: float | None
    reviewed_accuracy: float | None
    report_path: str | None


@dataclasses.dataclass(frozen=True)
class WatchedDriftRun:
    """A run as the demo's watcher reports it."""

    id: int
    level: str
    window_size: int
    psi_confidence: float | None
    psi_topics: float | None
    estimated_accuracy: float | None
    reviewed_accuracy: float | None
    report_path: str | None
    model_version: str | None


@dataclasses.dataclass(frozen=True)
class DriftRun:
    """A whole stored run, as the on-call pages show it."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    model_version: str | None
    level: str
    window_size: int
    psi_confidence: float | None
    psi_topics: float | None
    psi_evidently: float | None
    estimated_accuracy: float | None
    reviewed_accuracy: float | None
    report_path: str | None
    details: dict[str, Any]
    decision: dict[str, Any] | None
    reference_id: int | None = None  # None: a run from before references were stored
    window_from: datetime | None = None
    window_to: datetime | None = None


@dataclasses.dataclass(frozen=True)
class FlaggedRun:
    """A run whose confidence PSI was flagged (warn or drift), with its window."""

    id: int
    level: str
    psi_confidence: float | None
    window_from: datetime
    window_to: datetime


_DRIFT_RUN_COLUMNS = (
    "id, started_at, finished_at, model_version, level, window_size, psi_confidence, "
    "psi_topics, psi_evidently, estimated_accuracy, reviewed_accuracy, report_path, details, "
    "decision, reference_id, window_from, window_to"
)


def insert_drift_run(engine: Engine, run: NewDriftRun) -> int:
    """Store one run (its own transaction); returns its id."""
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(DriftRunRow).returning(DriftRunRow.id),
            {
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "model_version": run.model_version,
                "level": run.level,
                "window_size": run.window_size,
                "psi_confidence": run.psi_confidence,
                "psi_topics": run.psi_topics,
                "psi_evidently": run.psi_evidently,
                "estimated_accuracy": run.estimated_accuracy,
                "reviewed_accuracy": run.reviewed_accuracy,
                "report_path": run.report_path,
                "details": run.details,
                "decision": run.decision,
                "reference_id": run.reference_id,
                "window_from": run.window_from,
                "window_to": run.window_to,
            },
        ).scalar_one()
    return int(run_id)


def record_retrain_outcome(engine: Engine, run_id: int, *, status: str, reason: str) -> None:
    """Add what became of a retraining the run decided on (started, cooldown, busy...)."""
    outcome = json.dumps({"status": status, "reason": reason})
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE drift_runs SET decision = coalesce(decision, '{}'::jsonb) "
                "|| jsonb_build_object('outcome', CAST(:outcome AS jsonb)) WHERE id = :id"
            ),
            {"outcome": outcome, "id": run_id},
        )


def recent_drift_runs(db: Db, limit: int = 5) -> list[DriftRunSummary]:
    """The latest ``limit`` runs, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, started_at, level, window_size, psi_confidence, psi_topics, "
                "estimated_accuracy, reviewed_accuracy, report_path FROM drift_runs "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [DriftRunSummary(*r) for r in rows]


def drift_runs_after(db: Db, after: int) -> list[WatchedDriftRun]:
    """Runs with an id above ``after``, oldest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, level, window_size, psi_confidence, psi_topics, estimated_accuracy, "
                "reviewed_accuracy, report_path, model_version FROM drift_runs WHERE id > :after "
                "ORDER BY id"
            ),
            {"after": after},
        ).all()
    return [WatchedDriftRun(*r) for r in rows]


def max_drift_run_id(db: Db) -> int:
    """The highest run id (0 when there is none)."""
    with connected(db) as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM drift_runs")).scalar_one())


def list_drift_runs(db: Db, *, limit: int = 200) -> list[DriftRun]:
    """The latest ``limit`` whole runs, newest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(f"SELECT {_DRIFT_RUN_COLUMNS} FROM drift_runs ORDER BY id DESC LIMIT :n"),
            {"n": limit},
        ).all()
    return [_drift_run(r) for r in rows]


def get_drift_run(db: Db, *, run_id: int) -> DriftRun | None:
    """One whole run, or None when there is no such id."""
    with connected(db) as conn:
        row = conn.execute(
            text(f"SELECT {_DRIFT_RUN_COLUMNS} FROM drift_runs WHERE id = :i"), {"i": run_id}
        ).first()
    return _drift_run(row) if row is not None else None


def confidence_flagged_runs_between(
    db: Db, *, model_version: str, start: datetime, end: datetime, warn: float
) -> list[FlaggedRun]:
    """Runs of ``model_version`` whose window overlaps ``[start, end]`` and whose confidence
    PSI was flagged: the run's own per-metric level (``details.levels.confidence``) when
    recorded, else its PSI against ``warn``. Oldest first."""
    with connected(db) as conn:
        rows = conn.execute(
            text(
                "SELECT id, level, psi_confidence, window_from, window_to FROM drift_runs "
                "WHERE model_version = :v AND window_from IS NOT NULL "
                "AND window_from <= :b AND window_to >= :a AND level IN ('warn', 'drift') "
                "AND coalesce(details #>> '{levels,confidence}' IN ('warn', 'drift'), "
                "psi_confidence >= :w) ORDER BY id"
            ),
            {"v": model_version, "a": start, "b": end, "w": warn},
        ).all()
    return [FlaggedRun(int(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]


def _drift_run(row: Row[Any]) -> DriftRun:
    values = row._asdict()
    values["details"] = values["details"] or {}
    return DriftRun(**values)
