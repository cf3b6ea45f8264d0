"""The web app's Prometheus metrics: the queue counted on scrape (absent, not zero, while the
database does not answer), the budget as the sink computes it, reviews and failed sign-ins."""

from __future__ import annotations

import logging
import socket

import pytest
from prometheus_client import generate_latest

from monitoring.web.metrics import build_web_metrics, queue_budget, serve_web_metrics
from pipeline.core.settings import Settings


def test_the_queue_is_counted_on_each_scrape() -> None:
    open_items = [5]
    m = build_web_metrics(review_budget=60, count_open=lambda: open_items[0])
    m.reviews.inc()
    m.login_failures.inc(2)
    text = generate_latest(m.registry).decode()
    assert "newsflow_review_queue_open 5.0" in text
    assert "newsflow_review_queue_budget 60.0" in text
    assert "newsflow_reviews_total 1.0" in text
    assert "newsflow_login_failures_total 2.0" in text
    open_items[0] = 0
    assert "newsflow_review_queue_open 0.0" in generate_latest(m.registry).decode()


def test_a_database_that_does_not_answer_leaves_the_queue_out() -> None:
    def down() -> int:
        raise OSError("connection refused")

    m = build_web_metrics(review_budget=60, count_open=down)
    text = generate_latest(m.registry).decode()
    assert "newsflow_review_queue_open" not in text
    assert "newsflow_review_queue_budget 60.0" in text  # the rest is still served


def test_the_budget_is_the_sinks_queue_capacity() -> None:
    assert queue_budget(Settings(review_budget_per_hour=60, review_lookahead_hours=1.0)) == 60
    assert queue_budget(Settings(review_budget_per_hour=45, review_lookahead_hours=2.5)) == 113
    assert queue_budget(Settings(review_budget_per_hour=0)) == 0  # no budget


def test_a_taken_port_is_logged_and_the_app_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    m = build_web_metrics(review_budget=0, count_open=lambda: 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            assert serve_web_metrics(m, port) is None
    assert "NEWSFLOW_WEB_METRICS_PORT" in caplog.text
    assert serve_web_metrics(m, 0) is None  # 0 = off
