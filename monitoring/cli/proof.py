"""`newsflow bench | bench-sink | faults | soak`: the proof tools, measured on the local stack."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from monitoring.cli.helpers import console, err_console, fail, model_folder, settings_or_exit
from pipeline.core.errors import NewsflowError


def bench_cmd(
    articles: Annotated[int, typer.Option(min=100, help="articles for the drain run")] = 6000,
    rate: Annotated[str, typer.Option(help="offered load for the latency run")] = "1000/min",
    offered: Annotated[
        int, typer.Option(min=0, help="articles in the latency run (0: no latency run)")
    ] = 1000,
    workers: Annotated[
        int, typer.Option(min=1, help="worker processes in one consumer group (drain scale-out)")
    ] = 1,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="model folder (default: NEWSFLOW_MODEL_DIR, else the registry's champion)"
        ),
    ] = None,
    dataset: Annotated[str, typer.Option(help="texts to stream")] = "ag_news",
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Measure the streaming path end to end on the local stack: model-only ceiling,
    drain throughput and efficiency with --workers processes (parallelism is capped by the
    articles topic's partitions), worker CPU per article, latency at an offered rate, lost
    and duplicates."""
    from pipeline.core.datasets import load_dataset
    from pipeline.core.db.engine import make_engine
    from pipeline.produce import parse_rate
    from pipeline.proof.bench import run_bench, write_json

    settings = settings_or_exit()
    try:
        per_min = parse_rate(rate) * 60
        rows = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        folder = model_folder(settings, model_dir)
        engine = make_engine(settings)
        result = run_bench(
            settings,
            rows=rows,
            model_dir=folder,
            articles=articles,
            offered_per_min=per_min,
            offered_articles=offered,
            engine=engine,
            workdir=settings.home / "bench",
            report=console.print,
            workers=workers,
        )
    except (ValueError, RuntimeError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    table = Table("figure", "value")
    for key, value in result.to_json().items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_path:
        write_json(result, json_path)
    if result.lost or result.duplicates:
        raise typer.Exit(1)


def bench_sink_cmd(
    rows: Annotated[int, typer.Option(min=1024, help="rows stored per batch size")] = 20_480,
    batch_sizes: Annotated[
        str, typer.Option(help="comma-separated batch sizes")
    ] = "64,128,256,512,1024",
    target: Annotated[float, typer.Option(help="rows/s the sink should reach")] = 5000.0,
    keep_db: Annotated[bool, typer.Option(help="keep the scratch database")] = False,
    dataset: Annotated[str, typer.Option(help="texts of the stored articles")] = "ag_news",
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Measure the prediction sink alone (no Kafka, no model) on the local PostgreSQL: the
    worker's batch store, per batch size, into a scratch database of the real schema;
    rows/s and ms per batch for new rows and for a re-delivery of the same batches, then
    the rows counted. Exits 1 when a count is off, 3 when the best size misses --target."""
    from pipeline.core.datasets import load_dataset
    from pipeline.proof.sink_bench import run_sink_bench, write_json

    settings = settings_or_exit()
    try:
        sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"bad --batch-sizes {batch_sizes!r}")
        texts = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        result = run_sink_bench(
            settings,
            rows=texts,
            per_size=rows,
            batch_sizes=sizes,
            keep_database=keep_db,
            target_rows_per_s=target,
            report=console.print,
        )
    except (ValueError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    table = Table(
        "batch", "rows", "rows/s", "p50 ms", "p95 ms", "again rows/s", "p50 ms", "p95 ms", "in db"
    )
    table.add_column("deliveries")
    table.add_column("ok", overflow="fold")
    for r in result.sizes:
        table.add_row(
            str(r.batch_size),
            str(r.rows),
            f"{r.first.rows_per_s:,.0f}",
            f"{r.first.batch_ms_p50:.1f}",
            f"{r.first.batch_ms_p95:.1f}",
            f"{r.redelivery.rows_per_s:,.0f}",
            f"{r.redelivery.batch_ms_p50:.1f}",
            f"{r.redelivery.batch_ms_p95:.1f}",
            f"{r.after_redelivery.distinct_predicted}/{r.rows}",
            str(r.after_redelivery.deliveries),
            "[green]yes[/green]" if r.ok else "[red]NO[/red] " + "; ".join(r.problems),
        )
    console.print(table)
    if json_path:
        write_json(result, json_path)
    if not result.ok:
        raise typer.Exit(1)
    best = max((r.first.rows_per_s for r in result.sizes), default=0.0)
    if best < target:
        err_console.print(f"best {best:,.0f} rows/s is below the target {target:,.0f}")
        raise typer.Exit(3)


def faults_cmd(
    articles: Annotated[int, typer.Option(min=100, help="valid articles per case")] = 5000,
    rate: Annotated[str, typer.Option(help="producer rate (2,000/min = twice the rated load)")] = (
        "2000/min"
    ),
    pg_down_s: Annotated[float, typer.Option(min=1, help="PostgreSQL outage length")] = 60.0,
    kafka_down_s: Annotated[float, typer.Option(min=0, help="broker down time")] = 10.0,
    malformed: Annotated[int, typer.Option(min=12, help="malformed messages mixed in")] = 10_000,
    kcat: Annotated[int, typer.Option(min=0, help="of which extra ones sent by kcat")] = 300,
    fuzz: Annotated[
        int, typer.Option(min=50, help="random mutations in the fuzz case (a canary every 50)")
    ] = 2000,
    cases: Annotated[
        str, typer.Option(help="comma-separated: kill_worker,kafka_restart,postgres_outage,...")
    ] = ",".join(
        ("kill_worker", "kafka_restart", "postgres_outage", "add_worker", "bad_input", "fuzz")
    ),
    model_dir: Annotated[
        Path | None, typer.Option(help="model folder (default: the registry's champion)")
    ] = None,
    dataset: Annotated[str, typer.Option(help="texts to stream")] = "ag_news",
    json_path: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    """Fault injection and the bad-input campaign on the local stack, with real worker
    processes: kill -9 a worker, restart Kafka, stop PostgreSQL, add a worker, malformed
    input of 36 kinds (some sent by kcat) and a seeded fuzz campaign with canaries. Prints
    per case: lost; duplicates (keys published twice on the predictions topic);
    redelivered (articles processed more than once); conflicts (ids reused with other text);
    recovery. Exits 1 when a case misses its target (0 lost, 0 duplicates, 0 conflicts,
    recovery within 30 s; fuzz: every mutation accounted for, canaries within 5 s)."""
    from pipeline.core.datasets import load_dataset
    from pipeline.produce import parse_rate
    from pipeline.proof.bench import machine_description
    from pipeline.proof.faults import FaultOptions, run_faults

    settings = settings_or_exit()
    try:
        options = FaultOptions(
            articles=articles,
            rate_per_min=parse_rate(rate) * 60,
            pg_down_s=pg_down_s,
            kafka_down_s=kafka_down_s,
            malformed=malformed,
            kcat_messages=kcat,
            fuzz_messages=fuzz,
            cases=tuple(c.strip() for c in cases.split(",") if c.strip()),
        )
        rows = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        folder = model_folder(settings, model_dir)
        started = time.time()
        results = run_faults(
            settings, options, rows=rows, model_dir=folder, report=lambda m: console.print(m)
        )
    except (ValueError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    table = Table(
        "case",
        "valid",
        "malformed",
        "lost",
        "dup (topic)",
        "redelivered",
        "conflicts",
        "topic missing",
        "recovery s",
        "case s",
        "ok",
    )
    for r in results:
        table.add_row(
            r.name,
            str(r.articles),
            str(r.malformed),
            str(r.lost),
            str(r.duplicates),
            str(r.redelivered),
            str(r.conflicts),
            str(r.topic_missing),
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}",
            f"{r.seconds:.0f}",
            "[green]yes[/green]" if r.ok else f"[red]NO[/red] {r.error or ''}",
        )
    console.print(table)
    if json_path:
        json_path.write_text(
            json.dumps(
                {
                    "machine": machine_description(),
                    "started": started,
                    "seconds": round(time.time() - started, 1),
                    "options": dataclasses.asdict(options),
                    "cases": [r.to_json() for r in results],
                    "ok": all(r.ok for r in results),
                },
                indent=2,
            )
        )
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def soak_cmd(
    minutes: Annotated[float, typer.Option(min=1, help="length of the run")] = 60.0,
    rate: Annotated[str, typer.Option(help="offered load (twice the rated 1,000/min)")] = (
        "2000/min"
    ),
    model_dir: Annotated[
        Path | None, typer.Option(help="model folder (default: the registry's champion)")
    ] = None,
    dataset: Annotated[str, typer.Option(help="texts to stream")] = "ag_news",
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Soak test: one worker under a steady load; resident memory sampled every 15 s; passes
    when it grows by less than 10 % after warm-up and nothing is lost or duplicated."""
    from pipeline.core.datasets import load_dataset
    from pipeline.produce import parse_rate
    from pipeline.proof.bench import machine_description
    from pipeline.proof.soak import run_soak

    settings = settings_or_exit()
    try:
        rows = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        result = run_soak(
            settings,
            rows=rows,
            model_dir=model_folder(settings, model_dir),
            minutes=minutes,
            rate_per_min=parse_rate(rate) * 60,
            report=lambda m: console.print(m),
        )
    except (ValueError, RuntimeError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    console.print(
        f"{result.articles} articles over {minutes:g} min: lost {result.lost}, duplicates "
        f"{result.duplicates}; worker RSS {result.rss_mb_after_warmup:.0f} MiB after warm-up, "
        f"{result.rss_mb_end:.0f} MiB at the end ({100 * result.rss_growth:+.1f} %, target < 10 %)"
    )
    if json_path:
        json_path.write_text(
            json.dumps({"machine": machine_description(), **result.to_json()}, indent=2)
        )
    if not result.ok:
        raise typer.Exit(1)


def replay_cmd(
    days: Annotated[
        int, typer.Option(help="simulated days (at least 1; the clock's dates end at year 1)")
    ] = 30,
    articles_per_day: Annotated[int, typer.Option(help="valid articles per simulated day")] = 600,
    checks_per_day: Annotated[
        int, typer.Option(help="drift checks per simulated day (a divisor of 24)")
    ] = 4,
    seed: Annotated[int, typer.Option(help="the feed's random seed")] = 0,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="model folder to start from (default: the registry's champion)"),
    ] = None,
    workdir: Annotated[
        Path, typer.Option(help="where the run's MLflow store, reports and worker log go")
    ] = Path("replay"),
    keep: Annotated[bool, typer.Option(help="keep the scratch database and topics")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    png_path: Annotated[
        Path | None, typer.Option("--png", help="the timeline picture (default: beside --json)")
    ] = None,
) -> None:
    """A month, replayed: --days simulated days of a scripted feed (AG News with a daily and
    weekly topic rhythm; a new kind of news from one day on; a change of source to 20
    Newsgroups posts on another; a burst of malformed messages) through the real stack:
    Kafka, a worker process, PostgreSQL, the scheduler's drift job with its retraining,
    promotion and hot swap, alerts, retention and review expiry, all on a simulated clock
    (nothing sleeps through simulated time). Simulated reviewers label the queue within
    NEWSFLOW_REVIEW_BUDGET_PER_HOUR. Runs in a scratch database with topics and an MLflow
    store of its own. Prints one line per simulated day on stderr; --json gets the figures
    per day and per check and the score against the script (alert precision, checks until
    each event alerted), --png the timeline. Exit 1 when an article was lost or a malformed
    message was not dead-lettered, 2 on bad input."""
    import datetime as dt

    from monitoring.replay.clock import ReplayError
    from monitoring.replay.run import ReplayOptions, run_replay

    options = ReplayOptions(
        days=days,
        articles_per_day=articles_per_day,
        checks_per_day=checks_per_day,
        seed=seed,
        model_dir=model_dir,
        workdir=workdir,
        keep=keep,
    )
    try:
        options.check()  # nothing starts on bad input
    except ReplayError as exc:
        raise fail(exc, 2) from None
    settings = settings_or_exit()
    try:
        result = run_replay(
            settings, options, progress=lambda line: err_console.print(line, soft_wrap=True)
        )
    except (ValueError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    result["machine_ended_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stream, scored = result["stream"], result["score"]
    console.print(
        f"{days} days in {result['wall_s']:.0f} s: {stream['stored']}/{stream['sent_valid']} "
        f"stored, {stream['dead_lettered']}/{stream['malformed_sent']} malformed "
        f"dead-lettered; alerts {scored['alerts_opened']} (precision "
        f"{scored['alert_precision']}, 95 % interval {scored['alert_precision_interval']}), "
        f"retrainings {len(result['retrainings'])}"
    )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str))
    png = png_path or (json_path.with_suffix(".png") if json_path else None)
    if png:
        from monitoring.replay.timeline import write_timeline

        write_timeline(result, png)
    if stream["lost"] or stream["dead_lettered"] != stream["malformed_sent"]:
        raise typer.Exit(1)
