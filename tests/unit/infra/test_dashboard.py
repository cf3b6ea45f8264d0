"""The Grafana dashboard as code: the checked-in JSON is what the generator writes, and every
metric a panel queries is one that the worker, the scheduler or the web app registers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

pytest.importorskip("grafana_foundation_sdk")

from infra.grafana import dashboard
from monitoring.metrics import build_scheduler_metrics
from monitoring.web.metrics import build_web_metrics
from pipeline.metrics import build_metrics

# Series Prometheus adds itself, not a process.
PROMETHEUS_SERIES = {"up"}
SERIES = re.compile(r"\b(newsflow_[a-z0-9_]+|up)\b")


def exposed_series(registry: CollectorRegistry) -> set[str]:
    """The series names a registry exposes, labelled metrics without children included."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    return {family.name + s for family in registry.collect() for s in suffixes[family.type]}


def all_series() -> set[str]:
    registries = (
        build_metrics().registry,
        build_scheduler_metrics().registry,
        build_web_metrics(review_budget=60, count_open=lambda: 0).registry,
    )
    return set().union(*(exposed_series(r) for r in registries))


def test_the_checked_in_json_is_what_the_generator_writes() -> None:
    assert dashboard.OUTPUT.read_text(encoding="utf-8") == dashboard.render(), (
        "infra/grafana/newsflow.json is stale: run `newsflow stack dashboard`"
    )


def test_every_panel_queries_only_metrics_the_processes_export() -> None:
    board = json.loads(dashboard.OUTPUT.read_text(encoding="utf-8"))
    exprs = dashboard.queries(board)
    known = all_series() | PROMETHEUS_SERIES
    assert len(exprs) >= 20
    for expr in exprs:
        used = set(SERIES.findall(expr))
        assert used, f"the query {expr!r} names no newsflow metric"
        unknown = used - known
        assert not unknown, f"the query {expr!r} reads {sorted(unknown)}, which no process exports"


def test_every_contract_metric_has_a_panel() -> None:
    board = json.loads(dashboard.OUTPUT.read_text(encoding="utf-8"))
    queried = {name for e in dashboard.queries(board) for name in SERIES.findall(e)}
    alerting = {  # the metrics the alert rules of issue 22 read
        "up",
        "newsflow_consumer_lag",
        "newsflow_consumed_total",
        "newsflow_predicted_total",
        "newsflow_dead_letters_total",
        "newsflow_end_to_end_seconds_bucket",
        "newsflow_store_retries_total",
        "newsflow_drift_psi",
        "newsflow_drift_level",
        "newsflow_estimated_accuracy",
        "newsflow_reviewed_accuracy",
        "newsflow_reference_accuracy",
        "newsflow_retrains_total",
        "newsflow_retrain_duration_seconds_bucket",
        "newsflow_champion_info",
        "newsflow_model_refused_total",
        "newsflow_review_queue_open",
        "newsflow_review_queue_budget",
        "newsflow_reviews_total",
        "newsflow_login_failures_total",
    }
    assert alerting <= queried, sorted(alerting - queried)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    board = json.loads(dashboard.OUTPUT.read_text(encoding="utf-8"))
    rules = [
        {"record": f"panel:query{i}", "expr": e} for i, e in enumerate(dashboard.queries(board))
    ]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    check = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
