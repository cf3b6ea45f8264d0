"""``newsflow replay``: simulated days of a scripted feed through the real stack.

A scratch database (migrated to head), topics of its own, an MLflow store of its own with
the model registered and made champion, one real worker process (``newsflow worker``
following the champion, so a promotion is hot-swapped), and this process playing the
scheduler: per simulated day the retention job, then hour by hour the feed
(:mod:`monitoring.replay.feed`) is produced to Kafka and waited for in PostgreSQL; every
``24 / checks_per_day`` hours the simulated reviewers label what the budget allows
(:mod:`monitoring.replay.reviewers`), then the scheduler's drift job runs (drift check,
retraining decision and retraining, alerts) and the alert delivery pass. All of them take
their time from one :class:`~monitoring.replay.clock.SimClock`; the worker reads it from
``NEWSFLOW_CLOCK_FILE``. Nothing sleeps through simulated time: the replay waits only for
the stack to process what it was sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from monitoring.replay.clock import ReplayError, SimClock, check_days, replay_origin
from monitoring.replay.feed import NONE_LABEL, FeedItem, Pools, Script, build_hour
from monitoring.replay.reviewers import Reviewers
from monitoring.replay.score import AlertOpened, Check, ScoredEvent, score
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.replay")
CHECKS_PER_DAY = (1, 2, 3, 4, 6, 8, 12, 24)  # checks fall on whole hours


@dataclasses.dataclass(frozen=True)
class ReplayOptions:
    days: int
    articles_per_day: int = 600
    checks_per_day: int = 4
    seed: int = 0
    model_dir: Path | None = None  # None: the registry's champion
    workdir: Path = Path("replay")
    keep: bool = False  # keep the scratch database and topics
    today: dt.date | None = None  # the simulated month ends here (default: today, UTC)
    step_timeout_s: float = 180.0  # an hour's articles must be stored within this

    def check(self) -> None:
        """Every bad value named, before anything starts."""
        check_days(self.days, today=self.end_date())
        if not 1 <= self.articles_per_day <= 100_000:
            raise ReplayError(f"--articles-per-day must be 1..100000, got {self.articles_per_day}")
        if self.checks_per_day not in CHECKS_PER_DAY:
            raise ReplayError(
                f"--checks-per-day must divide 24 hours: one of {CHECKS_PER_DAY}, "
                f"got {self.checks_per_day}"
            )
        if self.model_dir is not None and not (self.model_dir / "metadata.json").is_file():
            raise ReplayError(f"--model-dir {self.model_dir} is not a model folder")

    def end_date(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()


@dataclasses.dataclass
class _Run:
    """What one replay accumulates."""

    settings: Settings
    engine: Engine
    clock: SimClock
    script: Script
    pools: Pools
    prefix: str
    reviewers: Reviewers
    producer: Any = None  # one confluent_kafka.Producer for the run
    truth: dict[str, str] = dataclasses.field(default_factory=dict)
    check_s: float = 0.0  # wall seconds in checks (reviewers, drift job, retraining, alerts)
    sent_valid: int = 0
    sent_malformed: int = 0
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    alerts: list[AlertOpened] = dataclasses.field(default_factory=list)
    alert_first_seen: dict[str, dt.datetime] = dataclasses.field(default_factory=dict)
    retrainings: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def run_replay(
    settings: Settings, options: ReplayOptions, *, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Run the replay; returns its JSON (figures per day, per check, the score)."""
    from pipeline.proof.sink_bench import scratch_database

    options.check()
    began = time.monotonic()
    origin = replay_origin(options.days, today=options.end_date())
    script = Script.default(options.days, options.articles_per_day, options.seed)
    tag = uuid.uuid4().hex[:8]
    workdir = options.workdir.resolve() / f"replay-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    folder = _model_folder(settings, options.model_dir)
    progress(
        f"replay {tag}: {options.days} simulated days from {origin:%Y-%m-%d} (a Monday), "
        f"{options.articles_per_day} articles/day, {options.checks_per_day} checks/day, "
        f"model {folder}; work folder {workdir}"
    )
    with scratch_database(settings, f"newsflow_replay_{tag}", keep=options.keep) as scratch:
        env = _replay_settings(scratch, tag, workdir)
        with _topics(env, keep=options.keep):
            out = _replay(env, options, script, folder, origin, workdir, progress)
    out["wall_s"] = round(time.monotonic() - began, 1)
    return out


def _model_folder(settings: Settings, model_dir: Path | None) -> Path:
    if model_dir is not None:
        return model_dir
    from pipeline.core import registry

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is None:
        raise ReplayError("no --model-dir and no champion in the registry")
    return registry.local_copy(settings, info.version)


def _replay_settings(scratch: Settings, tag: str, workdir: Path) -> Settings:
    return scratch.model_copy(
        update={
            "topic_articles": f"replay-{tag}-articles",
            "topic_dlq": f"replay-{tag}-articles.dlq",
            "topic_predictions": f"replay-{tag}-predictions",
            "worker_name": f"newsflow-replay-{tag}",
            "home": workdir / "home",
            "reports_dir": workdir / "reports",
            "mlflow_tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
            "mlflow_server": False,
            "clock_file": workdir / "clock",
            "model_poll_s": 1.0,
            "metrics_port": 0,
        }
    )


@contextlib.contextmanager
def _topics(env: Settings, *, keep: bool) -> Iterator[None]:
    from pipeline.proof.faults import delete_topics
    from pipeline.stack.kafka import ensure_topics

    ensure_topics(env)
    try:
        yield
    finally:
        if not keep:
            delete_topics(env)


def _replay(
    env: Settings,
    options: ReplayOptions,
    script: Script,
    folder: Path,
    origin: dt.datetime,
    workdir: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from monitoring.retention import retention_job
    from pipeline.core import registry
    from pipeline.core.db.engine import make_engine
    from pipeline.worker_process import start_worker, stop_process
    from retraining.register import register_model_folder

    engine = make_engine(env)
    clock = SimClock(origin, file=env.clock_file)
    run = _Run(
        env,
        engine,
        clock,
        script,
        Pools({}, {}, ()),
        f"rp{workdir.name[-8:]}",
        Reviewers({}, per_hour=env.review_budget_per_hour),
    )
    run.reviewers.truth = run.truth
    run.producer = _producer(env)
    retention_job(env, engine, now=origin)  # the first days' partitions
    version = register_model_folder(env, folder)
    registry.set_alias(env, registry.CHAMPION, version)
    worker = start_worker(env, None, workdir / "worker.log", metrics_port=0)
    days: list[dict[str, Any]] = []
    try:
        run.pools = _pools(env)  # while the worker starts
        for day in range(options.days):
            t0 = time.monotonic()
            start = origin + dt.timedelta(days=day)
            if day:
                clock.set(start)
                retention_job(env, engine, now=start)  # the scheduler's daily job
            checks_before = run.check_s
            for hour in range(24):
                _hour(run, day, start, hour, options, worker_log=workdir / "worker.log")
            days.append(_day_record(run, day, start))
            days[-1]["wall_s"] = round(time.monotonic() - t0, 1)
            days[-1]["checks_wall_s"] = round(run.check_s - checks_before, 1)
            progress(_day_line(days[-1], options.days))
    finally:
        stop_process(worker)
    stream = _stream_figures(run)
    events = [ScoredEvent(e.name, e.start(origin), e.expect_alert) for e in script.events()]
    checks = [
        Check(dt.datetime.fromisoformat(c["at"]), c["level"], c["retrain"]) for c in run.checks
    ]
    engine.dispose()
    return {
        "tool": "newsflow replay",
        "scale": {
            "days": options.days,
            "articles_per_day": options.articles_per_day,
            "checks_per_day": options.checks_per_day,
            "seed": options.seed,
            "review_budget_per_hour": env.review_budget_per_hour,
            "drift_window_size": env.drift_window_size,
            "drift_min_window": env.drift_min_window,
            "live_reference_rows": env.live_reference_rows,
            "model_dir": str(folder),
            "model_version": version,
        },
        "origin": origin.isoformat(),
        "script": [dataclasses.asdict(e) for e in script.events()],
        "days": days,
        "checks": run.checks,
        "alerts": [{"key": a.key, "at": a.at.isoformat()} for a in run.alerts],
        "retrainings": run.retrainings,
        "stream": stream,
        "score": score(events, checks, run.alerts),
    }


def _pools(settings: Settings) -> Pools:
    from pipeline.core.datasets import load_dataset

    pools = Pools.from_rows(
        ag=load_dataset("ag_news", split="test", data_dir=settings.data_dir),
        ng=load_dataset("20newsgroups", split="test", data_dir=settings.data_dir),
    )
    pools.check()
    return pools


def _hour(
    run: _Run,
    day: int,
    start: dt.datetime,
    hour: int,
    options: ReplayOptions,
    *,
    worker_log: Path,
) -> None:
    """One simulated hour: its articles stored at ``start + hour``; a check at its end when
    one is due."""
    at = start + dt.timedelta(hours=hour)
    run.clock.set(at)
    items = build_hour(
        run.script, run.pools, run=run.prefix, day=day, hour=hour, weekday=at.weekday()
    )
    _send(run, items, options, worker_log)
    every = 24 // options.checks_per_day
    if (hour + 1) % every == 0:
        run.clock.set(at + dt.timedelta(hours=1))
        _check(run, hours=every)


def _send(run: _Run, items: Sequence[FeedItem], options: ReplayOptions, worker_log: Path) -> None:
    """Produce one hour's messages and wait until its valid articles are stored."""
    from pipeline.proof.stored import prediction_counts

    if not items:
        return
    for i in items:
        if i.kind != "malformed":
            run.truth[i.id] = i.truth
    failed: list[object] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    for i in items:
        topic = run.settings.topic_articles
        run.producer.produce(topic, key=i.id.encode(), value=i.message(), on_delivery=delivered)
    if run.producer.flush(60) or failed:
        raise ReplayError(f"messages not delivered to Kafka: {failed[:3]}")
    valid = sum(1 for i in items if i.kind != "malformed")
    run.sent_valid += valid
    run.sent_malformed += len(items) - valid
    step = items[0].id.rsplit("-", 1)[0]
    deadline = time.monotonic() + options.step_timeout_s
    while prediction_counts(run.engine, step)[1] < valid:
        if time.monotonic() > deadline:
            from pipeline.proof.faults import log_tail

            raise ReplayError(
                f"{step}: {valid} articles not stored within {options.step_timeout_s:g} s; "
                f"worker log:\n{log_tail(worker_log)}"
            )
        time.sleep(0.05)


def _producer(env: Settings) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": env.kafka_bootstrap,
            "linger.ms": 2,
            "enable.idempotence": True,
            "message.max.bytes": 16 * 1024 * 1024,
        }
    )


def _check(run: _Run, *, hours: int) -> None:
    """What the scheduler does at a check: reviewers first (they worked meanwhile), then
    the drift job and the alert delivery pass, all at the simulated time."""
    from monitoring.alerts import delivery_pass
    from monitoring.scheduler import drift_job
    from pipeline.core.db.alerts import list_alert_states

    now = run.clock()
    began = time.monotonic()
    labelled = run.reviewers.work(run.engine, hours=hours, now=now)
    result, outcome = drift_job(run.settings, run.engine, report=False, clock=run.clock)
    delivery_pass(run.settings, run.engine, clock=run.clock)
    for state in list_alert_states(run.engine):
        if state.status == "firing" and run.alert_first_seen.get(state.key) != state.first_seen:
            run.alerts.append(AlertOpened(state.key, state.first_seen))
        run.alert_first_seen[state.key] = state.first_seen
    record: dict[str, Any] = {
        "at": now.isoformat(),
        "level": result.level if result else "skipped",
        "reason": result.reason if result else "another drift check held the lock",
        "levels": result.levels if result else None,
        "reference": result.reference if result else None,
        "psi_confidence": result.psi_confidence if result else None,
        "psi_topics": result.psi_topics if result else None,
        "estimated_accuracy": result.estimated_accuracy if result else None,
        "reviewed_accuracy": result.reviewed_accuracy if result else None,
        "reviewed_n": result.reviewed_n if result else 0,
        "decision": result.decision.action if result and result.decision else None,
        "triggers": list(result.decision.triggers) if result and result.decision else [],
        "decision_reason": result.decision.reason if result and result.decision else None,
        "retrain": outcome.status if outcome else None,
        "labelled_before": labelled,
    }
    run.checks.append(record)
    run.check_s += time.monotonic() - began
    if outcome is not None:
        run.retrainings.append(
            {
                "at": now.isoformat(),
                "status": outcome.status,
                "triggers": record["triggers"],
                "why": record["decision_reason"],
                "reason": outcome.reason,
                "version": outcome.version,
            }
        )


def _day_record(run: _Run, day: int, start: dt.datetime) -> dict[str, Any]:
    from pipeline.core.db.replay_reads import predictions_between, review_load, table_sizes

    end = start + dt.timedelta(days=1)
    rows = predictions_between(run.engine, prefix=run.prefix, start=start, end=end)
    known = [r for r in rows if run.truth.get(r.article_id, NONE_LABEL) != NONE_LABEL]
    correct = sum(1 for r in known if r.topic == run.truth[r.article_id])

    def today(at: str) -> bool:  # a check at midnight closes the day before
        return start < dt.datetime.fromisoformat(at) <= end

    day_checks = [c for c in run.checks if today(c["at"])]
    est = [c["estimated_accuracy"] for c in day_checks if c["estimated_accuracy"] is not None]
    load = review_load(run.engine, start=start, end=end)
    opened = Counter(a.key for a in run.alerts if start < a.at <= end)
    return {
        "day": day,
        "date": start.date().isoformat(),
        "weekday": start.strftime("%a"),
        "stored": len(rows),
        "true_accuracy": correct / len(known) if known else None,
        "true_accuracy_all": correct / len(rows) if rows else None,
        "new_kind_share": (len(rows) - len(known)) / len(rows) if rows else None,
        "estimated_accuracy": sum(est) / len(est) if est else None,
        "reviewed_accuracy": day_checks[-1]["reviewed_accuracy"] if day_checks else None,
        "levels": [c["level"] for c in day_checks],
        "alerts_opened": dict(opened),
        "retrainings": [r for r in run.retrainings if today(r["at"])],
        "served_by": dict(Counter(r.model_version for r in rows)),
        "review": dataclasses.asdict(load),
        "tables": table_sizes(run.engine),
    }


def _day_line(d: dict[str, Any], days: int) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    alerts = ",".join(f"{k}:{n}" for k, n in d["alerts_opened"].items()) or "-"
    retrained = ",".join(r["status"] for r in d["retrainings"]) or "-"
    return (
        f"day {d['day'] + 1}/{days} {d['date']} {d['weekday']}: {d['stored']} stored, "
        f"true acc {pct(d['true_accuracy'])}, est {pct(d['estimated_accuracy'])}, reviewed "
        f"{pct(d['reviewed_accuracy'])}, checks {'/'.join(d['levels'])}, alerts {alerts}, "
        f"retraining {retrained}, labelled {d['review']['labelled']}, {d['wall_s']:.1f} s "
        f"(checks {d['checks_wall_s']:.1f} s)"
    )


def _stream_figures(run: _Run) -> dict[str, Any]:
    from pipeline.proof.faults import _drain_topic
    from pipeline.proof.stored import stream_counts

    counts = stream_counts(run.engine, run.prefix)
    reasons: Counter[str] = Counter()
    dead = 0
    for key, value in _drain_topic(run.settings, run.settings.topic_dlq, timeout_s=60):
        if key.startswith(run.prefix):
            dead += 1
            with contextlib.suppress(ValueError, KeyError, TypeError):
                reasons[str(json.loads(value)["reason"])] += 1
    return {
        "sent_valid": run.sent_valid,
        "stored": counts.stored,
        "lost": run.sent_valid - counts.stored,
        "redelivered": counts.redelivered,
        "conflicts": counts.conflicts,
        "malformed_sent": run.sent_malformed,
        "dead_lettered": dead,
        "dead_letter_reasons": dict(reasons),
        "reviews_labelled": run.reviewers.labelled,
    }
