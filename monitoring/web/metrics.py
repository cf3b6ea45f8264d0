"""Prometheus metrics of the web app: the review queue against its budget, labels submitted,
failed sign-ins. Built per app like the worker's (:mod:`pipeline.metrics`), never at import;
``newsflow web`` serves them on ``web_metrics_port``, apart from the app's own port.

``newsflow_review_queue_open`` is counted when Prometheus scrapes (one index-backed count of
pending items through :mod:`pipeline.core.db.reviews`); while the database does not answer
the sample is left out rather than reported as an empty queue.

Example:
    >>> m = build_web_metrics(review_budget=60, count_open=lambda: 7)
    >>> m.registry.get_sample_value("newsflow_review_queue_open")
    7.0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.metrics import serve_or_log

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.web.metrics")
QUEUE_OPEN = "newsflow_review_queue_open"
QUEUE_OPEN_HELP = "review items waiting for a reviewer (pending, any round)"


class QueueOpenCollector(Collector):
    """``newsflow_review_queue_open``, counted on each scrape by ``count``."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(QUEUE_OPEN, QUEUE_OPEN_HELP)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            value = self._count()
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("review queue not counted: %s", exc)
            return
        yield GaugeMetricFamily(QUEUE_OPEN, QUEUE_OPEN_HELP, value=value)


@dataclasses.dataclass(frozen=True)
class WebMetrics:
    registry: CollectorRegistry
    review_queue_budget: Gauge
    reviews: Counter
    login_failures: Counter


def build_web_metrics(*, review_budget: int, count_open: Callable[[], int]) -> WebMetrics:
    """A fresh registry: ``review_budget`` = the pending items the queue may hold (0 = no
    budget), ``count_open`` = how many are pending now (called on scrape)."""
    reg = CollectorRegistry()
    reg.register(QueueOpenCollector(count_open))
    m = WebMetrics(
        registry=reg,
        review_queue_budget=Gauge(
            "newsflow_review_queue_budget",
            "pending items the review queue may hold (review budget x lookahead; 0 = no budget)",
            registry=reg,
        ),
        reviews=Counter("newsflow_reviews", "review labels submitted", registry=reg),
        login_failures=Counter(
            "newsflow_login_failures",
            "sign-ins refused for a wrong username or password",
            registry=reg,
        ),
    )
    m.review_queue_budget.set(review_budget)
    return m


def queue_budget(settings: Settings) -> int:
    """The review queue's capacity, as the sink computes it (:class:`pipeline.sampling.Budget`)."""
    from pipeline.sampling import Budget

    if not settings.review_budget_per_hour:
        return 0
    return Budget.per_hour(
        settings.review_budget_per_hour, lookahead_hours=settings.review_lookahead_hours
    ).capacity


def serve_web_metrics(metrics: WebMetrics, port: int, host: str = "127.0.0.1") -> WSGIServer | None:
    """:func:`pipeline.metrics.serve_or_log` for this process's registry."""
    return serve_or_log(metrics.registry, port, host, setting="NEWSFLOW_WEB_METRICS_PORT", log=log)
