"""CLI commands owned by the pipeline package: stack, db, config, schema, produce, worker."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from pipeline.core.errors import NewsflowError
from pipeline.core.model_folder import Precision
from pipeline.core.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)

stack_app = typer.Typer(
    help="Start, inspect and stop the local Kafka + PostgreSQL stack.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except NewsflowError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(exc: Exception, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code)


@stack_app.command("up")
def stack_up_cmd(
    no_migrate: Annotated[bool, typer.Option(help="skip `db upgrade`")] = False,
) -> None:
    """Start PostgreSQL and Kafka on 127.0.0.1 (installing them when missing), create the
    topics and migrate the database. Running it again changes nothing."""
    from pipeline.stack import stack_up

    settings = settings_or_exit()
    try:
        stack_up(settings, migrate=not no_migrate, report=lambda m: console.print(f"  {m}"))
    except NewsflowError as exc:
        raise fail(exc) from None
    console.print("[green]stack is up[/green]")


@stack_app.command("status")
def stack_status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List each service with port, pid, data directory and whether it answers.
    Exits 1 when a service is down."""
    from pipeline.stack import stack_status

    services = stack_status(settings_or_exit())
    if as_json:
        typer.echo(json.dumps({"services": [s.to_json() for s in services]}, indent=2))
    else:
        table = Table("service", "address", "pid", "up", "data directory", "log")
        for column in table.columns:
            column.overflow = "fold"
        for s in services:
            table.add_row(
                s.name,
                f"{s.host}:{s.port}",
                str(s.pid or "-"),
                "[green]yes[/green]" if s.up else "[red]no[/red]",
                str(s.data_dir),
                str(s.log),
            )
        console.print(table)
    if not all(s.up for s in services):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down_cmd(
    purge: Annotated[bool, typer.Option(help="also delete the services' data")] = False,
) -> None:
    """Stop the processes the stack started (by pid); data stays unless --purge."""
    from pipeline.stack import stack_down

    try:
        stack_down(settings_or_exit(), purge=purge, report=lambda m: console.print(f"  {m}"))
    except NewsflowError as exc:
        raise fail(exc) from None


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


@config_app.command("show")
def config_show_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the effective settings (environment, .env and defaults), secrets masked."""
    values = settings_or_exit().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    table = Table("setting", "environment variable", "value")
    for name, value in values.items():
        table.add_row(name, f"NEWSFLOW_{name.upper()}", str(value))
    console.print(table)


def schema_cmd(
    output: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Print the JSON Schema of article messages (schema v1) for producer teams."""
    from pipeline.schemas import article_json_schema

    text = json.dumps(article_json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)


def worker_cmd(
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="model folder to serve (default: NEWSFLOW_MODEL_DIR, else the registry's "
            "champion, followed as it changes)"
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="auto | fp32 | int8 | fp16")] = "auto",
) -> None:
    """Run a Faust worker: consume `articles`, classify in micro-batches, store predictions,
    dead-letter bad messages. Start several to split the partitions. Ctrl-C stops it."""
    from pipeline.core.logs import configure_logging
    from pipeline.worker import run_worker

    settings = settings_or_exit()
    folder = model_dir or settings.model_dir
    if precision not in {"auto", "fp32", "int8", "fp16"}:
        raise fail(ValueError(f"--precision {precision!r}: use auto, fp32, int8 or fp16"), 2)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        run_worker(settings, model_dir=folder, precision=cast(Precision, precision))
    except NewsflowError as exc:
        raise fail(exc) from None


def produce_cmd(
    dataset: Annotated[
        str, typer.Argument(help="ag_news, 20newsgroups, or a CSV/JSONL file")
    ] = "ag_news",
    split: Annotated[str, typer.Option(help="train | test")] = "test",
    rate: Annotated[str, typer.Option(help="e.g. 1000/min, 50/s; 0 = unlimited")] = "1000/min",
    limit: Annotated[int | None, typer.Option(min=1, help="stop after N messages")] = None,
    loop: Annotated[bool, typer.Option(help="start over at the end of the dataset")] = False,
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of malformed messages to mix in")
    ] = 0.0,
    text_col: Annotated[str, typer.Option(help="text column of a CSV/JSONL file")] = "text",
    title_col: Annotated[str | None, typer.Option(help="title column")] = None,
    label_col: Annotated[str, typer.Option(help="label column")] = "label",
    run_id: Annotated[str | None, typer.Option(help="id prefix (default: random)")] = None,
    seed: Annotated[int, typer.Option(help="seed for shuffling and bad messages")] = 0,
) -> None:
    """Replay a dataset into the `articles` topic at a steady rate, with unique ids."""
    from rich.progress import Progress

    from pipeline.core.datasets import ColumnMap, load_dataset
    from pipeline.produce import article_messages, parse_rate, produce

    settings = settings_or_exit()
    if split not in {"train", "test"}:
        raise fail(ValueError("--split must be train or test"), 2)
    try:
        per_s = parse_rate(rate)
        rows = load_dataset(
            dataset,
            split="train" if split == "train" else "test",
            data_dir=settings.data_dir,
            columns=ColumnMap(text=text_col, label=label_col, title=title_col),
        )
    except (ValueError, NewsflowError) as exc:
        raise fail(exc, 2) from None
    import random as _random

    _random.Random(seed).shuffle(rows)
    total = limit if limit is not None else (None if loop else len(rows))
    msgs = article_messages(
        rows,
        limit=limit,
        loop=loop,
        run_id=run_id,
        bad_share=bad_share,
        max_bytes=settings.max_message_bytes,
        seed=seed,
    )
    with Progress(console=err_console) as progress:
        task = progress.add_task(f"producing to {settings.topic_articles}", total=total)
        stats = produce(
            msgs,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic_articles,
            rate=per_s,
            on_progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"sent {stats.sent} ({stats.bad} malformed) in {stats.seconds:.1f}s; "
        f"failed deliveries: {stats.failed}"
    )
    if stats.failed:
        raise typer.Exit(1)


topics_app = typer.Typer(
    help="Without a subcommand: create the Kafka topics `articles`, `articles.dlq` and "
    "`predictions` when missing (Faust does not create the topics its agents use). "
    "Subcommands: the news topics the model knows, and new ones (discovery, onboarding).",
    invoke_without_command=True,
)


@topics_app.callback()
def topics_cmd(ctx: typer.Context) -> None:
    """Create the Kafka topics when missing (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.stack.kafka import ensure_topics

    settings = settings_or_exit()
    try:
        for name, state in sorted(ensure_topics(settings).items()):
            console.print(f"  {name}: {state}")
    except Exception as exc:
        raise fail(exc) from None


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
        folder = _model_folder(settings, model_dir)
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


def _model_folder(settings: Settings, model_dir: Path | None) -> Path:
    folder = model_dir or settings.model_dir
    if folder is None:
        from pipeline.core import registry

        info = registry.version_by_alias(settings, registry.CHAMPION)
        if info is None:
            raise ValueError("no model: pass --model-dir or train a champion first")
        folder = registry.local_copy(settings, info.version)
    return folder


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
        folder = _model_folder(settings, model_dir)
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
            model_dir=_model_folder(settings, model_dir),
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


def register(app: typer.Typer) -> None:
    app.command("soak")(soak_cmd)
    app.command("faults")(faults_cmd)
    app.command("bench")(bench_cmd)
    app.command("bench-sink")(bench_sink_cmd)
    app.add_typer(topics_app, name="topics")
    app.command("worker")(worker_cmd)
    app.command("produce")(produce_cmd)
    app.add_typer(stack_app, name="stack")
    app.add_typer(db_app, name="db")
    app.add_typer(config_app, name="config")
    app.command("schema")(schema_cmd)
