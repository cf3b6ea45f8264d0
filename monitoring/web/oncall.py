"""Read-only queries behind the on-call pages: drift runs, their series, model history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text


def drift_runs(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first."""
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT id, started_at, model_version, level, window_size, psi_confidence, "
                    "psi_topics, psi_evidently, estimated_accuracy, reviewed_accuracy, "
                    "report_path, details FROM drift_runs ORDER BY id DESC LIMIT :n"
                ),
                {"n": limit},
            )
        ]


def drift_run(engine: Engine, run_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, started_at, finished_at, model_version, level, window_size, "
                "psi_confidence, psi_topics, psi_evidently, estimated_accuracy, "
                "reviewed_accuracy, report_path, details, decision FROM drift_runs WHERE id = :i"
            ),
            {"i": run_id},
        ).first()
    return dict(row._mapping) if row else None


def model_events(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT id, at, kind, model_name, version, previous_version, drift_run_id, "
                    "reason, metrics FROM model_events ORDER BY id DESC LIMIT :n"
                ),
                {"n": limit},
            )
        ]


def serving_counts(engine: Engine) -> list[dict[str, Any]]:
    """Predictions per model version: total and in the last hour."""
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT model_version, count(*) AS total, count(*) FILTER (WHERE "
                    "predicted_at >= now() - interval '1 hour') AS last_hour, "
                    "max(predicted_at) AS last_at FROM predictions GROUP BY 1 ORDER BY 4 DESC"
                )
            )
        ]
