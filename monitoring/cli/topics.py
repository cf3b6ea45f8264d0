"""`newsflow topics discover | candidates | accept | dismiss | remove | cancel | retrain`: the
news topics the model knows, and new ones (discovery, onboarding).

`newsflow topics` alone still creates the Kafka topics, with a deprecation notice on stderr:
that is `newsflow stack topics` now, and the old spelling goes in the next release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from monitoring.cli.helpers import (
    console,
    engine_for,
    fail,
    settings_or_exit,
    warn_deprecated,
)

topics_app = typer.Typer(
    help="The news topics the model knows, and new ones (discovery, onboarding). The Kafka "
    "topics are created by `newsflow stack topics` (`newsflow topics` alone still does it, "
    "deprecated).",
    invoke_without_command=True,
)


@topics_app.callback()
def topics_cmd(ctx: typer.Context) -> None:
    """Without a subcommand (deprecated): create the Kafka topics, as `newsflow stack topics`."""
    if ctx.invoked_subcommand is not None:
        return
    from monitoring.cli.stack import create_kafka_topics

    warn_deprecated("newsflow topics", "newsflow stack topics")
    create_kafka_topics()


def discover_cmd(
    json_path: Annotated[Path | None, typer.Option("--json", help="also write them here")] = None,
) -> None:
    """Cluster the articles reviewers marked "none of these" and the least confident
    predictions; store and print the ranked candidates (replaces earlier open ones)."""
    from monitoring.topics.service import run_discovery

    settings = settings_or_exit()
    with engine_for(settings) as engine:
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

    with engine_for(settings_or_exit()) as engine:
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
    with engine_for(settings) as engine:
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

    with engine_for(settings_or_exit()) as engine:
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
    with engine_for(settings) as engine:
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

    with engine_for(settings_or_exit()) as engine:
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
    with engine_for(settings) as engine:
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


def register(app: typer.Typer) -> None:
    """The news-topic subcommands (they need the `train` extra) on ``topics_app``."""
    app.command("discover")(discover_cmd)
    app.command("candidates")(candidates_cmd)
    app.command("accept")(accept_cmd)
    app.command("dismiss")(dismiss_cmd)
    app.command("remove")(remove_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("retrain")(retrain_cmd)
