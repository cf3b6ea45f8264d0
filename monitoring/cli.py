"""The `newsflow` command: one Typer app assembled from each package's commands."""

from __future__ import annotations

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
    return app


def main() -> None:
    build()()
