"""Data access for model events (registrations, promotions, rejections, rollbacks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert

from pipeline.core.db.models import ModelEventRow


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
) -> int:
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
            },
        ).scalar_one()
    return int(new_id)
