"""`newsflow train`: fine-tune, evaluate, export, register and (gate permitting) promote.

The command's options are declared once as annotated types below; the command turns them into
a :class:`TrainOptions` record, and :func:`run_training` works from that record alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitoring.cli.helpers import console, fail, settings_or_exit
from monitoring.cli.progress import bar_progress
from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from retraining.data import Splits
    from retraining.distill import DistillConfig
    from retraining.flow import FlowResult, FlowSummary
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

DatasetOpt = Annotated[str, typer.Option(help="ag_news, 20newsgroups, or a CSV/JSONL file")]
BaseOpt = Annotated[
    str,
    typer.Option(
        help="minilm (offline default), mpnet-base (offline after `newsflow models "
        "fetch-base mpnet-base`), a local HF folder, or a hub name like roberta-base "
        "(needs network)"
    ),
]
TrainSourceOpt = Annotated[
    str | None,
    typer.Option(
        help="ag_news training rows: union (default; 50,867 rows of public samples; with the "
        "default --text-format, the 25,709 title+desc rows) or sample (5,557 rows, quick; "
        "--quick's)"
    ),
]
TextFormatOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="union rows to keep, repeatable: title+desc (default; the test split's form), "
        "desc-lower, desc-tokenized, normalized, or all"
    ),
]
TrainRowsOpt = Annotated[
    int | None,
    typer.Option(min=8, help="stratified cut to N training rows (learning curves)"),
]
ValidationOpt = Annotated[
    str | None,
    typer.Option(
        metavar="time|random",
        help="the validation split (early stopping, temperature): time = the newest 10% "
        "of each label (default for 20newsgroups: the later test period is what the "
        "temperature must hold on), random = a stratified random 10% (default elsewhere)",
    ),
]
EpochsOpt = Annotated[
    int | None, typer.Option(min=1, help="default 2 (--quick: 3, over the sample's rows)")
]
QuickOpt = Annotated[
    bool,
    typer.Option(
        "--quick",
        help="the quick recipe for demos and smoke runs: --train-source sample --epochs 3 "
        "(AG News 0.9016, ~6 min on 2 cores) instead of the default union rows for 2 epochs "
        "(0.9251, ~25 min an epoch); explicit options still win",
    ),
]
# The default recipe is the best measured for CPU serving (MiniLM int8 0.9251 at 7,745
# articles/min: docs/benchmarks/2026-12-07-training.md); --quick is the former default.
DEFAULT_SOURCE, DEFAULT_EPOCHS = "union", 2
QUICK_SOURCE, QUICK_EPOCHS = "sample", 3
BatchSizeOpt = Annotated[int, typer.Option(min=1)]
LrOpt = Annotated[float, typer.Option(help="peak learning rate")]
MaxLengthOpt = Annotated[int, typer.Option(min=8)]
ClassWeightsOpt = Annotated[bool, typer.Option(help="weight classes by inverse frequency")]
LabelSmoothingOpt = Annotated[
    float, typer.Option(min=0.0, max=0.99, help="cross-entropy label smoothing")
]
LayerDecayOpt = Annotated[
    float,
    typer.Option(min=0.01, max=1.0, help="layer-wise learning-rate decay (1 = off)"),
]
PatienceOpt = Annotated[
    int, typer.Option(min=0, help="epochs without a better validation macro-F1 before stopping")
]
SeedOpt = Annotated[int, typer.Option()]
MaxStepsOpt = Annotated[int | None, typer.Option(help="stop after N steps (smoke runs)")]
RegisterOpt = Annotated[bool, typer.Option(help="log to MLflow and register a version")]
PromoteOpt = Annotated[bool, typer.Option(help="promote to champion if the gate passes")]
BaselineOpt = Annotated[bool, typer.Option(help="also score TF-IDF + logistic regression")]
Fp16Opt = Annotated[
    bool,
    typer.Option(
        "--fp16",
        help="also export model.fp16.onnx for GPU workers, gated on argmax agreement with "
        "fp32 (adds about half the fp32 size to the registered folder)",
    ),
]
JsonPathOpt = Annotated[Path | None, typer.Option("--json", help="write the summary here")]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="continue the newest checkpoint of this same run (same base, labels, data and "
        "options) where it stopped, instead of starting over",
    ),
]
ResumeFromOpt = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        help="continue from this checkpoint file (step-N.pt) or the newest one in this "
        "folder (implies --resume)",
    ),
]
CheckpointMinutesOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="checkpoints are written under NEWSFLOW_HOME/checkpoints at every epoch end "
        "and, inside an epoch, at most every N minutes (0: epoch ends only)",
    ),
]
TeacherOpt = Annotated[
    str | None,
    typer.Option(
        metavar="VERSION",
        help="distil from this registered model version (see `newsflow models list`): "
        "its calibrated soft labels on every training row are computed once with the ONNX "
        "runtime, then the student (--base) learns from them and from the gold labels",
    ),
]
WarmStartOpt = Annotated[
    str | None,
    typer.Option(
        metavar="VERSION",
        help="start from this registered version's fine-tuned weights instead of the base "
        "with a new head (same --base and labels; e.g. a second pass of the champion over "
        "the same or newer rows at a lower --lr)",
    ),
]
DistillAlphaOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="with --teacher: weight of the distillation loss (alpha * T² * KL); "
        "1 - alpha goes to cross-entropy on the gold labels",
    ),
]
DistillTemperatureOpt = Annotated[
    float,
    typer.Option(
        min=0.01,
        max=100.0,
        help="with --teacher: temperature T softening teacher and student distributions",
    ),
]
DEFAULT_DISTILL_ALPHA, DEFAULT_DISTILL_TEMPERATURE = 0.5, 2.0


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything `newsflow train` was asked, one field per option."""

    dataset: str = "ag_news"
    base: str = "minilm"
    train_source: str | None = None  # None: union for ag_news (sample with quick)
    text_format: tuple[str, ...] = ()
    train_rows: int | None = None
    validation: str | None = None
    epochs: int | None = None  # None: DEFAULT_EPOCHS (QUICK_EPOCHS with quick)
    quick: bool = False
    batch_size: int = 32
    lr: float = 1e-4
    max_length: int = 128
    class_weights: bool = False
    label_smoothing: float = 0.0
    layer_decay: float = 1.0
    patience: int = 1
    seed: int = 13
    max_steps: int | None = None
    register: bool = True
    promote: bool = True
    baseline: bool = True
    fp16: bool = False
    json_path: Path | None = None
    resume: bool = False
    resume_from: Path | None = None
    checkpoint_minutes: float = 30.0
    teacher: str | None = None
    warm_start: str | None = None
    distill_alpha: float = DEFAULT_DISTILL_ALPHA
    distill_temperature: float = DEFAULT_DISTILL_TEMPERATURE


def train_cmd(
    dataset: DatasetOpt = "ag_news",
    base: BaseOpt = "minilm",
    train_source: TrainSourceOpt = None,
    text_format: TextFormatOpt = None,
    train_rows: TrainRowsOpt = None,
    validation: ValidationOpt = None,
    epochs: EpochsOpt = None,
    quick: QuickOpt = False,
    batch_size: BatchSizeOpt = 32,
    lr: LrOpt = 1e-4,
    max_length: MaxLengthOpt = 128,
    class_weights: ClassWeightsOpt = False,
    label_smoothing: LabelSmoothingOpt = 0.0,
    layer_decay: LayerDecayOpt = 1.0,
    patience: PatienceOpt = 1,
    seed: SeedOpt = 13,
    max_steps: MaxStepsOpt = None,
    register: RegisterOpt = True,
    promote: PromoteOpt = True,
    baseline: BaselineOpt = True,
    fp16: Fp16Opt = False,
    json_path: JsonPathOpt = None,
    resume: ResumeOpt = False,
    resume_from: ResumeFromOpt = None,
    checkpoint_minutes: CheckpointMinutesOpt = 30.0,
    teacher: TeacherOpt = None,
    warm_start: WarmStartOpt = None,
    distill_alpha: DistillAlphaOpt = DEFAULT_DISTILL_ALPHA,
    distill_temperature: DistillTemperatureOpt = DEFAULT_DISTILL_TEMPERATURE,
) -> None:
    """Fine-tune a base encoder, evaluate and calibrate it, export ONNX (fp32 + int8, and fp16
    with --fp16), check parity, log everything to MLflow and register a version. The default
    recipe is the best measured for CPU serving (AG News union rows, 2 epochs); --quick is
    the 5,557-row sample for 3 epochs. Interrupted runs continue with --resume; --teacher
    distils a registered version into the base; --warm-start continues training a
    registered version."""
    opts = TrainOptions(
        dataset=dataset,
        base=base,
        train_source=train_source,
        text_format=tuple(text_format or ()),
        train_rows=train_rows,
        validation=validation,
        epochs=epochs,
        quick=quick,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        layer_decay=layer_decay,
        patience=patience,
        seed=seed,
        max_steps=max_steps,
        register=register,
        promote=promote,
        baseline=baseline,
        fp16=fp16,
        json_path=json_path,
        resume=resume,
        resume_from=resume_from,
        checkpoint_minutes=checkpoint_minutes,
        teacher=teacher,
        warm_start=warm_start,
        distill_alpha=distill_alpha,
        distill_temperature=distill_temperature,
    )
    run_training(opts)


def run_training(opts: TrainOptions) -> None:
    """Load and split the data, run the training flow, gate and report; exit codes: 2 for a
    bad input found before training, 1 for a failed run or a failed parity check."""
    from retraining.errors import InputError

    settings = settings_or_exit()
    try:
        distill, cfg, choice = _configs(opts)
        splits = _load_splits(settings, opts, choice)
    except NewsflowError as exc:
        raise fail(exc, 2) from None
    console.print(
        f"recipe: {opts.base} on {opts.dataset} ({choice.source} rows), {cfg.epochs} epochs"
        + (" (--quick: the 5,557-row sample)" if choice.source == DEFAULT_SOURCE else "")
    )
    _print_data(splits)
    try:
        result = _train(settings, opts, cfg, choice, splits, distill)
    except InputError as exc:  # found before any training step
        raise fail(exc, 2) from None
    except NewsflowError as exc:
        raise fail(exc) from None
    summary = result.summary
    _print_continuation(summary)
    if opts.register and opts.promote and result.registered_version:
        from monitoring.cli.models import promote_and_report

        decision = promote_and_report(settings, result.registered_version, splits.test)
        summary["promotion"] = {"passed": decision.passed, "reasons": decision.reasons}
    _print_scores(summary)
    if opts.json_path:
        opts.json_path.write_text(json.dumps(summary, indent=2, default=str))
    if not summary["parity_ok"]:
        raise typer.Exit(1)


def _configs(opts: TrainOptions) -> tuple[DistillConfig | None, TrainConfig, DataChoice]:
    """The retraining package's records for ``opts`` (each validates its own values)."""
    from retraining.distill import DistillConfig
    from retraining.errors import TrainingError
    from retraining.train import TrainConfig
    from retraining.training_data import DataChoice

    distilling = (opts.distill_alpha, opts.distill_temperature)
    if opts.teacher is None and distilling != (
        DEFAULT_DISTILL_ALPHA,
        DEFAULT_DISTILL_TEMPERATURE,
    ):
        raise TrainingError("--distill-alpha and --distill-temperature need --teacher")
    distill = (
        DistillConfig(opts.teacher, alpha=opts.distill_alpha, temperature=opts.distill_temperature)
        if opts.teacher is not None
        else None
    )
    source, epochs = recipe_defaults(opts)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=opts.batch_size,
        learning_rate=opts.lr,
        max_length=opts.max_length,
        class_weights=opts.class_weights,
        label_smoothing=opts.label_smoothing,
        layer_decay=opts.layer_decay,
        patience=opts.patience,
        seed=opts.seed,
        max_steps=opts.max_steps,
    )
    choice = DataChoice(
        source=source,  # type: ignore[arg-type]  # validated by DataChoice
        formats=opts.text_format or ("title+desc",),
        max_rows=opts.train_rows,
        seed=opts.seed,
    )
    if opts.validation not in (None, "time", "random"):
        raise TrainingError(f"--validation must be time or random, not {opts.validation!r}")
    return distill, cfg, choice


def recipe_defaults(opts: TrainOptions) -> tuple[str, int]:
    """(training source, epochs): as given, else the quick recipe's with ``quick``, else the
    default recipe's (the union exists for ag_news only; other datasets read their rows)."""
    quick = opts.quick or opts.dataset != "ag_news"
    source = opts.train_source or (QUICK_SOURCE if quick else DEFAULT_SOURCE)
    epochs = opts.epochs or (QUICK_EPOCHS if opts.quick else DEFAULT_EPOCHS)
    return source, epochs


def _load_splits(settings: Settings, opts: TrainOptions, choice: DataChoice) -> Splits:
    from retraining.flow import load_training_data

    return load_training_data(
        settings,
        opts.dataset,
        choice=choice,
        validation=opts.validation,  # type: ignore[arg-type]  # checked by _configs
    )


def _print_data(splits: Splits) -> None:
    from retraining.time_split import describe_validation

    card = splits.card or {}
    console.print(
        f"data: {splits.summary()}; removed before the split: "
        f"{card.get('removed_by_format', 0)} by format, {card.get('removed_duplicates', 0)} "
        f"duplicates, {card.get('removed_leak_exact', 0)} equal to a test row, "
        f"{card.get('removed_leak_description', 0)} ending with a test description"
    )
    console.print(f"validation: {describe_validation(splits.validation_info)}")


def _train(
    settings: Settings,
    opts: TrainOptions,
    cfg: TrainConfig,
    choice: DataChoice,
    splits: Splits,
    distill: DistillConfig | None,
) -> FlowResult:
    """The training flow under a progress bar (plain lines when not on a terminal)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from retraining.flow import FlowOptions, run_flow
    from retraining.recipe import Recipe

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("training", total=None)
        return run_flow(
            settings,
            Recipe(
                dataset=opts.dataset,
                base=opts.base,
                data=choice,  # recorded as the recipe; the splits below were drawn with it
                validation=opts.validation,  # type: ignore[arg-type]  # checked by _configs
                training=cfg,
                teacher=distill,
                warm_start=opts.warm_start,
                fp16=opts.fp16,
            ),
            splits=splits,
            progress=bar_progress(bar, task, plain=None if console.is_terminal else _print_plain),
            options=FlowOptions(
                register=opts.register,
                baseline=opts.baseline,
                resume=opts.resume_from or ("auto" if opts.resume else None),
                checkpoint_minutes=opts.checkpoint_minutes or None,
            ),
        )


def _print_plain(line: str) -> None:
    console.print(line, markup=False, highlight=False)  # a message is text, not rich markup


def _print_continuation(s: FlowSummary) -> None:
    """What the run continued from: a checkpoint, a registered version, a teacher."""
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


def _print_scores(s: FlowSummary) -> None:
    fp16_note = "" if s["fp16_agreement"] is None else f"fp16 agreement {s['fp16_agreement']:.4f}  "
    console.print(
        f"accuracy {s['accuracy']:.4f}  macro-F1 {s['macro_f1']:.4f}  ECE {s['ece']:.4f} "
        f"(uncalibrated {s['ece_uncalibrated']:.4f})  int8 accuracy "
        f"{_or_nan(s['served_int8_accuracy']):.4f} (agrees with torch on "
        f"{_or_nan(s['int8_test_agreement']):.4f})  TF-IDF+LR "
        f"{_or_nan(s['tfidf_lr_accuracy']):.4f}  {fp16_note}parity_ok {s['parity_ok']}  "
        f"train {s['train_seconds']:.0f}s  version {s['registered_version']}"
    )


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def register(app: typer.Typer) -> None:
    """The commands of the `train` extra: `newsflow train` and `newsflow models`."""
    from monitoring.cli.models import register as register_models

    app.command("train")(train_cmd)
    register_models(app)
