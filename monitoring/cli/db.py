"""`newsflow db upgrade | downgrade | prune | bench-retention`: the database schema (Alembic
migrations) and its retention (day partitions of articles and predictions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from monitoring.cli.helpers import console, engine_for, fail, settings_or_exit

db_app = typer.Typer(
    help="Database schema migrations (Alembic) and retention.", no_args_is_help=True
)

PRUNE_BUSY_EXIT = 3


@db_app.command("upgrade")
def db_upgrade_cmd(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head), then create the day partitions
    ahead (NEWSFLOW_PARTITIONS_AHEAD_DAYS)."""
    from pipeline.core.db.migrate import current_revision, upgrade
    from pipeline.core.db.partitions import create_partitions_ahead

    settings = settings_or_exit()
    try:
        upgrade(settings.database_url(), revision)
        with engine_for(settings) as engine:
            created = create_partitions_ahead(engine, ahead=settings.partitions_ahead_days)
    except Exception as exc:
        raise fail(exc) from None
    console.print(f"database at revision {current_revision(settings.database_url())}")
    if created:
        console.print(f"partitions created: {', '.join(created)}")


@db_app.command("downgrade")
def db_downgrade_cmd(revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Revert migrations down to REVISION (default: one step; `base` drops everything)."""
    from pipeline.core.db.migrate import current_revision, downgrade

    settings = settings_or_exit()
    try:
        downgrade(settings.database_url(), revision)
    except Exception as exc:
        raise fail(exc) from None
    console.print(f"database at revision {current_revision(settings.database_url())}")


@db_app.command("prune")
def db_prune_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would go; change nothing")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(help="seconds to wait for a prune already running (0: refuse at once)"),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="the summary as JSON")] = False,
) -> None:
    """Retention now: create the partitions ahead, drop articles and predictions older than
    NEWSFLOW_RETENTION_DAYS (keeping what reviews, live drift references and open topic
    candidates use) and cap the drift reports folder. Exit 3 when another prune runs."""
    from monitoring.retention import run_retention
    from pipeline.core.db.retention import PruneBusyError

    settings = settings_or_exit()
    if wait < 0:
        raise fail(ValueError(f"--wait must be >= 0 seconds, got {wait}"), 2)
    try:
        with engine_for(settings) as engine:
            report = run_retention(settings, engine, dry_run=dry_run, wait_s=wait)
    except PruneBusyError as exc:
        raise fail(exc, PRUNE_BUSY_EXIT) from None
    except Exception as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    for line in report.lines():
        console.print(line, highlight=False)


@db_app.command("bench-retention")
def db_bench_retention_cmd(
    days: Annotated[int, typer.Option(min=2, max=400, help="simulated days")] = 45,
    per_day: Annotated[
        int, typer.Option(min=100, help="articles a simulated day (1,440,000 = 1,000/min)")
    ] = 14_400,
    retention_days: Annotated[int, typer.Option(min=1, help="retention applied")] = 30,
    labelled_per_day: Annotated[
        int, typer.Option(min=0, help="labelled reviews a day (kept beyond retention)")
    ] = 1_440,
    full_rate_hour: Annotated[
        int, typer.Option(min=0, help="articles in the last hour (60,000 = 1,000/min)")
    ] = 60_000,
    repeats: Annotated[int, typer.Option(min=1, help="GETs per page timed")] = 20,
    keep_db: Annotated[bool, typer.Option(help="keep the scratch database")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Bounded storage, measured: DAYS simulated days into a scratch database (rows made in
    the database), the retention job after each day, the tables' size per day; then the
    server time of /, /dashboard, /drift, /models and /review on the result. Not for CI:
    minutes of work."""
    from monitoring.web.page_timing import time_pages
    from pipeline.core.db.engine import make_engine
    from pipeline.proof.retention_bench import run_retention_bench, scratch_database

    settings = settings_or_exit()
    try:
        with scratch_database(settings, keep=keep_db) as scratch:
            engine = make_engine(scratch, pool_size=4)
            try:
                result = run_retention_bench(
                    scratch,
                    engine,
                    days=days,
                    per_day=per_day,
                    retention_days=retention_days,
                    labelled_per_day=labelled_per_day,
                    full_rate_hour=full_rate_hour,
                    report=lambda line: console.print(line, highlight=False),
                )
                result.pages_ms = time_pages(scratch, engine, repeats=repeats)
            finally:
                engine.dispose()
    except Exception as exc:
        raise fail(exc) from None
    lo, hi = result.flat_after_retention()
    console.print(f"total size after day {retention_days + 2}: {lo:,.1f} to {hi:,.1f} MB")
    for path, ms in result.pages_ms.items():
        console.print(f"{path:12} server p50 {ms['p50']:7.1f} ms, p95 {ms['p95']:7.1f} ms")
    if json_path:
        json_path.write_text(json.dumps(result.to_json(), indent=2))
