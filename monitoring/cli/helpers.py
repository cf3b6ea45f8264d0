"""What every command module shares: the consoles, settings or a clean exit, an error as an
exit code, the stand-in for a command whose extra is not installed, and the model folder a
measuring command works on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

console = Console()
err_console = Console(stderr=True)


def settings_or_exit() -> Settings:
    """The effective settings; a bad setting prints why and exits with 2."""
    try:
        return load_settings()
    except NewsflowError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(exc: Exception, code: int = 1) -> typer.Exit:
    """Print ``exc`` as one error line; the caller raises the returned exit."""
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code)


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works for this release; ``new`` replaces it."""
    err_console.print(
        f"[yellow]deprecated:[/yellow] `{old}` will be removed in the next release; use `{new}`",
        highlight=False,
        soft_wrap=True,
    )


def missing_extra(app: typer.Typer, names: tuple[str, ...], extra: str) -> None:
    """Register ``names`` on ``app`` as commands that say which extra to install (exit 2)."""

    def unavailable() -> None:
        typer.echo(
            f"this install lacks the `{extra}` extra: pip install 'newsflow[{extra}]'", err=True
        )
        raise typer.Exit(2)

    for name in names:
        app.command(name, help=f"(needs the `{extra}` extra)")(unavailable)


@contextlib.contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    """One database engine for one command, disposed afterwards."""
    from pipeline.core.db.engine import make_engine

    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def model_folder(settings: Settings, model_dir: Path | None) -> Path:
    """``model_dir``, else NEWSFLOW_MODEL_DIR, else the registry champion's local copy."""
    folder = model_dir or settings.model_dir
    if folder is None:
        from pipeline.core import registry

        info = registry.version_by_alias(settings, registry.CHAMPION)
        if info is None:
            raise ValueError("no model: pass --model-dir or train a champion first")
        folder = registry.local_copy(settings, info.version)
    return folder
