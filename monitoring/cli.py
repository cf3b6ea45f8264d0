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


def build() -> typer.Typer:
    from pipeline.cli import register as register_pipeline

    register_pipeline(app)
    app.command("run")(run_cmd)
    if all(find_spec(m) for m in ("torch", "transformers", "mlflow")):
        from retraining.cli import register as register_retraining

        register_retraining(app)
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
