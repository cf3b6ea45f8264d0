"""The newsflow Grafana dashboard, as code (grafana-foundation-sdk, the `dev` extra).

One panel for every metric an alert rule of ``infra/prometheus/`` reads: workers (up, lag,
progress, dead letters, latency, database retries, refused models), drift and accuracy,
retraining, and the review queue and web app. The JSON is checked in as
``infra/grafana/newsflow.json``; regenerate it after a change with

    newsflow stack dashboard            # or: python -m infra.grafana.dashboard

and import it into Grafana (it asks for a Prometheus data source). The unit test
``tests/unit/infra/test_dashboard.py`` checks that the file is what this module writes and
that every metric a panel queries is one the processes export.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

OUTPUT = Path(__file__).with_name("newsflow.json")
UID = "newsflow-oncall"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclasses.dataclass(frozen=True)
class Chart:
    """One panel: its queries, the unit Grafana shows, and what it is for (the description)."""

    title: str
    queries: Sequence[Query]
    unit: str
    description: str
    kind: Literal["timeseries", "stat"] = "timeseries"
    mappings: dict[str, str] = dataclasses.field(default_factory=dict)  # value -> text
    width: int = 8


RATE = "[5m]"
WORKERS = (
    Chart(
        "Processes up",
        [Query('up{job=~"newsflow-.*"}', "{{job}} {{instance}}")],
        "none",
        "1 = Prometheus scrapes the process (alerts WorkerDown, SchedulerDown, WebDown).",
        mappings={"0": "down", "1": "up"},
    ),
    Chart(
        "Consumer lag",
        [Query("sum by (instance) (newsflow_consumer_lag)", "{{instance}}")],
        "short",
        "Messages behind the log end, per worker (ConsumerLagHigh, WorkerStuck).",
    ),
    Chart(
        "Progress",
        [
            Query(f"sum by (instance) (rate(newsflow_consumed_total{RATE}))", "read {{instance}}"),
            Query(
                f"sum by (instance) (rate(newsflow_predicted_total{RATE}))", "stored {{instance}}"
            ),
        ],
        "ops",
        "Articles read and predictions stored per second (WorkerStuck, ReviewQueueEmpty).",
    ),
    Chart(
        "Dead letters by reason",
        [Query(f"sum by (reason) (rate(newsflow_dead_letters_total{RATE}))", "{{reason}}")],
        "ops",
        "Messages sent to articles.dlq per second (DeadLetterRateHigh).",
    ),
    Chart(
        "Latency p95",
        [
            Query(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(newsflow_end_to_end_seconds_bucket{RATE})))",
                "end to end",
            ),
            Query(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(newsflow_inference_seconds_bucket{RATE})))",
                "inference per batch",
            ),
        ],
        "s",
        "Kafka timestamp to stored row, and model time per batch (LatencyP95High).",
    ),
    Chart(
        "Database write retries",
        [Query(f"sum by (instance) (rate(newsflow_store_retries_total{RATE}))", "{{instance}}")],
        "ops",
        "Failed database writes retried per second (DatabaseErrors).",
    ),
    Chart(
        "Model served",
        [Query("newsflow_model_info == 1", "{{instance}} {{version}}")],
        "none",
        "The model version each worker serves (compare with the champion below).",
    ),
    Chart(
        "Models refused",
        [
            Query(
                "sum by (job, reason) (increase(newsflow_model_refused_total[1h]))",
                "{{job}} {{reason}}",
            )
        ],
        "short",
        "Champion folders refused in the last hour: bad_files (hashes), bad_folder, "
        "version_mismatch (ModelDownloadRefused).",
        width=16,
    ),
)
DRIFT = (
    Chart(
        "Drift PSI",
        [Query("newsflow_drift_psi", "{{kind}}")],
        "none",
        "PSI of confidence and topic mix at the last drift run (DriftWarn, DriftDetected).",
        width=10,
    ),
    Chart(
        "Drift level",
        [Query("newsflow_drift_level", "level")],
        "none",
        "Last drift level; no value while the window is insufficient.",
        kind="stat",
        mappings={"0": "ok", "1": "warn", "2": "drift"},
        width=4,
    ),
    Chart(
        "Accuracy",
        [
            Query("newsflow_estimated_accuracy", "estimated"),
            Query("newsflow_reviewed_accuracy", "reviewed (uniform sample)"),
            Query("newsflow_reference_accuracy", "reference"),
        ],
        "percentunit",
        "Estimated and reviewed accuracy against the champion's reference "
        "(EstimatedAccuracyDrop, ReviewedAccuracyDrop).",
        width=10,
    ),
    Chart(
        "Drift checks",
        [
            Query("sum by (level) (increase(newsflow_drift_checks_total[1h]))", "{{level}}"),
            Query("time() - newsflow_drift_last_run_timestamp_seconds", "seconds since last"),
        ],
        "short",
        "Drift runs in the last hour by level, and the age of the last run.",
        width=24,
    ),
)
RETRAINING = (
    Chart(
        "Retraining outcomes",
        [Query("sum by (outcome) (increase(newsflow_retrains_total[1d]))", "{{outcome}}")],
        "short",
        "Retraining attempts in the last day by outcome (RetrainingFailed, RetrainingRefused).",
    ),
    Chart(
        "Retraining duration",
        [
            Query(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(newsflow_retrain_duration_seconds_bucket[1d])))",
                "p50",
            ),
            Query(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(newsflow_retrain_duration_seconds_bucket[1d])))",
                "p95",
            ),
        ],
        "s",
        "Wall time of retrainings that ran, over the last day.",
    ),
    Chart(
        "Retraining decisions",
        [
            Query(
                "sum by (decision) (increase(newsflow_retrain_decisions_total[1d]))",
                "{{decision}}",
            )
        ],
        "short",
        "What the drift checks decided in the last day (retrain, alert, none).",
    ),
    Chart(
        "Champion",
        [Query("newsflow_champion_info == 1", "{{version}}")],
        "none",
        "The champion version the last drift check saw.",
        kind="stat",
        width=24,
    ),
)
REVIEW = (
    Chart(
        "Review queue",
        [
            Query("newsflow_review_queue_open", "open"),
            Query("newsflow_review_queue_budget", "budget"),
        ],
        "short",
        "Items waiting for a reviewer against the queue's budget "
        "(ReviewQueueEmpty, ReviewQueueOverBudget).",
    ),
    Chart(
        "Reviews per hour",
        [
            Query("sum(increase(newsflow_reviews_total[1h]))", "labels submitted"),
            Query("sum(increase(newsflow_review_items_total[1h]))", "items queued"),
        ],
        "short",
        "Labels submitted and items the workers queued for review, per hour.",
    ),
    Chart(
        "Failed sign-ins",
        [Query("sum(increase(newsflow_login_failures_total[15m]))", "per 15 min")],
        "short",
        "Sign-ins refused for a wrong username or password.",
    ),
)
ROWS = (
    ("Workers", WORKERS),
    ("Drift and accuracy", DRIFT),
    ("Retraining", RETRAINING),
    ("Review queue and web app", REVIEW),
)


def _mappings(values: dict[str, str]) -> list[model.ValueMapping]:
    options = {
        value: model.ValueMappingResult(text=text, index=i)
        for i, (value, text) in enumerate(values.items())
    }
    return [model.ValueMap(options=options)] if options else []


def _panel(chart: Chart, panel_id: int) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel
    if chart.kind == "stat":
        panel = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.NONE)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    else:
        panel = timeseries.Panel().fill_opacity(10).line_width(1)
    panel = (
        panel.id(panel_id)
        .title(chart.title)
        .description(chart.description)
        .datasource(DATASOURCE)
        .unit(chart.unit)
        .span(chart.width)
        .height(8)
    )
    if chart.mappings:
        panel = panel.mappings(_mappings(chart.mappings))
    for i, query in enumerate(chart.queries):
        panel = panel.with_target(
            prometheus.Dataquery()
            .ref_id(chr(ord("A") + i))
            .expr(query.expr)
            .legend_format(query.legend)
            .datasource(DATASOURCE)
        )
    return panel


def build() -> model.Dashboard:
    board = (
        dash.Dashboard("newsflow")
        .uid(UID)
        .description("Workers, drift, retraining, review queue (infra/grafana/dashboard.py)")
        .tags(["newsflow"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    panel_id = 0
    for title, charts in ROWS:
        panel_id += 1
        board = board.with_row(dash.Row(title).id(panel_id))
        for chart in charts:
            panel_id += 1
            board = board.with_panel(_panel(chart, panel_id))
    return board.build()


def render() -> str:
    """The dashboard JSON exactly as checked in (sorted keys, two-space indent, final newline)."""
    return json.dumps(build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def queries(board: dict[str, object]) -> list[str]:
    """Every PromQL expression of a dashboard JSON (for the test)."""
    panels = board.get("panels")
    assert isinstance(panels, list)
    return [t["expr"] for p in panels for t in p.get("targets") or [] if "expr" in t]


def write(path: Path = OUTPUT) -> Path:
    path.write_text(render(), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.grafana.dashboard [PATH]``: write the dashboard JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = write(Path(args[0]) if args else OUTPUT)
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
