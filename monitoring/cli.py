"""The `newsflow` command: one Typer app assembled from each package's commands."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="newsflow",
    help="Streaming news-topic classification with drift monitoring, review and retraining.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


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


def build() -> typer.Typer:
    from pipeline.cli import register as register_pipeline

    register_pipeline(app)
    app.command("run")(run_cmd)
    if find_spec("torch") and find_spec("fastapi") and find_spec("apscheduler"):
        app.command("demo")(demo_cmd)
    else:
        _missing_extra(app, ("demo",), "train,monitor,web")
    app.command("status")(status_cmd)
    if find_spec("evidently") and find_spec("apscheduler"):
        app.add_typer(drift_app, name="drift")
        app.command("scheduler")(scheduler_cmd)
        app.command("retrain")(retrain_cmd)
    else:
        _missing_extra(app, ("drift", "scheduler", "retrain"), "monitor")
    if all(find_spec(m) for m in ("fastapi", "uvicorn", "jinja2", "multipart")):
        from monitoring.web.cli import register as register_web

        register_web(app)
    else:
        _missing_extra(app, ("web", "users", "review"), "web")
    if all(find_spec(m) for m in ("torch", "transformers", "mlflow", "sklearn")):
        from monitoring.topics.cli import register as register_topics
        from pipeline.cli import topics_app
        from retraining.cli import register as register_retraining

        register_retraining(app)
        register_topics(topics_app)
    else:  # a lean worker install has no torch/transformers
        _missing_extra(app, ("train", "models"), "train")
    return app


def run_cmd(
    rate: Annotated[str, typer.Option(help="rate at which articles are streamed")] = "1000/min",
    articles: Annotated[int, typer.Option(min=1, help="how many articles to stream")] = 2000,
    epochs: Annotated[int, typer.Option(min=1, help="epochs if a first model is trained")] = 3,
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of malformed input")
    ] = 0.01,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the summary here")] = None,
) -> None:
    """The main job on local defaults: start the stack, train a first model if none is
    registered, run a worker, stream AG News articles, and report what was stored."""
    import json

    from rich.console import Console
    from rich.progress import Progress

    from monitoring.run import RunOptions, run_main
    from pipeline.cli import fail, settings_or_exit
    from pipeline.core.errors import NewsflowError
    from pipeline.produce import parse_rate

    console = Console()
    settings = settings_or_exit()
    try:
        options = RunOptions(parse_rate(rate) * 60, articles, epochs, bad_share)
    except ValueError as exc:
        raise fail(exc, 2) from None
    with Progress(console=console) as bar:
        train_task = bar.add_task("training", total=None, visible=False)
        stream_task = bar.add_task("streaming", total=articles, visible=False)

        def on_train(msg: str, step: int, total: int) -> None:
            bar.update(train_task, description=msg, completed=step, total=total, visible=True)

        def on_stream(n: int) -> None:
            bar.update(stream_task, advance=n, visible=True)

        try:
            summary = run_main(
                settings, options, report=console.print, progress=on_stream, train_progress=on_train
            )
        except (NewsflowError, RuntimeError) as exc:
            raise fail(exc) from None
    for key, value in summary.items():
        console.print(f"  {key}: {value}")
    console.print("the stack keeps running; `newsflow stack down` stops it")
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2, default=str))
    if summary["lost"] or summary["duplicates"]:
        raise typer.Exit(1)


def demo_cmd(
    quick: Annotated[
        bool, typer.Option(help="smaller streams and one first epoch: about 15 min here")
    ] = False,
    rate: Annotated[str, typer.Option(help="streaming rate")] = "1500/min",
    articles: Annotated[
        int | None, typer.Option(min=600, help="articles per phase (stable, then shifted)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="epochs of the first model")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(min=1, help="epochs when retraining")] = (
        None
    ),
    reuse_model: Annotated[
        bool,
        typer.Option(help="reuse the demo's registered model instead of a fresh one per run"),
    ] = False,
    stay: Annotated[
        bool, typer.Option(help="after the summary keep the web app serving until Ctrl-C")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the summary here")] = None,
) -> None:
    """The whole loop with one command: stack, first model, worker, scheduler and web app;
    a stable stream, then a shifted one; drift detected; simulated reviewer labels; retrain;
    promotion; hot swap; a summary. Ctrl-C stops everything it started."""
    import dataclasses
    import json
    import signal

    from rich.console import Console
    from rich.progress import Progress

    from monitoring.demo import DemoOptions, run_demo
    from pipeline.cli import fail, settings_or_exit
    from pipeline.core.errors import NewsflowError
    from pipeline.produce import parse_rate

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Ctrl-C and `kill` both stop the demo cleanly, even when started in the background
    # (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    console = Console()
    settings = settings_or_exit()
    options = DemoOptions.for_quick() if quick else DemoOptions()
    try:
        per_min = parse_rate(rate) * 60
    except ValueError as exc:
        raise fail(exc, 2) from None
    if per_min < 1000:
        console.print(f"[yellow]note: {per_min:.0f}/min is below the rated 1,000/min[/yellow]")
    changes: dict[str, object] = {"rate_per_min": per_min, "fresh": not reuse_model}
    if articles:
        changes.update(stable_articles=articles, shifted_articles=articles)
    if epochs:
        changes["epochs"] = epochs
    if retrain_epochs:
        changes["retrain_epochs"] = retrain_epochs
    options = dataclasses.replace(options, **changes)  # type: ignore[arg-type]
    with Progress(console=console) as bar:
        train_task = bar.add_task("training", total=None, visible=False)

        def on_train(msg: str, step: int, total: int) -> None:
            bar.update(train_task, description=msg, completed=step, total=total, visible=True)

        def on_stream(name: str, n: int):  # type: ignore[no-untyped-def]
            task = bar.add_task(f"streaming {name}", total=n)
            return lambda k: bar.update(task, advance=k)

        try:
            summary = run_demo(
                settings,
                options,
                report=console.print,
                stream_progress=on_stream,
                train_progress=on_train,
            )
        except KeyboardInterrupt:
            console.print("[yellow]stopped: the worker, scheduler and web app are down[/yellow]")
            raise typer.Exit(130) from None
        except (NewsflowError, RuntimeError) as exc:
            raise fail(exc) from None
    _print_demo_summary(console, summary)
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"summary written to {json_path}")
    if stay:
        from pipeline.worker_process import start_command, stop_process

        proc = start_command(settings, ["web"], settings.home / "logs" / "demo-web.log")
        console.print(f"web app at {summary['web']}; Ctrl-C stops it")
        try:
            proc.wait()
        except KeyboardInterrupt:
            stop_process(proc)
    if summary["lost"] or summary["duplicates"] or not summary["promoted_version"]:
        raise typer.Exit(1)


def _print_demo_summary(console: object, summary: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    assert isinstance(console, Console)
    table = Table("figure", "value", title="newsflow demo summary")
    for key in (
        "articles",
        "lost",
        "duplicates",
        "throughput_per_min",
        "latency_p95_s",
        "drift_detected",
        "initial_version",
        "promoted_version",
        "serving_promoted",
        "simulated_labels",
        "web",
        "seconds",
    ):
        table.add_row(key, str(summary.get(key)))
    runs = summary.get("drift_runs") or []
    assert isinstance(runs, list)
    table.add_row("drift runs", ", ".join(f"#{r['id']} {r['level']}" for r in runs) or "-")
    reports = summary.get("report_paths") or []
    assert isinstance(reports, list)
    table.add_row("latest report", str(reports[-1]) if reports else "-")
    console.print(table)
    console.print("simulated_labels are reviewer labels simulated from the sources' true labels")


drift_app = typer.Typer(help="Drift monitoring of the champion.", no_args_is_help=True)


@drift_app.command("check")
def drift_check_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    model_dir: Annotated[
        Path | None, typer.Option(help="check this model folder instead of the champion")
    ] = None,
    no_report: Annotated[bool, typer.Option(help="skip the Evidently HTML report")] = False,
) -> None:
    """PSI of the latest window's confidence and topic mix against the champion's reference
    (levels ok < warn < drift); records the run and writes an Evidently report."""
    import json

    from rich.console import Console

    from monitoring.drift import run_drift_check
    from pipeline.cli import fail, settings_or_exit
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        result = run_drift_check(settings, engine=engine, model_dir=model_dir, report=not no_report)
    except Exception as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        colour = {"ok": "green", "warn": "yellow", "drift": "red"}.get(result.level, "white")
        Console().print(
            f"[{colour}]{result.level}[/{colour}] {result.reason} "
            f"(window {result.window_size}, est. accuracy "
            f"{result.estimated_accuracy or float('nan'):.3f}) "
            f"report: {result.report_path}"
        )
        if result.decision is not None:
            Console().print(f"decision {result.decision.action}: {result.decision.reason}")
    if result.level == "error":
        raise typer.Exit(1)


def retrain_cmd(
    reason: Annotated[str, typer.Option(help="why; recorded on the drift run and the event")],
    by: Annotated[str, typer.Option(help="who asks (recorded)")] = "",
) -> None:
    """Ask for a retraining now: runs the scheduler's drift job with this request (a drift
    run records the decision and its evidence), then retrains on the base set plus reviewed
    labels (single flight, cooldown and daily cap still apply)."""
    from rich.console import Console

    from monitoring.decision import RetrainRequest
    from monitoring.scheduler import drift_job
    from pipeline.cli import fail, settings_or_exit
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    try:
        request = RetrainRequest(reason=reason, requested_by=by)
    except ValueError as exc:
        raise fail(exc, 2) from None
    engine = make_engine(settings)
    try:
        result, outcome = drift_job(settings, engine, request=request)
    except Exception as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    if result is None:
        Console().print("[yellow]another scheduler holds the drift lock; try again[/yellow]")
        raise typer.Exit(1)
    Console().print(f"drift run #{result.run_id}: {result.level}")
    if outcome is not None:
        Console().print(f"retraining: {outcome.status} ({outcome.reason})")
    if outcome is None or outcome.status not in {"promoted", "rejected"}:
        raise typer.Exit(1)


def scheduler_cmd() -> None:
    """Run the drift check every NEWSFLOW_DRIFT_INTERVAL_MINUTES (default 15) and retrain when
    the check decides to: an estimated or reviewed accuracy drop beyond
    NEWSFLOW_RETRAIN_ACCURACY_MARGIN (a PSI shift alone only alerts); single flight, cooldown,
    daily cap. Ctrl-C stops it."""
    from monitoring.scheduler import run_scheduler
    from pipeline.cli import settings_or_exit
    from pipeline.core.logs import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    run_scheduler(settings)


def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One screen: services, throughput, lag, champion, drift runs, retraining, review queue."""
    import json

    from rich.console import Console
    from rich.table import Table

    from monitoring.status import gather
    from pipeline.cli import settings_or_exit
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        st = gather(settings, engine)
    finally:
        engine.dispose()
    if as_json:
        import dataclasses

        typer.echo(json.dumps(dataclasses.asdict(st), indent=2, default=str))
        return
    con = Console()
    up = ", ".join(f"{s['name']} {'up' if s['up'] else 'DOWN'}" for s in st.services)
    champ = st.champion or {}
    con.print(f"[bold]services[/bold] {up}")
    con.print(
        f"[bold]throughput[/bold] {st.throughput_per_min or 0:.0f}/min (last 5 min)   "
        f"[bold]lag[/bold] {st.lag if st.lag is not None else '?'}   "
        f"[bold]open review items[/bold] {st.open_review_items}"
    )
    con.print(
        f"[bold]champion[/bold] version {champ.get('version', '-')} "
        f"({champ.get('model_version', '-')})   serving (15 min): {st.serving_versions}"
    )
    t = Table("drift run", "started", "level", "window", "PSI conf", "PSI topics", "est. acc")
    for r in st.drift_runs:
        t.add_row(
            str(r["id"]),
            str(r["started_at"])[:19],
            r["level"],
            str(r["window_size"]),
            _f(r["psi_confidence"]),
            _f(r["psi_topics"]),
            _f(r["estimated_accuracy"]),
        )
    con.print(t)
    e = Table("event", "at", "kind", "version", "previous", "reason")
    for r in st.model_events:
        e.add_row(
            str(r["id"]),
            str(r["at"])[:19],
            r["kind"],
            str(r["version"]),
            str(r["previous_version"]),
            str(r["reason"])[:60],
        )
    con.print(e)


def _f(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def _missing_extra(app: typer.Typer, names: tuple[str, ...], extra: str) -> None:
    def unavailable() -> None:
        typer.echo(
            f"this install lacks the `{extra}` extra: pip install 'newsflow[{extra}]'", err=True
        )
        raise typer.Exit(2)

    for name in names:
        app.command(name, help=f"(needs the `{extra}` extra)")(unavailable)


def main() -> None:
    build()()
