"""Metrics of the web app and the scheduler, scraped over HTTP from their own endpoints on a
free port, against real Postgres: a failed sign-in and a submitted label are counted, the
open queue is the database's; a drift check that refuses the champion's folder is counted."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from monitoring.metrics import build_scheduler_metrics, serve_scheduler_metrics
from monitoring.scheduler import drift_job
from monitoring.web.app import create_app
from monitoring.web.metrics import serve_web_metrics
from monitoring.web.seed import seed_review_items
from monitoring.web.users import add_user
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    engine = make_engine(db)
    yield engine
    engine.dispose()


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        s.name + (str(sorted(s.labels.items())) if s.labels else ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:300]
    return found[1]


def test_web_metrics_count_sign_in_failures_reviews_and_the_open_queue(
    db: Settings, engine: Engine
) -> None:
    seed_review_items(engine, 6)
    add_user(engine, "rita", PASSWORD, "reviewer")
    # no second round: with the default 10 % one label may queue the same item again
    settings = db.model_copy(update={"review_budget_per_hour": 40, "review_second_share": 0.0})
    app = create_app(settings, engine=engine)
    port = free_port()
    server = serve_web_metrics(app.state.ctx.metrics, port)
    assert server is not None
    try:
        before = _scrape(port)
        assert before["newsflow_login_failures_total"] == 0
        assert before["newsflow_review_queue_open"] == 6
        assert before["newsflow_review_queue_budget"] == 40
        with TestClient(app, follow_redirects=False) as http:
            token = _csrf(http.get("/login").text)
            bad = {"username": "rita", "password": "wrong", "csrf_token": token}
            assert http.post("/login", data=bad).status_code == 401
            assert _scrape(port)["newsflow_login_failures_total"] == 1

            good = {**bad, "password": PASSWORD}
            assert http.post("/login", data=good).status_code == 303
            page = http.get("/review").text
            item = re.search(r'action="/review/(\d+)/label"', page)
            assert item, page[:300]
            r = http.post(
                f"/review/{item[1]}/label", data={"label": "World", "csrf_token": _csrf(page)}
            )
            assert r.status_code == 303, r.text
        after = _scrape(port)
        assert after["newsflow_login_failures_total"] == 1  # the right password is no failure
        assert after["newsflow_reviews_total"] == 1
        assert after["newsflow_review_queue_open"] == 5  # the labelled item left the queue
    finally:
        server.shutdown()


def test_scheduler_metrics_count_a_refused_champion_folder(
    db: Settings, engine: Engine, tmp_path: Path
) -> None:
    metrics = build_scheduler_metrics()
    port = free_port()
    server = serve_scheduler_metrics(metrics, port)
    assert server is not None
    try:
        empty = tmp_path / "model"
        empty.mkdir()  # no metadata.json: the folder is refused, the check reports an error
        result, outcome = drift_job(db, engine, model_dir=empty, report=False, metrics=metrics)
        assert result is not None and result.level == "error" and outcome is None
        got = _scrape(port)
        assert got["newsflow_model_refused_total[('reason', 'bad_folder')]"] == 1
        assert got["newsflow_drift_checks_total[('level', 'error')]"] == 1
        assert got["newsflow_retrain_decisions_total[('decision', 'none')]"] == 1
        assert got["newsflow_drift_last_run_timestamp_seconds"] > 0
    finally:
        server.shutdown()
