"""`newsflow stack up | status | down`: the local services as one unit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pipeline.core.settings import Settings
from pipeline.stack import alertmanager, kafka, mlflow_server, postgres, prometheus


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    name: str
    host: str
    port: int
    pid: int | None
    data_dir: Path
    log: Path
    up: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "log": str(self.log),
            "up": self.up,
        }


Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def stack_up(settings: Settings, *, migrate: bool = True, report: Report = _quiet) -> None:
    """Start PostgreSQL and Kafka (idempotent), create topics and run migrations."""
    report(f"postgres: {postgres.start(settings)}")
    report(f"kafka: {kafka.start(settings)}")
    topics = kafka.ensure_topics(settings)
    report("topics: " + ", ".join(f"{n} ({s})" for n, s in sorted(topics.items())))
    if migrate:
        from pipeline.core.db.migrate import upgrade

        upgrade(settings.database_url())
        report("database: migrated to head")
        from pipeline.core.db.engine import make_engine
        from pipeline.core.db.partitions import create_partitions_ahead

        engine = make_engine(settings)
        try:  # today's and the days ahead (the scheduler's retention job adds more daily)
            created = create_partitions_ahead(engine, ahead=settings.partitions_ahead_days)
        finally:
            engine.dispose()
        report(f"database: {len(created)} partitions created ahead")
    if settings.mlflow_server:
        report(f"mlflow: {mlflow_server.start(settings)}")
    if settings.prometheus_enabled:  # Alertmanager first: Prometheus delivers to it at once
        report(f"alertmanager: {alertmanager.start(settings)}")
        report(f"prometheus: {prometheus.start(settings)}")


def stack_status(settings: Settings) -> list[ServiceStatus]:
    kp, pp = kafka.paths(settings), postgres.paths(settings)
    return (
        [
            ServiceStatus(
                "kafka",
                settings.kafka_host,
                settings.kafka_port,
                kafka.running_pid(settings),
                kp.data,
                kp.log,
                kafka.answers(settings) and kafka.running_pid(settings) is not None,
            ),
            ServiceStatus(
                "postgres",
                settings.pg_host,
                settings.pg_port,
                postgres.running_pid(settings),
                pp.data,
                pp.log,
                postgres.answers(settings) and postgres.running_pid(settings) is not None,
            ),
        ]
        + ([_mlflow_status(settings)] if settings.mlflow_server else [])
        + (_alerting_status(settings) if settings.prometheus_enabled else [])
    )


def _alerting_status(settings: Settings) -> list[ServiceStatus]:
    out = []
    for module in (prometheus, alertmanager):
        d = module.service(settings)
        pid = module.running_pid(settings)
        up = pid is not None and module.answers(settings)
        out.append(ServiceStatus(d.name, "127.0.0.1", d.port, pid, d.data, d.log, up))
    return out


def _mlflow_status(settings: Settings) -> ServiceStatus:
    mp = mlflow_server.paths(settings)
    pid = mlflow_server.running_pid(settings)
    return ServiceStatus(
        "mlflow",
        settings.mlflow_host,
        settings.mlflow_port,
        pid,
        mp.artifacts,
        mp.log,
        pid is not None and mlflow_server.answers(settings),
    )


def stack_down(settings: Settings, *, purge: bool = False, report: Report = _quiet) -> None:
    """Stop only what the stack started (by pid); keep data unless ``purge``."""
    if settings.mlflow_server or mlflow_server.paths(settings).pidfile.exists():
        report("mlflow: " + ("stopped" if mlflow_server.stop(settings) else "was not running"))
    for module in (prometheus, alertmanager):
        if settings.prometheus_enabled or module.service(settings).pidfile.exists():
            name = module.service(settings).name
            report(f"{name}: " + ("stopped" if module.stop(settings) else "was not running"))
    report("kafka: " + ("stopped" if kafka.stop(settings) else "was not running"))
    report("postgres: " + ("stopped" if postgres.stop(settings) else "was not running"))
    if purge:
        kafka.purge(settings)
        postgres.purge(settings)
        mlflow_server.purge(settings)
        prometheus.purge(settings)
        alertmanager.purge(settings)
        report("data: purged")
