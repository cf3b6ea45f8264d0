"""Prometheus metrics of a worker, built per process (no global registry at import)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

# The `reason` label of newsflow_model_refused_total (pipeline.hotswap.RefusalReason), every
# one exported at 0 from the start so that a rate over it sees the first refusal.
REFUSAL_REASONS = ("bad_files", "bad_folder", "version_mismatch")


@dataclasses.dataclass(frozen=True)
class WorkerMetrics:
    registry: CollectorRegistry
    consumed: Counter
    predicted: Counter
    duplicates: Counter
    dead_letters: Counter
    store_retries: Counter
    conflicts: Counter
    send_retries: Counter
    fallbacks: Counter
    review_items: Counter
    batch_size: Histogram
    inference_seconds: Histogram
    end_to_end_seconds: Histogram
    consumer_lag: Gauge
    model_info: Gauge
    model_refused: Counter


def build_metrics() -> WorkerMetrics:
    reg = CollectorRegistry()
    metrics = WorkerMetrics(
        registry=reg,
        consumed=Counter("newsflow_consumed", "messages read from articles", registry=reg),
        predicted=Counter("newsflow_predicted", "predictions stored", registry=reg),
        duplicates=Counter("newsflow_duplicates", "redelivered articles skipped", registry=reg),
        dead_letters=Counter(
            "newsflow_dead_letters", "messages sent to the DLQ", ["reason"], registry=reg
        ),
        store_retries=Counter("newsflow_store_retries", "failed writes retried", registry=reg),
        conflicts=Counter(
            "newsflow_conflicts", "messages reusing a stored id with other text", registry=reg
        ),
        send_retries=Counter(
            "newsflow_send_retries", "Kafka sends retried (undelivered only)", registry=reg
        ),
        fallbacks=Counter(
            "newsflow_batch_fallbacks",
            "batches handled message by message after a batch-level failure",
            ["stage"],
            registry=reg,
        ),
        review_items=Counter("newsflow_review_items", "items queued for review", registry=reg),
        batch_size=Histogram(
            "newsflow_batch_size",
            "messages per micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=reg,
        ),
        inference_seconds=Histogram(
            "newsflow_inference_seconds", "model time per batch", registry=reg
        ),
        end_to_end_seconds=Histogram(
            "newsflow_end_to_end_seconds",
            "Kafka timestamp to stored",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60),
            registry=reg,
        ),
        consumer_lag=Gauge(
            "newsflow_consumer_lag", "messages behind the log end", ["partition"], registry=reg
        ),
        model_info=Gauge("newsflow_model_info", "model being served", ["version"], registry=reg),
        model_refused=Counter(
            "newsflow_model_refused",
            "new champions refused (bad_files, bad_folder, version_mismatch)",
            ["reason"],
            registry=reg,
        ),
    )
    for reason in REFUSAL_REASONS:
        metrics.model_refused.labels(reason=reason)
    return metrics


def serve_metrics(metrics: WorkerMetrics, port: int, host: str = "127.0.0.1") -> None:
    if port:
        start_http_server(port, addr=host, registry=metrics.registry)


def serve_or_log(
    registry: CollectorRegistry, port: int, host: str, *, setting: str, log: logging.Logger
) -> WSGIServer | None:
    """Serve ``registry`` as ``/metrics`` on ``host:port`` in a daemon thread; port 0 = none.
    Returns the server (``shutdown()`` stops it). A port already taken is logged, naming
    ``setting``, and the process goes on without metrics (Prometheus then reports the job
    down): for the scheduler and the web app, whose metrics are not their work."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics not served: %s:%d: %s (set %s; 0 = off)", host, port, exc, setting)
        return None
    return server
