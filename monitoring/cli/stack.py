"""`newsflow stack up | status | down | topics`: the local Kafka + PostgreSQL stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from monitoring.cli.helpers import console, fail, settings_or_exit
from pipeline.core.errors import NewsflowError

stack_app = typer.Typer(
    help="Start, inspect and stop the local Kafka + PostgreSQL stack; create the Kafka topics.",
    no_args_is_help=True,
)


@stack_app.command("up")
def stack_up_cmd(
    no_migrate: Annotated[bool, typer.Option(help="skip `db upgrade`")] = False,
) -> None:
    """Start PostgreSQL and Kafka on 127.0.0.1 (installing them when missing), create the
    topics and migrate the database; with NEWSFLOW_MLFLOW_SERVER=true an MLflow server, with
    NEWSFLOW_PROMETHEUS_ENABLED=true Prometheus and Alertmanager (the project's rules,
    notifications to NEWSFLOW_ALERT_WEBHOOK_URL). Running it again changes nothing."""
    from pipeline.stack import stack_up

    settings = settings_or_exit()
    try:
        stack_up(settings, migrate=not no_migrate, report=lambda m: console.print(f"  {m}"))
    except NewsflowError as exc:
        raise fail(exc) from None
    console.print("[green]stack is up[/green]")


@stack_app.command("status")
def stack_status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List each service with port, pid, data directory and whether it answers.
    Exits 1 when a service is down."""
    from pipeline.stack import stack_status

    services = stack_status(settings_or_exit())
    if as_json:
        typer.echo(json.dumps({"services": [s.to_json() for s in services]}, indent=2))
    else:
        table = Table("service", "address", "pid", "up", "data directory", "log")
        for column in table.columns:
            column.overflow = "fold"
        for s in services:
            table.add_row(
                s.name,
                f"{s.host}:{s.port}",
                str(s.pid or "-"),
                "[green]yes[/green]" if s.up else "[red]no[/red]",
                str(s.data_dir),
                str(s.log),
            )
        console.print(table)
    if not all(s.up for s in services):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down_cmd(
    purge: Annotated[bool, typer.Option(help="also delete the services' data")] = False,
) -> None:
    """Stop the processes the stack started (by pid); data stays unless --purge."""
    from pipeline.stack import stack_down

    try:
        stack_down(settings_or_exit(), purge=purge, report=lambda m: console.print(f"  {m}"))
    except NewsflowError as exc:
        raise fail(exc) from None


@stack_app.command("topics")
def stack_topics_cmd() -> None:
    """Create the Kafka topics `articles`, `articles.dlq` and `predictions` on
    NEWSFLOW_KAFKA_HOST:NEWSFLOW_KAFKA_PORT when missing (Faust does not create the topics its
    agents use)."""
    create_kafka_topics()


def create_kafka_topics() -> None:
    """Ensure the Kafka topics and print each one's state; an error exits with 1."""
    from pipeline.stack.kafka import ensure_topics

    settings = settings_or_exit()
    try:
        for name, state in sorted(ensure_topics(settings).items()):
            console.print(f"  {name}: {state}")
    except Exception as exc:
        raise fail(exc) from None


@stack_app.command("dashboard")
def stack_dashboard_cmd(
    output: Annotated[
        Path | None, typer.Option(help="file to write (default: infra/grafana/newsflow.json)")
    ] = None,
) -> None:
    """Regenerate the Grafana dashboard JSON from infra/grafana/dashboard.py (dashboard as
    code). Needs a source checkout and the `dev` extra (grafana-foundation-sdk)."""
    import importlib.util
    import sys

    source = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboard.py"
    if not source.is_file():
        raise fail(FileNotFoundError(f"{source} is missing: run this in a source checkout"), 2)
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        typer.echo("this install lacks the `dev` extra: pip install 'newsflow[dev]'", err=True)
        raise typer.Exit(2)
    spec = importlib.util.spec_from_file_location("newsflow_grafana_dashboard", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    path = module.write(output or module.OUTPUT)
    console.print(f"wrote {path}")
