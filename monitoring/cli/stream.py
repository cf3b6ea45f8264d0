"""`newsflow worker` and `newsflow produce`: the two ends of the stream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from monitoring.cli.helpers import console, err_console, fail, settings_or_exit
from pipeline.core.errors import NewsflowError
from pipeline.core.model_folder import Precision


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
