"""The scheduler's Prometheus metrics, driven with the records the scheduler has (a drift
result with its decision, a retraining outcome) and read back as Prometheus exposes them."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.decision import RetrainEvidence, RetrainPolicy, decide_retraining
from monitoring.drift import DriftLevel, DriftResult
from monitoring.metrics import (
    build_scheduler_metrics,
    record_drift_run,
    record_refused,
    record_retrain,
)
from monitoring.retrain import RetrainOutcome


def _scrape(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _result(level: DriftLevel, **kw: object) -> DriftResult:
    result = DriftResult(level=level, model_version="20261201T0000-minilm", window_size=1000)
    for key, value in kw.items():
        setattr(result, key, value)
    evidence = RetrainEvidence(
        level=level,
        estimated_accuracy=result.estimated_accuracy,
        reference_accuracy=0.94,
        reviewed_accuracy=result.reviewed_accuracy,
    )
    result.decision = decide_retraining(evidence, RetrainPolicy(margin=0.05))
    return result


def test_a_drift_run_sets_every_figure() -> None:
    m = build_scheduler_metrics()
    result = _result(
        "drift",
        psi_confidence=0.31,
        psi_topics=0.12,
        estimated_accuracy=0.82,
        reviewed_accuracy=0.8,
    )
    record_drift_run(m, result, now=1_765_000_000.0)
    got = _scrape(m.registry)
    assert got[("newsflow_drift_psi", (("kind", "confidence"),))] == 0.31
    assert got[("newsflow_drift_psi", (("kind", "topic_mix"),))] == 0.12
    assert got[("newsflow_drift_level", ())] == 2
    assert got[("newsflow_drift_checks_total", (("level", "drift"),))] == 1
    assert got[("newsflow_drift_checks_total", (("level", "ok"),))] == 0
    assert got[("newsflow_drift_last_run_timestamp_seconds", ())] == 1_765_000_000.0
    assert got[("newsflow_estimated_accuracy", ())] == 0.82
    assert got[("newsflow_reviewed_accuracy", ())] == 0.8
    assert got[("newsflow_reference_accuracy", ())] == 0.94
    assert got[("newsflow_retrain_decisions_total", (("decision", "retrain"),))] == 1
    assert got[("newsflow_retrain_decisions_total", (("decision", "alert"),))] == 0
    assert got[("newsflow_champion_info", (("version", "20261201T0000-minilm"),))] == 1


def test_a_run_without_a_figure_reports_nan_and_the_champion_changes() -> None:
    m = build_scheduler_metrics()
    record_drift_run(m, _result("warn", psi_confidence=0.15, psi_topics=0.02))
    later = _result("insufficient")
    later.model_version = "20261205T0000-minilm"
    record_drift_run(m, later)
    got = _scrape(m.registry)
    assert math.isnan(got[("newsflow_drift_level", ())])  # no level: a drift alert resolves
    assert math.isnan(got[("newsflow_drift_psi", (("kind", "confidence"),))])
    assert math.isnan(got[("newsflow_reviewed_accuracy", ())])
    assert got[("newsflow_drift_checks_total", (("level", "warn"),))] == 1
    assert got[("newsflow_drift_checks_total", (("level", "insufficient"),))] == 1
    assert got[("newsflow_retrain_decisions_total", (("decision", "alert"),))] == 1
    assert got[("newsflow_retrain_decisions_total", (("decision", "none"),))] == 1
    champions = {k[1] for k in got if k[0] == "newsflow_champion_info"}
    assert champions == {(("version", "20261205T0000-minilm"),)}


def test_retraining_outcomes_and_durations() -> None:
    m = build_scheduler_metrics()
    record_retrain(m, RetrainOutcome("promoted", "gate passed", "3"), 420.0)
    record_retrain(m, RetrainOutcome("failed", "MLflow down"), 35.0)
    record_retrain(m, RetrainOutcome("cooldown", "retrained within 6 h"), 0.01)
    record_retrain(m, RetrainOutcome("refused", "the recipe's base is not installed"), 0.2)
    got = _scrape(m.registry)
    assert got[("newsflow_retrains_total", (("outcome", "promoted"),))] == 1
    assert got[("newsflow_retrains_total", (("outcome", "failed"),))] == 1
    assert got[("newsflow_retrains_total", (("outcome", "cooldown"),))] == 1
    assert got[("newsflow_retrains_total", (("outcome", "refused"),))] == 1
    assert got[("newsflow_retrains_total", (("outcome", "capped"),))] == 0
    assert got[("newsflow_retrain_duration_seconds_count", ())] == 2  # the others did not train
    assert got[("newsflow_retrain_duration_seconds_sum", ())] == 455.0
    assert got[("newsflow_retrain_duration_seconds_bucket", (("le", "60.0"),))] == 1


def test_a_refused_champion_folder_is_counted_by_reason() -> None:
    m = build_scheduler_metrics()
    record_refused(m, "bad_files")
    record_refused(m, "bad_files")
    got = _scrape(m.registry)
    assert got[("newsflow_model_refused_total", (("reason", "bad_files"),))] == 2
    assert got[("newsflow_model_refused_total", (("reason", "bad_folder"),))] == 0


def test_registries_are_per_process_not_global() -> None:
    a, b = build_scheduler_metrics(), build_scheduler_metrics()
    record_refused(a, "bad_folder")
    assert _scrape(b.registry)[("newsflow_model_refused_total", (("reason", "bad_folder"),))] == 0
