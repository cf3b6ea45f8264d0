"""Prometheus as part of the local stack (opt-in: NEWSFLOW_PROMETHEUS_ENABLED=true).

At start the scrape configuration is rendered from the settings into
``home/prometheus/prometheus.yml``: the worker, scheduler and web app jobs on their metrics
ports (a port of 0 leaves its job out), the scrape and evaluation intervals, the project's
alert rules (``infra/prometheus/rules/*.rules.yml``, or NEWSFLOW_PROMETHEUS_RULES_DIR) and
the stack's Alertmanager. With the default settings it equals ``infra/prometheus/prometheus.yml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack import daemon

BINARY = "prometheus"
JOBS = ("newsflow-worker", "newsflow-scheduler", "newsflow-web")
MAX_SCRAPE_TIMEOUT_S = 10.0


def checkout_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def rules_dir(settings: Settings) -> Path:
    folder = settings.prometheus_rules_dir or checkout_dir() / "rules"
    if not any(folder.glob("*.rules.yml")):
        raise StackError(
            f"no *.rules.yml in {folder}; run from a newsflow checkout or set "
            "NEWSFLOW_PROMETHEUS_RULES_DIR"
        )
    return folder.resolve()


def service(settings: Settings) -> daemon.Daemon:
    return daemon.Daemon(
        name="prometheus",
        binary=BINARY,
        root=settings.home / "prometheus",
        port=settings.prometheus_port,
        mark="--storage.tsdb.path",
    )


def duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds as ``15s``, otherwise milliseconds."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _scrape_host(settings: Settings) -> str:
    unspecified = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - a bind address, not ours
    return daemon.HOST if settings.metrics_host in unspecified else settings.metrics_host


def targets(settings: Settings) -> dict[str, list[str]]:
    """Each job's targets; a job whose port is 0 (no endpoint) is left out."""
    host = _scrape_host(settings)
    workers = [t.strip() for t in settings.prometheus_worker_targets.split(",") if t.strip()]
    if not workers and settings.metrics_port:
        workers = [f"{host}:{settings.metrics_port}"]
    ports = {
        "newsflow-scheduler": settings.scheduler_metrics_port,
        "newsflow-web": settings.web_metrics_port,
    }
    out = {"newsflow-worker": workers} if workers else {}
    out.update({job: [f"{host}:{port}"] for job, port in ports.items() if port})
    return out


def render_config(settings: Settings) -> dict[str, Any]:
    """The scrape configuration for these settings (as a YAML document's data)."""
    scrape = settings.prometheus_scrape_interval_s
    return {
        "global": {
            "scrape_interval": duration(scrape),
            "scrape_timeout": duration(min(scrape, MAX_SCRAPE_TIMEOUT_S)),
            "evaluation_interval": duration(settings.prometheus_evaluation_interval_s),
        },
        "rule_files": [str(rules_dir(settings) / "*.rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"{daemon.HOST}:{settings.alertmanager_port}"]}]}
            ]
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": hosts}]}
            for job, hosts in targets(settings).items()
        ],
    }


def write_config(settings: Settings) -> Path:
    d = service(settings)
    d.root.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: no YAML library needed to write it
    d.config.write_text(json.dumps(render_config(settings), indent=2) + "\n")
    return d.config


def start(settings: Settings) -> str:
    d = service(settings)
    binary = daemon.find_binary(BINARY, install=True)
    config = write_config(settings)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={d.data}",
        f"--storage.tsdb.retention.time={settings.prometheus_retention_days}d",
        d.listen_flag,
    ]
    return daemon.start(d, argv, timeout_s=settings.start_timeout_s)


def stop(settings: Settings) -> bool:
    return daemon.stop(service(settings))


def running_pid(settings: Settings) -> int | None:
    return daemon.running_pid(service(settings))


def answers(settings: Settings) -> bool:
    return daemon.answers(service(settings))


def purge(settings: Settings) -> None:
    daemon.purge(service(settings))
