"""`newsflow topics discover | candidates | accept | add | dismiss | list | remove | split |
cancel | retrain`: the news topics the model knows, and new ones (discovery, onboarding).

`newsflow topics` alone still creates the Kafka topics, with a deprecation notice on stderr:
that is `newsflow stack topics` now, and the old spelling goes in the next release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    also: Annotated[
        list[int] | None,
        typer.Option(
            "--also", help="another candidate of the same discovery in this topic (repeatable)"
        ),
    ] = None,
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Name a candidate (with --also: several, counted together as one topic): a new topic
    whose members go to the review queue first, with the name suggested. Once it has
    NEWSFLOW_TOPIC_MIN_LABELS reviewed examples, `topics retrain` (or the scheduler) trains
    a champion that knows it."""
    from monitoring.topics.onboarding import TopicError, accept_many
    from monitoring.topics.service import champion_labels

    settings = settings_or_exit()
    ids = [candidate, *(also or [])]
    with engine_for(settings) as engine:
        try:
            queued = accept_many(
                engine, ids, name, admin=by, known_labels=champion_labels(settings)[1]
            )
        except TopicError as exc:
            raise fail(exc, 2) from None
    which = ", ".join(f"#{i}" for i in dict.fromkeys(ids))
    console.print(f"topic {name.strip()!r} (candidates {which}): {queued} articles queued")


def add_cmd(
    name: Annotated[str, typer.Argument(help="a topic being onboarded")],
    candidates: Annotated[list[int], typer.Argument(help="candidate ids to add to it")],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Add candidates to a topic being onboarded: their members are queued with its name
    suggested and count with its own."""
    from monitoring.topics.onboarding import TopicError, add_to_topic

    with engine_for(settings_or_exit()) as engine:
        try:
            queued = add_to_topic(engine, candidates, name, admin=by)
        except TopicError as exc:
            raise fail(exc, 2) from None
    console.print(f"topic {name.strip()!r}: {queued} more articles queued for review")


def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Topics people added, with their labels, what each waits for and the new-topic gate's
    latest decision (F1 with its interval)."""
    from monitoring.topics.progress import topic_rows

    settings = settings_or_exit()
    with engine_for(settings) as engine:
        rows = topic_rows(engine, min_labels=settings.topic_min_labels)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2, default=str))
        return
    table = Table("topic", "status", "labels", "candidates", "next", "gate")
    for r in rows:
        table.add_row(
            r.name,
            r.status,
            f"{r.labelled} / {r.required}",
            ", ".join(f"#{c}" for c in r.candidates) or "-",
            r.next_step,
            r.gate_text or "-",
        )
    console.print(table)


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


def split_cmd(
    name: Annotated[str, typer.Argument(help="a topic of the champion")],
    into: Annotated[
        list[str],
        typer.Option("--into", help="a part's name (repeat: at least two parts)"),
    ],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Split a topic into parts: its reviewed examples go to the review queue first, for
    reviewers to relabel into the parts. Once every part has NEWSFLOW_TOPIC_MIN_LABELS
    reviewed labels, `topics retrain` (or the scheduler) replaces the topic by its parts,
    through the new-topic gate (each part's F1 interval) and the other topics' check."""
    from monitoring.topics.onboarding import TopicError
    from monitoring.topics.service import champion_labels
    from monitoring.topics.split import start_split

    settings = settings_or_exit()
    with engine_for(settings) as engine:
        try:
            started = start_split(
                engine, name, into, admin=by, champion_labels=champion_labels(settings)[1]
            )
        except TopicError as exc:
            raise fail(exc, 2) from None
    parts = ", ".join(repr(p) for p in started.parts)
    console.print(
        f"topic {name!r} is being split into {parts}: {started.queued} reviewed examples "
        f"queued for relabelling; each part needs {settings.topic_min_labels} labels"
    )


def cancel_cmd(
    name: Annotated[str, typer.Argument(help="a topic being onboarded, split, removed or merged")],
    by: Annotated[str, typer.Option(help="who decides (recorded)")] = "cli",
) -> None:
    """Call off what is pending for a topic: its onboarding (reviewers no longer see it), its
    split (the parts are dropped) or its removal or merge; pending reviews are withdrawn."""
    from monitoring.topics.onboarding import TopicError
    from monitoring.topics.split import cancel

    with engine_for(settings_or_exit()) as engine:
        try:
            said = cancel(engine, name, admin=by)
        except TopicError as exc:
            raise fail(exc, 2) from None
    console.print(said)


def retrain_cmd(
    steps: Annotated[int | None, typer.Option(help="stop after N steps (smoke runs)")] = None,
) -> None:
    """Train a champion that also knows the onboarding topics and the parts of a split (once
    each has its labels) and no longer has the topics asked to be removed, merged or split.
    A split whose parts are short of labels is refused, saying how many more each needs."""
    from monitoring.topics.service import retrain_if_ready
    from monitoring.topics.split import split_progress

    settings = settings_or_exit()
    with engine_for(settings) as engine:
        try:
            outcome = retrain_if_ready(settings, engine, max_steps=steps)
            waiting = [
                s
                for s in split_progress(engine, min_labels=settings.topic_min_labels)
                if not s.ready
            ]
        except Exception as exc:
            raise fail(exc) from None
    for s in waiting:
        console.print(f"refused: {s.text()}", highlight=False, soft_wrap=True)
    if outcome is None:
        console.print("nothing to do: no onboarding topic has all its reviewed examples yet")
        if waiting:
            raise typer.Exit(1)
        return
    for line in gate_lines(outcome.gate, outcome.old_classes):
        console.print(line, highlight=False, soft_wrap=True)
    console.print_json(json.dumps(outcome.to_json()))
    if outcome.status != "promoted":
        raise typer.Exit(1)


def gate_lines(gate: list[dict[str, Any]], old: dict[str, Any] | None) -> list[str]:
    """The new-topic gate's decisions in words: one line per new topic, one for the old
    classes (``ExpandOutcome.gate`` and ``.old_classes``)."""
    lines = []
    for g in gate:
        f1, p, r = g["f1"], g["precision"], g["recall"]
        line = (
            f"{g['topic']}: {g['decision']}: F1 {f1['estimate']:.3f} "
            f"[{f1['low']:.3f}, {f1['high']:.3f}] vs {g['threshold']} on {g['positives']} "
            f"held-out examples (precision {p['estimate']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"
            f", recall {r['estimate']:.3f} [{r['low']:.3f}, {r['high']:.3f}])"
        )
        if g["decision"] == "needs_labels":
            line += f"; needs {g['more_labels']} more labels"
        lines.append(line)
    if old:
        lines.append(f"old classes: {old['decision']}: {old['reason']}")
    return lines


def _table(found: list) -> None:  # type: ignore[type-arg]
    table = Table("id", "rank", "size", "separation", "none of these", "near", "terms", "examples")
    for c in found:
        table.add_row(
            str(c.id),
            str(c.rank),
            str(c.size),
            f"{c.separation:.2f}",
            str(c.none_of_these),
            ", ".join(f"#{k} ({cos:.2f})" for k, cos in c.near) or "-",
            ", ".join(c.terms[:6]),
            " | ".join(e[:40] for e in c.examples[:2]),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """The news-topic subcommands (they need the `train` extra) on ``topics_app``."""
    app.command("discover")(discover_cmd)
    app.command("candidates")(candidates_cmd)
    app.command("accept")(accept_cmd)
    app.command("add")(add_cmd)
    app.command("list")(list_cmd)
    app.command("dismiss")(dismiss_cmd)
    app.command("remove")(remove_cmd)
    app.command("split")(split_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("retrain")(retrain_cmd)
