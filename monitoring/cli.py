"""The `newsflow` command: one Typer app assembled from each package's commands."""

from __future__ import annotations

from importlib.util import find_spec

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
    if all(find_spec(m) for m in ("torch", "transformers", "mlflow")):
        from retraining.cli import register as register_retraining

        register_retraining(app)
    else:  # a lean worker install has no torch/transformers
        _missing_extra(app, ("train", "models"), "train")
    return app


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
