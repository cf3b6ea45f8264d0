"""A dead worker reaches a webhook through real Prometheus and Alertmanager, and its restart
sends `resolved`: the stack's own Prometheus and Alertmanager (pipeline/stack), started on
free ports, scrape a real `newsflow worker`; the test kills it, waits for a `firing`
WorkerDown notification at a local HTTP receiver, restarts it and waits for `resolved`.
The receiver answers 500 to the first 3 WorkerDown posts: Alertmanager must retry until it
gets through.

Timings. Production (the checked-in files, scrape and evaluation every 15 s, WorkerDown's
`for: 30s`, Alertmanager's page route: group_wait 10 s, group_interval 1 m) needs about a
minute for each notification, too long for CI. The test therefore renders its own copies:
the same rules with WorkerDown's `for:` at 2 s, the same Alertmanager routes with
group_wait 1 s and group_interval 2 s, and scrapes and evaluates every second.
NEWSFLOW_ALERTING_PRODUCTION=1 runs it with the production files and intervals instead
(docs/benchmarks/2026-12-07-alerting.md reports both)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.settings import Settings
from pipeline.stack import alertmanager, prometheus, stack_status
from tests.conftest import REPO, free_port
from tests.integration.helpers import Worker

pytestmark = pytest.mark.integration
PRODUCTION = os.environ.get("NEWSFLOW_ALERTING_PRODUCTION") == "1"
FAIL_FIRST = 3  # WorkerDown posts answered 500 before the receiver "recovers"
LIMIT_S = 150.0 if PRODUCTION else 60.0  # per notification; generous for a loaded CI box


@dataclasses.dataclass(frozen=True)
class Post:
    at: float  # time.monotonic() on receipt
    answered: int
    body: dict[str, Any]

    def is_(self, alertname: str, status: str) -> bool:
        return (
            self.answered == 200
            and self.body.get("status") == status
            and self.body.get("commonLabels", {}).get("alertname") == alertname
        )


class Receiver:
    """An HTTP webhook receiver that records every POST."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = receiver.answer(body)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, body: dict[str, Any]) -> int:
        with self.lock:
            worker_down = [
                p
                for p in self.posts
                if p.body.get("commonLabels", {}).get("alertname") == "WorkerDown"
            ]
            is_worker_down = body.get("commonLabels", {}).get("alertname") == "WorkerDown"
            code = 500 if is_worker_down and len(worker_down) < FAIL_FIRST else 200
            self.posts.append(Post(time.monotonic(), code, body))
            return code

    def first(self, alertname: str, status: str, after: float) -> Post | None:
        with self.lock:
            return next((p for p in self.posts if p.at >= after and p.is_(alertname, status)), None)

    def wait(self, alertname: str, status: str, after: float) -> Post:
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            post = self.first(alertname, status, after)
            if post is not None:
                return post
            time.sleep(0.2)
        with self.lock:
            seen = [
                (p.answered, p.body.get("status"), p.body.get("commonLabels")) for p in self.posts
            ]
        raise AssertionError(f"no {status} {alertname} within {LIMIT_S:.0f} s; got {seen}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _fast_copies(folder: Path) -> tuple[Path, Path]:
    """The checked-in rules and Alertmanager config with CI timings (see the module doc)."""
    rules = yaml.safe_load((REPO / "infra/prometheus/rules/newsflow.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "WorkerDown":
                rule["for"] = "2s"
    rules_dir = folder / "rules"
    rules_dir.mkdir(parents=True)
    (rules_dir / "newsflow.rules.yml").write_text(yaml.safe_dump(rules))
    am = yaml.safe_load((REPO / "infra/alertmanager/alertmanager.yml").read_text())
    for route in [am["route"], *am["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    am_config = folder / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(am))
    return rules_dir, am_config


def _alerting_settings(env: Settings, tmp_path: Path, webhook: str) -> Settings:
    update: dict[str, Any] = {
        "home": tmp_path / "home",
        "prometheus_enabled": True,
        "prometheus_port": free_port(),
        "alertmanager_port": free_port(),
        "metrics_port": free_port(),
        "scheduler_metrics_port": 0,  # only the worker is scraped
        "web_metrics_port": 0,
        "alert_webhook_url": webhook,
    }
    if not PRODUCTION:
        rules_dir, am_config = _fast_copies(tmp_path / "fast")
        update |= {
            "prometheus_rules_dir": rules_dir,
            "alertmanager_config": am_config,
            "prometheus_scrape_interval_s": 1.0,
            "prometheus_evaluation_interval_s": 1.0,
        }
    return env.model_copy(update=update)


def _query(settings: Settings, path: str) -> Any:
    url = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/{path}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]


def _worker_scraped_up(settings: Settings) -> bool:
    query = urllib.parse.quote('up{job="newsflow-worker"} == 1')
    alerts = _query(settings, "alerts")["alerts"]
    return bool(_query(settings, f"query?query={query}")["result"]) and not any(
        a["labels"]["alertname"] == "WorkerDown" for a in alerts
    )


@pytest.fixture
def alerting(
    db: Settings, topics: Settings, tmp_path: Path, receiver: Receiver
) -> Iterator[Settings]:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.skip(
                f"{binary} is not installed (Debian packages prometheus, "
                "prometheus-alertmanager; infra/test-deps.sh installs them)"
            )
    env = topics.model_copy(update={"pg_database": db.pg_database})
    settings = _alerting_settings(env, tmp_path, receiver.url)
    try:
        alertmanager.start(settings)
        prometheus.start(settings)
        yield settings
    finally:
        prometheus.stop(settings)
        alertmanager.stop(settings)


def test_dead_worker_pages_through_prometheus_and_alertmanager_then_resolves(
    alerting: Settings, receiver: Receiver, tiny_bert: Path, tmp_path: Path
) -> None:
    services = {s.name: s for s in stack_status(alerting)}
    assert services["prometheus"].up and services["alertmanager"].up

    worker = Worker(alerting, tiny_bert, alerting.metrics_port, tmp_path / "worker1.log")
    try:
        worker.wait_ready()
        deadline = time.monotonic() + LIMIT_S
        while not _worker_scraped_up(alerting):
            assert time.monotonic() < deadline, "Prometheus never scraped the worker as up"
            time.sleep(0.5)

        killed = time.monotonic()
        worker.stop(signal.SIGKILL)
        fired = receiver.wait("WorkerDown", "firing", after=killed)
        firing_s = fired.at - killed
        with receiver.lock:
            refused = [p for p in receiver.posts if p.answered == 500]
        assert len(refused) == FAIL_FIRST  # Alertmanager retried through three 500s
        assert fired.body["alerts"][0]["labels"]["severity"] == "page"

        restarted = time.monotonic()
        worker = Worker(alerting, tiny_bert, alerting.metrics_port, tmp_path / "worker2.log")
        resolved = receiver.wait("WorkerDown", "resolved", after=restarted)
        resolved_s = resolved.at - restarted
    finally:
        worker.stop(signal.SIGKILL)
    mode = "production timings" if PRODUCTION else "CI timings"
    print(
        f"WorkerDown ({mode}): firing {firing_s:.1f} s after the kill (through {FAIL_FIRST} "
        f"answers 500), resolved {resolved_s:.1f} s after the restart"
    )
    assert firing_s < LIMIT_S and resolved_s < LIMIT_S
