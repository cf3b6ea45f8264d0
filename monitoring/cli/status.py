"""`newsflow status`: the on-call engineer's one screen."""

from __future__ import annotations

from typing import Annotated

import typer

from monitoring.cli.helpers import settings_or_exit


def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One screen: services, throughput, lag, champion, drift runs, retraining, review queue."""
    import json

    from rich.console import Console
    from rich.table import Table

    from monitoring.status import gather
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        st = gather(settings, engine)
    finally:
        engine.dispose()
    if as_json:
        import dataclasses

        typer.echo(json.dumps(dataclasses.asdict(st), indent=2, default=str))
        return
    con = Console()
    up = ", ".join(f"{s['name']} {'up' if s['up'] else 'DOWN'}" for s in st.services)
    champ = st.champion or {}
    con.print(f"[bold]services[/bold] {up}")
    con.print(
        f"[bold]throughput[/bold] {st.throughput_per_min or 0:.0f}/min (last 5 min)   "
        f"[bold]lag[/bold] {st.lag if st.lag is not None else '?'}   "
        f"[bold]open review items[/bold] {st.open_review_items}"
    )
    con.print(
        f"[bold]champion[/bold] version {champ.get('version', '-')} "
        f"({champ.get('model_version', '-')})   serving (15 min): {st.serving_versions}"
    )
    t = Table("drift run", "started", "level", "window", "PSI conf", "PSI topics", "est. acc")
    for r in st.drift_runs:
        t.add_row(
            str(r["id"]),
            str(r["started_at"])[:19],
            r["level"],
            str(r["window_size"]),
            _f(r["psi_confidence"]),
            _f(r["psi_topics"]),
            _f(r["estimated_accuracy"]),
        )
    con.print(t)
    e = Table("event", "at", "kind", "version", "previous", "reason")
    for r in st.model_events:
        e.add_row(
            str(r["id"]),
            str(r["at"])[:19],
            r["kind"],
            str(r["version"]),
            str(r["previous_version"]),
            str(r["reason"])[:60],
        )
    con.print(e)


def _f(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"
