"""`newsflow db upgrade | downgrade`: the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from monitoring.cli.helpers import console, fail, settings_or_exit

db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade_cmd(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from pipeline.core.db.migrate import current_revision, upgrade

    settings = settings_or_exit()
    try:
        upgrade(settings.database_url(), revision)
    except Exception as exc:
        raise fail(exc) from None
    console.print(f"database at revision {current_revision(settings.database_url())}")


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
