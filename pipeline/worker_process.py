"""Start and stop `newsflow worker` as a child process (bench, run, demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.core.settings import Settings

FORWARDED = (
    "topic_articles",
    "topic_dlq",
    "topic_predictions",
    "worker_name",
    "batch_max_size",
    "batch_max_wait_ms",
    "pg_database",
    "model_poll_s",
    "review_uniform_share",
    "home",
    "mlflow_tracking_uri",
)


def start_worker(
    settings: Settings, model_dir: Path | None, log: Path, *, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    for name in FORWARDED:  # the child sees the caller's settings, overrides included
        value = getattr(settings, name)
        if value is not None:
            env[f"NEWSFLOW_{name.upper()}"] = str(value)
    env["NEWSFLOW_METRICS_PORT"] = str(metrics_port)
    argv = [sys.executable, "-m", "monitoring", "worker"]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
