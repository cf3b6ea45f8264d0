"""`newsflow topics discover | candidates | accept | dismiss | remove | retrain`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from pipeline.cli import console, fail, settings_or_exit
from pipeline.core.settings import Settings


@contextlib.contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    """One engine for one command, disposed afterwards."""
    from pipeline.core.db.engine import make_engine

    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def discover_cmd(
    json_path: Annotated[Path | None, typer.Option("--json", help="also write them here")] = None,
) -> None:
    """Cluster the articles reviewers marked "none of these" and the least confident
    predictions; store and print the ranked candidates (replaces earlier open ones)."""
    from monitoring.topics.service import run_discovery

    settings = settings_or_exit()
    with _engine(settings) as engine:
        try:
            found = run_discovery(settings, engine)
        except Exception as exc:
            raise fail(exc) from None
    _table(found)
    if json_path:
        json_path.write_text(json.dumps([c.to_json() for c in found], indent=2) + "\n")


def candidates_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The open candidates of the latest discovery, best first."""
    from monitoring.topics.onboarding import candidates

    with _engine(settings_or_exit()) as engine:
        found = candidates(engine)
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in found], indent=2))
    else:
        _table(found)


def accept_cmd(
    candidate: Annotated[int, typer.Argument(help="candidate id (see `topics candidates`)")],
    name: Annotated[str, typer.Argument(help="the new topic's name (1-64 characters)")],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Name a candidate: a new topic whose members go to the review queue first, with the
    name suggested. Once it has NEWSFLOW_TOPIC_MIN_LABELS reviewed examples, `topics
    retrain` (or the scheduler) trains a champion that knows it."""
    from monitoring.topics.onboarding import TopicError, accept
    from monitoring.topics.service import champion_labels

    settings = settings_or_exit()
    with _engine(settings) as engine:
        try:
            queued = accept(
                engine, candidate, name, admin=by, known_labels=champion_labels(settings)[1]
            )
        except TopicError as exc:
            raise fail(exc, 2) from None
    console.print(f"topic {name.strip()!r}: {queued} articles queued for review")


def dismiss_cmd(
    candidate: Annotated[int, typer.Argument(help="candidate id")],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Dismiss a candidate (nothing is queued)."""
    from monitoring.topics.onboarding import TopicError, dismiss

    with _engine(settings_or_exit()) as engine:
        try:
            dismiss(engine, candidate, admin=by)
        except TopicError as exc:
            raise fail(exc, 2) from None
    console.print(f"candidate {candidate} dismissed")


def remove_cmd(
    name: Annotated[str, typer.Argument(help="a topic of the champion")],
    into: Annotated[
        str | None, typer.Option("--into", help="merge into this topic instead of removing")
    ] = None,
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Remove a topic (its examples are dropped), or merge it into another (--into: its
    examples count as that topic), at the next retraining (`topics retrain` or the
    scheduler). Both sides must be topics of the champion."""
    from monitoring.topics.onboarding import TopicError, retire
    from monitoring.topics.service import champion_labels

    settings = settings_or_exit()
    with _engine(settings) as engine:
        try:
            retire(engine, name, into=into, admin=by, champion_labels=champion_labels(settings)[1])
        except TopicError as exc:
            raise fail(exc, 2) from None
    what = f"merged into {into!r}" if into else "removed"
    console.print(f"topic {name!r} will be {what} at the next retraining")


def cancel_cmd(
    name: Annotated[str, typer.Argument(help="a topic being onboarded")],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Stop onboarding a topic: reviewers no longer see it; its pending reviews are withdrawn."""
    from monitoring.topics.onboarding import TopicError, cancel

    with _engine(settings_or_exit()) as engine:
        try:
            withdrawn = cancel(engine, name, admin=by)
        except TopicError as exc:
            raise fail(exc, 2) from None
    console.print(f"topic {name!r} cancelled; {withdrawn} pending reviews withdrawn")


def retrain_cmd(
    steps: Annotated[int | None, typer.Option(help="stop after N steps (smoke runs)")] = None,
) -> None:
    """Train a champion that also knows the onboarding topics (once each has its labels)
    and no longer has the topics asked to be removed or merged."""
    from monitoring.topics.service import retrain_if_ready
    from retraining.train import TrainConfig

    settings = settings_or_exit()
    with _engine(settings) as engine:
        try:
            outcome = retrain_if_ready(
                settings, engine, cfg=TrainConfig(epochs=settings.retrain_epochs, max_steps=steps)
            )
        except Exception as exc:
            raise fail(exc) from None
    if outcome is None:
        console.print("nothing to do: no onboarding topic has all its reviewed examples yet")
        return
    console.print_json(json.dumps(outcome.to_json()))
    if outcome.status != "promoted":
        raise typer.Exit(1)


def _table(found: list) -> None:  # type: ignore[type-arg]
    table = Table("id", "rank", "size", "separation", "none of these", "terms", "examples")
    for c in found:
        table.add_row(
            str(c.id),
            str(c.rank),
            str(c.size),
            f"{c.separation:.2f}",
            str(c.none_of_these),
            ", ".join(c.terms[:6]),
            " | ".join(e[:40] for e in c.examples[:2]),
        )
    console.print(table)


def register(topics_app: typer.Typer) -> None:
    topics_app.command("discover")(discover_cmd)
    topics_app.command("candidates")(candidates_cmd)
    topics_app.command("accept")(accept_cmd)
    topics_app.command("dismiss")(dismiss_cmd)
    topics_app.command("remove")(remove_cmd)
    topics_app.command("cancel")(cancel_cmd)
    topics_app.command("retrain")(retrain_cmd)
