"""Promotion and rollback of registered versions, with the gate and the live check,
recorded in Postgres."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from pipeline.core import registry
from pipeline.core.datasets import LabelledText
from pipeline.core.db.events import record_model_event
from pipeline.core.db.models import ModelEventRow
from pipeline.core.model_folder import read_metadata
from pipeline.core.settings import Settings
from retraining.errors import RegistryError
from retraining.gate import GateDecision, GatePolicy, evaluate_folder, gate
from retraining.live_check import run_live_check

log = logging.getLogger(__name__)


def promote(
    settings: Settings,
    version: str,
    *,
    eval_rows: Sequence[LabelledText],
    engine: Engine,
    policy: GatePolicy | None = None,
    force: bool = False,
    drift_run_id: int | None = None,
    live_exclude: Collection[str] = (),
) -> GateDecision:
    """Evaluate challenger and champion on the same rows; move `champion` only if the gate
    passes and, where there is a champion, the live check finds the challenger
    non-inferior on live evidence (:mod:`retraining.live_check`; ``live_exclude``: reviewed
    article ids the challenger was trained on), or ``force``. The gate's margins come from
    the settings unless ``policy``. Every decision is recorded in ``model_events``, the
    live check's figures in its metrics (``live_check``)."""
    champion = registry.version_by_alias(settings, registry.CHAMPION)
    challenger_dir = registry.local_copy(settings, version)
    challenger_eval, _ = evaluate_folder(challenger_dir, eval_rows)
    champion_eval = champion_dir = None
    if champion is not None and champion.version != version:
        champion_dir = registry.local_copy(settings, champion.version)
        champion_eval, _ = evaluate_folder(champion_dir, eval_rows)
    policy = policy or GatePolicy(
        max_macro_f1_drop=settings.gate_max_macro_f1_drop,
        max_class_f1_drop=settings.gate_max_class_f1_drop,
    )
    decision = gate(challenger_eval, champion_eval, policy)
    previous = champion.version if champion else None
    name = settings.registered_model_name
    metrics = {
        # the served version string (predictions' model_version), beside the registry's number
        "model_version": read_metadata(challenger_dir).version,
        "challenger": decision.challenger,
        "champion": decision.champion,
        "gate": decision.compared,
        "n": challenger_eval.n,
    }
    if champion_dir is not None:
        decision = _live_evidence(
            settings,
            decision,
            metrics,
            engine=engine,
            folders=(challenger_dir, champion_dir),
            run=decision.passed or force,
            exclude_ids=live_exclude,
        )
    if decision.passed or force:
        registry.set_alias(settings, registry.CHAMPION, version)
        reason = "; ".join(decision.reasons) + ("; forced" if force and not decision.passed else "")
        record_model_event(
            engine=engine,
            kind="promoted",
            model_name=name,
            version=version,
            previous_version=previous,
            reason=reason,
            metrics=metrics,
            drift_run_id=drift_run_id,
        )
        log.info("version %s promoted to champion (was %s)", version, previous)
    else:
        registry.set_alias(settings, registry.CHALLENGER, version)
        record_model_event(
            engine=engine,
            kind="rejected",
            model_name=name,
            version=version,
            previous_version=previous,
            reason="; ".join(decision.reasons),
            metrics=metrics,
            drift_run_id=drift_run_id,
        )
        log.warning("version %s rejected: %s", version, "; ".join(decision.reasons))
    return decision


def _live_evidence(
    settings: Settings,
    decision: GateDecision,
    metrics: dict[str, Any],
    *,
    engine: Engine,
    folders: tuple[Path, Path],
    run: bool,
    exclude_ids: Collection[str],
) -> GateDecision:
    """The live check of (challenger, champion) folders added to the gate's ``decision``
    and to ``metrics``; not run (recorded as such) when the offline gate refused already."""
    if not run:
        metrics["live_check"] = {
            "verdict": "not run",
            "reason": "the offline gate refused the challenger",
        }
        return decision
    challenger_dir, champion_dir = folders
    live = run_live_check(
        settings,
        engine=engine,
        challenger=challenger_dir,
        champion=champion_dir,
        exclude_ids=exclude_ids,
    )
    metrics["live_check"] = live.to_json()
    return dataclasses.replace(
        decision,
        passed=decision.passed and live.allows,
        reasons=[*decision.reasons, live.reason],
    )


def rollback(settings: Settings, *, engine: Engine) -> tuple[str, str]:
    """Point `champion` back at the version it replaced. Returns (from, to)."""
    current = registry.version_by_alias(settings, registry.CHAMPION)
    if current is None:
        raise RegistryError("there is no champion to roll back")
    with engine.connect() as conn:
        row = conn.execute(
            select(ModelEventRow.previous_version)
            .where(
                ModelEventRow.model_name == settings.registered_model_name,
                ModelEventRow.version == current.version,
                ModelEventRow.kind.in_(("promoted", "rollback")),
            )
            .order_by(ModelEventRow.id.desc())
            .limit(1)
        ).first()
    if row is None or row[0] is None:
        raise RegistryError(f"version {current.version} has no earlier champion to return to")
    target = str(row[0])
    registry.set_alias(settings, registry.CHAMPION, target)
    record_model_event(
        engine=engine,
        kind="rollback",
        model_name=settings.registered_model_name,
        version=target,
        previous_version=current.version,
        reason=f"rolled back from {current.version}",
    )
    return current.version, target
