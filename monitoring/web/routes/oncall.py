"""On-call pages (admin role): dashboard, drift runs and their reports, model history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from monitoring.reference import describe, rhythm, settings_thresholds
from monitoring.web import charts, review_queue
from monitoring.web.deps import AdminUser, Ctx, Denied
from pipeline.core.db import drift_runs, events, predictions, references
from pipeline.core.db.drift_runs import DriftRun
from pipeline.core.settings import Settings

# Evidently's report is a self-contained page with inline scripts: it runs sandboxed (an
# opaque origin: no cookies, no access to this app).
REPORT_CSP = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:"

router = APIRouter()


@router.get("/dashboard")
def dashboard(ctx: Ctx, signed: AdminUser) -> HTMLResponse:
    from monitoring.status import gather

    status = gather(ctx.settings, ctx.db, outside=ctx.outside)
    runs = list(reversed(drift_runs.list_drift_runs(ctx.db, limit=50)))
    return ctx.page(
        "dashboard.html",
        signed=signed,
        status=status,
        last_run=runs[-1] if runs else None,
        psi_chart=_psi_chart(runs, ctx.settings),
        agreement=review_queue.agreement(ctx.db),
    )


@router.get("/drift")
def drift_list(ctx: Ctx, signed: AdminUser) -> HTMLResponse:
    runs = drift_runs.list_drift_runs(ctx.db, limit=200)
    ordered = list(reversed(runs))
    accuracy = charts.line_chart(
        [
            ("estimated (label-free)", "#2a6fdb", [r.estimated_accuracy for r in ordered]),
            ("reviewed", "#1b9e4b", [r.reviewed_accuracy for r in ordered]),
        ],
        x_labels=[f"#{r.id}" for r in ordered],
        title="Accuracy: label-free estimate and reviewed",
        lo=0.0,
        hi=1.0,
    )
    return ctx.page(
        "drift_list.html",
        signed=signed,
        runs=runs,
        psi_chart=_psi_chart(ordered, ctx.settings),
        accuracy_chart=accuracy,
        in_use=_reference_in_use(ctx, runs),
        recent_references=references.list_references(ctx.db, limit=10),
        live_rows=ctx.settings.live_reference_rows,
    )


@router.get("/drift/{run_id}")
def drift_detail(ctx: Ctx, signed: AdminUser, run_id: int) -> HTMLResponse:
    run = drift_runs.get_drift_run(ctx.db, run_id=run_id)
    if run is None:
        raise Denied(404, f"No drift run {run_id}.")
    hist = run.details.get("histogram")
    chart = None
    if hist:
        edges = [float(e) for e in hist["edges"]]
        names = [f"≤{e:.2f}" for e in edges] + [f">{edges[-1]:.2f}" if edges else "all"]
        chart = charts.bar_pairs(
            names[: len(hist["reference"])],
            ("reference", "#888888", hist["reference"]),
            ("current window", "#d9480f", hist["current"]),
            title="Confidence histogram: share per bin",
        )
    used = (
        references.get_reference(ctx.db, reference_id=run.reference_id)
        if run.reference_id is not None
        else None
    )
    return ctx.page(
        "drift_detail.html",
        signed=signed,
        run=run,
        used=used,
        used_label=describe(used) if used is not None else None,
        hist_chart=chart,
        has_report=_report_file(run, ctx.reports_root) is not None,
    )


@router.get("/drift/{run_id}/report")
def drift_report(ctx: Ctx, signed: AdminUser, run_id: int) -> Response:
    run = drift_runs.get_drift_run(ctx.db, run_id=run_id)
    path = _report_file(run, ctx.reports_root) if run else None
    if path is None:
        raise Denied(404, f"Drift run {run_id} has no report file.")
    response = FileResponse(path, media_type="text/html")
    response.headers["Content-Security-Policy"] = REPORT_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@router.get("/models")
def models(ctx: Ctx, signed: AdminUser) -> HTMLResponse:
    versions: list[Any] = []
    registry_error = None
    try:
        from pipeline.core import registry

        versions = registry.list_versions(ctx.settings)
    except Exception as exc:  # the page still shows Postgres' history
        registry_error = str(exc)
    history = events.list_model_events(ctx.db)
    return ctx.page(
        "models.html",
        signed=signed,
        versions=versions,
        registry_error=registry_error,
        events=history,
        # the live check before each promotion decision (retraining.live_check's figures)
        live_checks=[
            (e, e.metrics["live_check"])
            for e in history
            if isinstance(e.metrics, dict) and isinstance(e.metrics.get("live_check"), dict)
        ],
        serving=predictions.count_predictions_by_version(ctx.db),
    )


def _reference_in_use(ctx: Ctx, runs: list[DriftRun]) -> dict[str, Any] | None:
    """The active reference of the version the latest run checked (else the newest active
    one), what it is, the cut-offs it gives each metric now, and (training) the latest
    refused live window."""
    version = next((r.model_version for r in runs if r.model_version), None)
    ref = references.active_reference(ctx.db, model_version=version) if version else None
    if ref is None:
        ref = next((r for r in references.list_references(ctx.db) if r.status == "active"), None)
    if ref is None:
        return None
    # while the training reference stands, why the latest live window was refused
    refused = (
        references.last_rejected_live(ctx.db, model_version=ref.model_version)
        if ref.kind == "training"
        else None
    )
    return {
        "ref": ref,
        "label": describe(ref),
        "rhythm": rhythm(ref),
        "cuts": settings_thresholds(ctx.settings, ref),
        "refused": refused,
    }


def _report_file(run: DriftRun | None, root: Path) -> Path | None:
    """The run's report, only when it lies inside the reports folder."""
    raw = run.report_path if run else None
    if not raw:
        return None
    path = Path(raw).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _psi_chart(runs: list[DriftRun], settings: Settings) -> str:
    return charts.line_chart(
        [
            ("PSI confidence", "#d9480f", [r.psi_confidence for r in runs]),
            ("PSI topics", "#7048e8", [r.psi_topics for r in runs]),
        ],
        x_labels=[f"#{r.id}" for r in runs],
        title="PSI per drift run",
        thresholds=[("warn", settings.drift_warn), ("drift", settings.drift_threshold)],
        lo=0.0,
    )
