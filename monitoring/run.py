"""`newsflow run`: the main job on local defaults.

Starts the stack, makes sure a champion model exists (trains the offline MiniLM base on
AG News when none is registered), starts a worker that follows the champion, streams AG
News test articles at a steady rate, waits until every one is stored, and reports.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from pipeline.core.db import predictions, reviews
from pipeline.core.settings import Settings

Report = Callable[[str], None]


@dataclasses.dataclass
class RunOptions:
    rate_per_min: float = 1000.0
    articles: int = 2000
    epochs: int = 3
    bad_share: float = 0.01


def ensure_champion(
    settings: Settings,
    *,
    epochs: int,
    report: Report,
    progress: Callable[[str, int, int], None] | None = None,
    dataset: str = "ag_news",
    max_length: int | None = None,
    max_rows: int | None = None,
    base: str | None = None,
    quantize: bool | None = None,
) -> str:
    """The registered champion's version; with none, train one (the default recipe with
    ``epochs`` and, when given, ``max_length``, a cap of ``max_rows`` training rows, another
    ``base`` and whether to also export int8), register and promote it."""
    from pipeline.core import registry

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is not None:
        report(f"champion: version {info.version} ({info.model_version})")
        return info.version
    report(
        f"no champion registered: training the offline {base or 'minilm'} base on {dataset} "
        f"({epochs} epoch{'s' if epochs != 1 else ''}; a few minutes on 2 cores)"
    )
    from pipeline.core.db.engine import make_engine
    from retraining.flow import FlowOptions, run_flow
    from retraining.promotion import promote
    from retraining.recipe import DEFAULT_BASE, Recipe
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

    result = run_flow(
        settings,
        Recipe(
            dataset=dataset,
            base=base or DEFAULT_BASE,
            quantize=True if quantize is None else quantize,
            data=DataChoice(max_rows=max_rows),
            training=TrainConfig(epochs=epochs)
            if max_length is None
            else TrainConfig(epochs=epochs, max_length=max_length),
        ),
        progress=progress,
        options=FlowOptions(baseline=False),
    )
    version = result.registered_version
    if version is None:
        raise RuntimeError("training did not register a version (parity check failed)")
    engine = make_engine(settings)
    try:
        assert result.splits is not None
        promote(settings, version, eval_rows=result.splits.test, engine=engine)
    finally:
        engine.dispose()
    report(f"trained version {version}: accuracy {result.summary['accuracy']:.4f}")
    return version


def run_main(
    settings: Settings,
    options: RunOptions,
    *,
    report: Report,
    progress: Callable[[int], None] | None = None,
    train_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    from pipeline.core.datasets import load_dataset
    from pipeline.core.db.engine import make_engine
    from pipeline.produce import article_messages, produce
    from pipeline.stack import stack_up
    from pipeline.worker_process import start_worker, stop_worker

    stack_up(settings, report=report)
    version = ensure_champion(
        settings, epochs=options.epochs, report=report, progress=train_progress
    )
    rows = load_dataset("ag_news", split="test", data_dir=settings.data_dir)
    run_id = f"run{uuid.uuid4().hex[:6]}"
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    proc = start_worker(
        settings, None, logs / f"{run_id}-worker.log", metrics_port=settings.metrics_port
    )
    report(
        f"worker started (pid {proc.pid}, log {logs / f'{run_id}-worker.log'}, "
        f"metrics http://127.0.0.1:{settings.metrics_port}/metrics)"
    )
    try:
        _wait_for_metrics(settings.metrics_port, proc)
        report(
            f"streaming {options.articles} AG News articles at "
            f"{options.rate_per_min:.0f}/min ({options.bad_share:.0%} malformed)"
        )
        started = time.monotonic()
        stats = produce(
            article_messages(
                rows,
                limit=options.articles,
                loop=True,
                run_id=run_id,
                bad_share=options.bad_share,
                seed=7,
            ),
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic_articles,
            rate=options.rate_per_min / 60,
            on_progress=progress,
        )
        good = stats.sent - stats.bad
        deadline = time.monotonic() + 300
        stored = 0
        while time.monotonic() < deadline:
            stored = _count(engine, run_id)
            if stored >= good or proc.poll() is not None:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        summary = _summary(engine, run_id)
    finally:
        stop_worker(proc)
        engine.dispose()
    summary.update(
        {
            "model_registry_version": version,
            "sent": stats.sent,
            "malformed_sent": stats.bad,
            "valid_sent": good,
            "lost": max(0, good - summary["stored"]),
            "seconds": round(elapsed, 1),
            "articles_per_min": round(summary["stored"] / elapsed * 60, 1),
            "worker_log": str(logs / f"{run_id}-worker.log"),
        }
    )
    return summary


def _wait_for_metrics(port: int, proc: Any, timeout_s: float = 120.0) -> None:
    """Until the worker serves metrics (model loaded, database reached), plus a moment for
    its consumer group to settle, so the first articles do not wait for the join."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
            time.sleep(5)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the worker did not start; read its log")


def _count(engine: Engine, run_id: str) -> int:
    return predictions.prediction_count(engine, run_id)


def _summary(engine: Engine, run_id: str) -> dict[str, Any]:
    from pipeline.proof.stored import stream_counts

    counts = stream_counts(engine, run_id)
    with engine.connect() as conn:
        total, p50, p95 = predictions.stream_latency(conn, run_id)
        topics = predictions.topic_counts(conn, run_id)
        review = reviews.review_item_count(conn, run_id)
        versions = predictions.stream_model_versions(conn, run_id)
    return {
        "stored": total,
        "duplicates": counts.redelivered + counts.conflicts,
        "redelivered": counts.redelivered,
        "conflicts": counts.conflicts,
        "latency_p50_s": float(p50 or 0),
        "latency_p95_s": float(p95 or 0),
        "topics": topics,
        "review_items": review,
        "model_versions": versions,
    }
