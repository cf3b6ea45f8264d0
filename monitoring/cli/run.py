"""`newsflow run` and `newsflow demo`: the main job, and the whole loop, on local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from monitoring.cli.helpers import fail, settings_or_exit


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
        "drift_level",
        "retraining_started",
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
