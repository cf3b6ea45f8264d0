"""`newsflow config show` and `newsflow schema`: the effective settings and the published
article schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from monitoring.cli.helpers import console, settings_or_exit

config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)


@config_app.command("show")
def config_show_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the effective settings (environment, .env and defaults), secrets masked."""
    values = settings_or_exit().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    table = Table("setting", "environment variable", "value")
    for name, value in values.items():
        table.add_row(name, f"NEWSFLOW_{name.upper()}", str(value))
    console.print(table)


def schema_cmd(
    output: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Print the JSON Schema of article messages (schema v1) for producer teams."""
    from pipeline.schemas import article_json_schema

    text = json.dumps(article_json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
