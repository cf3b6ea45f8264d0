"""Start and stop `newsflow` commands (worker, web, scheduler) as child processes (bench,
run, demo, tests), with the caller's settings forwarded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.core.settings import Settings

FORWARDED = (  # never a secret: those reach children through the inherited environment
    "kafka_host",
    "kafka_port",
    "pg_host",
    "pg_port",
    "pg_user",
    "topic_articles",
    "topic_dlq",
    "topic_predictions",
    "worker_name",
    "batch_max_size",
    "batch_max_wait_ms",
    "pg_database",
    "model_poll_s",
    "review_uniform_share",
    "review_uncertain_share",
    "review_topic_cap",
    "review_budget_per_hour",
    "review_lookahead_hours",
    "review_uniform_fraction",
    "review_topic_queue_share",
    "review_expire_hours",
    "home",
    "mlflow_tracking_uri",
    "mlflow_server",
    "mlflow_host",
    "mlflow_port",
    "registry_timeout_s",
    "ort_threads",
    "reports_dir",
    "review_second_share",
    "web_login_attempts",
    "drift_interval_minutes",
    "drift_window_size",
    "drift_min_window",
    "drift_review_hours",
    "drift_unknown_warn",
    "drift_review_min",
    "retrain_epochs",
    "retrain_max_rows",
    "retrain_quantize",
    "retrain_cooldown_hours",
    "retrain_daily_cap",
    "retrain_accuracy_margin",
    "retrain_min_reviewed",
    "retrain_dataset",
    "eval_limit",
    "topic_base_per_class",
    "retrain_warm_start",
    "gate_max_macro_f1_drop",
    "gate_max_class_f1_drop",
    "live_check_reviewed",  # the scheduler child promotes: the live check's settings
    "live_check_min_reviewed",
    "live_check_margin",
    "live_check_confidence",
    "live_check_required",
    "live_check_window",
    "registered_model_name",
    "data_dir",
    "web_port",
    "clock_file",  # newsflow replay: the worker follows the simulated clock
    "topic_label_request_share",  # provisional topic suggestions (issue 24): the worker's
    "topic_suggest_min_cosine",
    "topic_suggest_min_answered",
    "topic_suggest_min_acceptance",
)


def start_command(
    settings: Settings, args: list[str], log: Path, *, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``newsflow <args>`` in its own session, output appended to ``log``."""
    env = dict(os.environ)
    for name in FORWARDED:  # the child sees the caller's settings, overrides included
        value = getattr(settings, name)
        if value is not None:
            env[f"NEWSFLOW_{name.upper()}"] = str(value)
    env.update(env_extra or {})
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitoring", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(
    settings: Settings, model_dir: Path | None, log: Path, *, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    args = ["worker"] + (["--model-dir", str(model_dir)] if model_dir is not None else [])
    return start_command(
        settings, args, log, env_extra={"NEWSFLOW_METRICS_PORT": str(metrics_port)}
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


stop_worker = stop_process
