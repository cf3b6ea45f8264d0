"""`newsflow drift check`, `newsflow retrain`, `newsflow scheduler`: drift monitoring of the
champion and the retraining it decides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from monitoring.cli.helpers import fail, settings_or_exit

drift_app = typer.Typer(help="Drift monitoring of the champion.", no_args_is_help=True)


@drift_app.command("check")
def drift_check_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    model_dir: Annotated[
        Path | None, typer.Option(help="check this model folder instead of the champion")
    ] = None,
    no_report: Annotated[bool, typer.Option(help="skip the Evidently HTML report")] = False,
) -> None:
    """PSI of the latest window's confidence and topic mix against the champion's reference
    (levels ok < warn < drift); records the run and writes an Evidently report."""
    import json

    from rich.console import Console

    from monitoring.alerts import delivery_pass
    from monitoring.drift import run_drift_check
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        result = run_drift_check(settings, engine=engine, model_dir=model_dir, report=not no_report)
        delivery_pass(settings, engine)  # send the alerts it raised (the scheduler does too)
    except Exception as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        colour = {"ok": "green", "warn": "yellow", "drift": "red"}.get(result.level, "white")
        Console().print(
            f"[{colour}]{result.level}[/{colour}] {result.reason} "
            f"(window {result.window_size}, est. accuracy "
            f"{result.estimated_accuracy or float('nan'):.3f}) "
            f"report: {result.report_path}"
        )
        if result.decision is not None:
            Console().print(f"decision {result.decision.action}: {result.decision.reason}")
    if result.level == "error":
        raise typer.Exit(1)


@drift_app.command("baseline")
def drift_baseline_cmd(
    start: Annotated[
        str,
        typer.Option("--from", help="window start, ISO 8601 (no zone = UTC)", show_default=False),
    ],
    end: Annotated[
        str,
        typer.Option(
            "--to", help="window end (excluded), ISO 8601 (no zone = UTC)", show_default=False
        ),
    ],
    model_dir: Annotated[
        Path | None, typer.Option(help="re-score with this model folder instead of the champion")
    ] = None,
) -> None:
    """Set the champion's drift reference from the articles received between --from and
    --to, re-scored by the champion. Refused (nothing changes): reversed or future times,
    fewer than NEWSFLOW_LIVE_REFERENCE_ROWS articles, a window overlapping a drift run
    flagged on confidence."""
    from monitoring.baseline import BaselineRefused, parse_time, set_baseline
    from monitoring.cli.helpers import console, engine_for, err_console, model_folder
    from monitoring.reference import describe, rhythm, settings_thresholds

    settings = settings_or_exit()
    try:
        (t0, naive0), (t1, naive1) = parse_time(start), parse_time(end)
    except BaselineRefused as exc:
        raise fail(exc, 2) from None
    if naive0 or naive1:
        err_console.print(
            f"note: times without a zone are taken as UTC: {t0.isoformat()} – {t1.isoformat()}",
            highlight=False,
        )
    try:
        folder = model_folder(settings, model_dir)
        with engine_for(settings) as engine:
            ref = set_baseline(settings, engine, folder, start=t0, end=t1)
    except BaselineRefused as exc:
        raise fail(exc, 2) from None
    except Exception as exc:
        raise fail(exc) from None
    cuts = settings_thresholds(settings, ref)
    console.print(
        f"reference #{ref.id} for {ref.model_version}: {describe(ref)}, {ref.n_rows} rows"
        f"{'' if rhythm(ref) == 'whole' else ', topic mix ' + rhythm(ref)}; {ref.reason}",
        highlight=False,
    )
    console.print(
        f"levels: confidence warn {cuts.confidence.warn:.3f} / drift {cuts.confidence.drift:.3f}, "
        f"topics warn {cuts.topics.warn:.3f} / drift {cuts.topics.drift:.3f} ({cuts.note})",
        highlight=False,
    )


def retrain_cmd(
    reason: Annotated[str, typer.Option(help="why; recorded on the drift run and the event")],
    by: Annotated[str, typer.Option(help="who asks (recorded)")] = "",
) -> None:
    """Ask for a retraining now: runs the scheduler's drift job with this request (a drift
    run records the decision and its evidence), then retrains on the base set plus reviewed
    labels (single flight, cooldown and daily cap still apply)."""
    from rich.console import Console

    from monitoring.alerts import delivery_pass
    from monitoring.decision import RetrainRequest
    from monitoring.scheduler import drift_job
    from pipeline.core.db.engine import make_engine

    settings = settings_or_exit()
    try:
        request = RetrainRequest(reason=reason, requested_by=by)
    except ValueError as exc:
        raise fail(exc, 2) from None
    engine = make_engine(settings)
    try:
        result, outcome = drift_job(settings, engine, request=request)
        delivery_pass(settings, engine)
    except Exception as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    if result is None:
        Console().print("[yellow]another scheduler holds the drift lock; try again[/yellow]")
        raise typer.Exit(1)
    Console().print(f"drift run #{result.run_id}: {result.level}")
    if outcome is not None:
        Console().print(f"retraining: {outcome.status} ({outcome.reason})")
    if outcome is None or outcome.status not in {"promoted", "rejected"}:
        raise typer.Exit(1)


def scheduler_cmd() -> None:
    """Run the drift check every NEWSFLOW_DRIFT_INTERVAL_MINUTES (default 15) and retrain when
    the check decides to: an estimated or reviewed accuracy drop beyond
    NEWSFLOW_RETRAIN_ACCURACY_MARGIN (a PSI shift alone only alerts); single flight, cooldown,
    daily cap. Ctrl-C stops it."""
    from monitoring.scheduler import run_scheduler
    from pipeline.core.logs import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    run_scheduler(settings)
