"""`newsflow web`, `newsflow web-bench`, `newsflow users`, `newsflow review`: the review and
on-call web app, its accounts and the review queue."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from monitoring.cli.helpers import fail, settings_or_exit

users_app = typer.Typer(help="Accounts of the review and operations web app.", no_args_is_help=True)
review_app = typer.Typer(
    help="The review queue: Label Studio export/import and agreement.", no_args_is_help=True
)


def web_cmd(
    host: Annotated[str | None, typer.Option(help="address (default NEWSFLOW_WEB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default NEWSFLOW_WEB_PORT)")] = None,
) -> None:
    """Serve the review and on-call web app (reviewers label samples; on-call reads drift
    runs, reports and model history). Add an account first: `newsflow users add`."""
    import uvicorn

    from monitoring.web.app import create_app
    from monitoring.web.metrics import serve_web_metrics

    settings = settings_or_exit()
    app = create_app(settings)
    serve_web_metrics(app.state.ctx.metrics, settings.web_metrics_port, settings.metrics_host)
    uvicorn.run(
        app,
        host=host or settings.web_host,
        port=port or settings.web_port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
    )


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="lower-case login name")],
    role: Annotated[
        str, typer.Option(help="reviewer | admin (admin = on-call pages)")
    ] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin (scripts)")
    ] = False,
) -> None:
    """Create an account. The password is asked for (hidden) unless --password-stdin."""
    from monitoring.web.users import UserError, add_user
    from pipeline.core.db.engine import make_engine

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    engine = make_engine(settings_or_exit())
    try:
        user = add_user(engine, username, password, role)
    except UserError as exc:
        raise fail(exc, 2) from None
    typer.echo(f"added {user.username} ({user.role})")


@review_app.command("export")
def review_export(
    path: Annotated[Path, typer.Argument(help="JSON file to write (Label Studio tasks)")],
    status: Annotated[str, typer.Option(help="pending | done")] = "pending",
    limit: Annotated[int, typer.Option(min=1)] = 10_000,
    config: Annotated[
        Path | None, typer.Option(help="also write the Label Studio labelling config (XML)")
    ] = None,
) -> None:
    """Export review items as Label Studio tasks, the model's pick as pre-annotation."""
    from monitoring.web.labelstudio import export_tasks, label_config
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.predictions import select_latest_model_labels

    if status not in {"pending", "done"}:
        raise typer.BadParameter("status must be pending or done")
    engine = make_engine(settings_or_exit())
    tasks = export_tasks(engine, status=status, limit=limit)
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1))
    typer.echo(f"wrote {len(tasks)} tasks to {path}")
    if config:
        config.write_text(label_config(select_latest_model_labels(engine)))
        typer.echo(f"wrote the labelling config to {config}")


@review_app.command("import")
def review_import(
    path: Annotated[Path, typer.Argument(help="Label Studio JSON export (annotated tasks)")],
) -> None:
    """Apply Label Studio annotations to pending review items; print what was rejected.
    Exits 1 when any task was rejected."""
    from monitoring.web.labelstudio import import_annotations
    from pipeline.core.db.engine import make_engine

    try:
        tasks = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise fail(ValueError(f"cannot read {path}: {exc}"), 2) from None
    report = import_annotations(make_engine(settings_or_exit()), tasks)
    typer.echo(f"applied {report.applied} labels; rejected {len(report.rejected)}")
    for ref, why in report.rejected[:50]:
        typer.echo(f"  {ref}: {why}", err=True)
    if report.rejected:
        raise typer.Exit(1)


@review_app.command("stats")
def review_stats() -> None:
    """Queue size and inter-reviewer agreement (items labelled twice)."""
    from monitoring.web.review_queue import agreement
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.reviews import count_reviews_by_status

    engine = make_engine(settings_or_exit())
    counts = count_reviews_by_status(engine)
    a = agreement(engine)
    rate = f"{100 * a.rate:.1f}%" if a.rate is not None else "-"
    typer.echo(json.dumps({"items": counts, "agreement_pairs": a.pairs, "agreement": rate}))


def web_bench_cmd(
    items: Annotated[int, typer.Option(min=1, help="review items queued")] = 100_000,
    requests: Annotated[int, typer.Option(min=10, help="review pages measured")] = 300,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Measure the review page's server time with a large queue (target p95 ≤ 100 ms), in a
    scratch database that is dropped afterwards."""
    from monitoring.web.bench import run_web_bench

    try:
        result = run_web_bench(
            settings_or_exit(), items=items, requests=requests, progress=lambda m: typer.echo(m)
        )
    except Exception as exc:  # a failed benchmark says why, no traceback
        raise fail(exc) from None
    g, p = result.review_get_ms, result.label_post_ms
    typer.echo(
        f"{items:,} items queued in {result.seed_seconds:.1f} s; GET /review server time "
        f"p50 {g['p50']:.1f} ms, p95 {g['p95']:.1f} ms, p99 {g['p99']:.1f} ms; "
        f"POST label p95 {p['p95']:.1f} ms; client p95 {result.client_get_ms['p95']:.1f} ms; "
        f"target p95 ≤ {result.target_p95_ms:.0f} ms: {'met' if result.ok else 'MISSED'}"
    )
    if json_path:
        json_path.write_text(json.dumps(result.to_json(), indent=2))


def register(app: typer.Typer) -> None:
    """The web app's commands (they need the `web` extra)."""
    app.command("web")(web_cmd)
    app.command("web-bench")(web_bench_cmd)
    app.add_typer(users_app, name="users")
    app.add_typer(review_app, name="review")
