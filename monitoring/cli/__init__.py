"""The `newsflow` command: one Typer app, assembled by :func:`build` from one module per
subsystem beside this one (``stack``, ``db``, ``config``, ``stream``, ``proof``, ``run``,
``status``, ``drift``, ``train``, ``models``, ``web``, ``topics``), on the helpers of
``helpers``. Commands whose extra is not installed are replaced by a message naming it."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated

import typer

app = typer.Typer(
    name="newsflow",
    help="Streaming news-topic classification with drift monitoring, review and retraining.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

_EXTRAS = {
    "train": ("torch", "transformers", "mlflow", "sklearn"),
    "monitor": ("evidently", "apscheduler"),
    "web": ("fastapi", "uvicorn", "jinja2", "multipart"),
    "demo": ("torch", "fastapi", "apscheduler"),
}


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"newsflow {version('newsflow')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Streaming news-topic classification with drift monitoring, review and retraining."""


def _has(extra: str) -> bool:
    return all(find_spec(module) for module in _EXTRAS[extra])


def build() -> typer.Typer:
    """Register every command on :data:`app` and return it."""
    from monitoring.cli import config, db, proof, run, stack, status, stream
    from monitoring.cli.helpers import missing_extra
    from monitoring.cli.topics import topics_app

    app.add_typer(stack.stack_app, name="stack")
    app.add_typer(db.db_app, name="db")
    app.add_typer(config.config_app, name="config")
    app.command("schema")(config.schema_cmd)
    app.command("worker")(stream.worker_cmd)
    app.command("produce")(stream.produce_cmd)
    app.command("bench")(proof.bench_cmd)
    app.command("bench-sink")(proof.bench_sink_cmd)
    app.command("faults")(proof.faults_cmd)
    app.command("soak")(proof.soak_cmd)
    if _has("train") and _has("monitor"):  # the replay retrains and checks drift
        app.command("replay")(proof.replay_cmd)
    else:
        missing_extra(app, ("replay",), "train,monitor")
    app.add_typer(topics_app, name="topics")
    app.command("run")(run.run_cmd)
    if _has("demo"):
        app.command("demo")(run.demo_cmd)
    else:
        missing_extra(app, ("demo",), "train,monitor,web")
    app.command("status")(status.status_cmd)
    if _has("monitor"):
        from monitoring.cli import drift

        app.add_typer(drift.drift_app, name="drift")
        app.command("scheduler")(drift.scheduler_cmd)
        app.command("retrain")(drift.retrain_cmd)
    else:
        missing_extra(app, ("drift", "scheduler", "retrain"), "monitor")
    if _has("web"):
        from monitoring.cli import web

        web.register(app)
    else:
        missing_extra(app, ("web", "users", "review"), "web")
    if _has("train"):
        from monitoring.cli import topics, train

        train.register(app)  # and `models`
        topics.register(topics_app)
    else:  # a lean worker install has no torch/transformers
        missing_extra(app, ("train", "models"), "train")
    return app


def main() -> None:
    build()()
