"""The training flow: data → split → fine-tune → calibrate → evaluate → export → parity →
MLflow run + registered version. Used by `newsflow train` and by automatic retraining.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from pipeline.core.datasets import LabelledText, load_dataset
from pipeline.core.errors import NewsflowError
from pipeline.core.model_folder import INT8, ReferenceDistribution, read_metadata, write_metadata
from pipeline.core.registry import TORCH_STATE_FILE
from pipeline.core.runtime import softmax
from pipeline.core.settings import Settings
from retraining import checkpoint as ckpt
from retraining.bases.resolve import resolve_base_model
from retraining.data import Splits, Validation, make_splits
from retraining.distill import Teacher, load_teacher
from retraining.distill import mlflow_record as distill_mlflow_record
from retraining.errors import InputError, TrainingError
from retraining.evaluate import (
    Evaluation,
    evaluate_probs,
    fit_temperature,
    tfidf_baseline,
    write_report,
)
from retraining.model_card import describe_version, log_card, measure_speed, write_model_card
from retraining.recipe import Recipe, mlflow_params
from retraining.time_split import default_order
from retraining.train import TrainConfig, TrainOutcome, fine_tune, predict_logits
from retraining.training_data import DataChoice, choose_rows, data_card_markdown
from retraining.warm_start import fetch_warm_start

if TYPE_CHECKING:
    from retraining.export import ParityReport
    from retraining.int8_recipe import Int8Choice

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


INT8_CHOICE_TEXTS = 2000  # validation texts the int8 recipe is chosen on


class FlowSummary(TypedDict):
    """What one training run measured and produced (also `newsflow train --json`)."""

    dataset: str
    base_model: str
    model_version: str
    accuracy: float
    macro_f1: float
    micro_f1: float
    ece: float
    ece_uncalibrated: float
    temperature: float
    served_int8_accuracy: float | None
    int8_test_agreement: float | None  # served int8 argmax vs torch's, on every test row
    int8_choice: dict[str, Any] | None  # retraining.int8_recipe.Int8Choice.as_dict
    fp16_agreement: float | None  # fp16 vs fp32 graph argmax agreement; None: no fp16 graph
    tfidf_lr_accuracy: float | None
    train_seconds: float
    epoch_seconds: list[float]
    best_epoch: int
    parity_ok: bool
    parity: dict[str, Any]
    splits: dict[str, Any]
    data_card: dict[str, Any] | None  # retraining.training_data.DataCard + split counts
    per_class: dict[str, Any]
    model_dir: str
    report_dir: str
    card_dir: NotRequired[str]  # retraining.model_card: model_card.md / .json and figures
    registered_version: str | None
    run_id: str | None
    warm_start: bool
    seed: NotRequired[int]  # TrainConfig.seed: also the data choice's and the split's
    validation_info: NotRequired[dict[str, Any]]  # how the validation rows were drawn
    warm_start_version: NotRequired[str]  # `--warm-start VERSION`: the registered version continued
    train_steps: int
    resumed_from: str | None  # the checkpoint the training continued (`--resume`)
    teacher: dict[str, Any] | None  # retraining.distill.Teacher.summary (`--teacher`)
    promotion: NotRequired[dict[str, Any]]  # set by `newsflow train --promote`
    recipe: NotRequired[dict[str, Any]]  # retraining.recipe.Recipe.to_dict, as recorded


@dataclasses.dataclass
class FlowResult:
    summary: FlowSummary
    model_dir: Path
    registered_version: str | None
    splits: Splits | None = None


def load_training_data(
    settings: Settings,
    dataset: str,
    extra: Sequence[LabelledText] = (),
    choice: DataChoice | None = None,
    validation: Validation | None = None,
) -> Splits:
    """Training rows chosen by ``choice`` (format filter, de-duplication, leakage check
    against the test split, row cap), then split; the dataset card rides on the splits.
    ``validation``: ``time`` (the newest posts of each label; default for 20 Newsgroups,
    whose test period follows its training period) or ``random`` (default elsewhere)."""
    test: list[LabelledText] | None = None
    if dataset in {"ag_news", "20newsgroups", "20ng"}:
        test = load_dataset(dataset, split="test", data_dir=settings.data_dir)
        if settings.eval_limit and len(test) > settings.eval_limit:
            import random

            test = random.Random(0).sample(test, settings.eval_limit)
    choice = choice or DataChoice()
    train, card = choose_rows(settings.data_dir, dataset, choice, test or [])
    validation = validation or ("time" if dataset in {"20newsgroups", "20ng"} else "random")
    splits = make_splits(
        [*train, *extra],
        test,
        seed=choice.seed,
        validation=validation,
        time_order=default_order(train),
    )
    if extra:
        card.notes.append(f"{len(extra)} reviewed rows added")
    return dataclasses.replace(
        splits,
        card={
            **card.as_dict(),
            "splits": splits.summary(),
            "validation": splits.validation_info,
        },
    )


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """How one run of a recipe is carried out; none of it changes what the model learns.

    ``register``: log the run to MLflow and register the version; ``baseline``: also score
    TF-IDF + logistic regression on the same split; ``tags``: extra MLflow run tags;
    ``init_from``: a state dict saved by an earlier run (e.g. the champion's) to start the
    classifier from; ``checkpoints``: checkpoint at every epoch end (and every
    ``checkpoint_minutes`` inside an epoch) under ``home/checkpoints/<run key>``, removed when
    the flow succeeds; ``resume``: continue from ``"auto"`` (the newest checkpoint of this
    same run) or a checkpoint file or folder; ``card_speed``: time the served graph for the
    model card (a few seconds; off in tests)."""

    register: bool = True
    baseline: bool = True
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    init_from: Path | None = None
    resume: ckpt.Resume | None = None
    checkpoints: bool = True
    checkpoint_minutes: float | None = None
    card_speed: bool = True


@dataclasses.dataclass
class _Start:
    """What the flow checked and built before the first training step."""

    splits: Splits
    model: Any
    tokenizer: Any
    train_x: list[str]
    train_y: list[int]
    val_x: list[str]
    val_y: list[int]
    test_x: list[str]
    test_y: npt.NDArray[np.int64]
    teacher: Teacher | None
    identity: dict[str, Any]
    run_dir: Path
    resume_state: dict[str, Any] | None
    init_from: Path | None
    warm_start: str | None  # the registered version continued, canonical spelling


@dataclasses.dataclass
class _Scores:
    """The fine-tuned model's calibration and test results (torch, before export)."""

    val_logits: npt.NDArray[np.float32]
    temperature: float
    test_logits: npt.NDArray[np.float32]
    raw_probs: npt.NDArray[np.float64]
    raw_eval: Evaluation
    probs: npt.NDArray[np.float64]
    evaluation: Evaluation


@dataclasses.dataclass
class _Export:
    """The exported model folder and what its graphs were measured to do."""

    model_dir: Path
    version: str
    int8_choice: Int8Choice | None
    parity: ParityReport
    served_accuracy: float | None
    test_agreement: float | None


def run_flow(
    settings: Settings,
    recipe: Recipe,
    *,
    splits: Splits | None = None,
    progress: Progress | None = None,
    options: FlowOptions | None = None,
) -> FlowResult:
    """Fine-tune, evaluate, export, log and register ``recipe`` on ``splits`` (default: its
    dataset and data choice, split as it says). ``recipe.warm_start`` starts from a
    registered version's logged weights (:mod:`retraining.warm_start`: same base and labels,
    checked first), ``options.init_from`` from a state dict file; ``recipe.teacher`` learns
    from a registered teacher's soft labels; ``recipe.fp16`` also exports ``model.fp16.onnx``
    for GPU workers (about half the fp32 size again in the registry), gated on argmax
    agreement with fp32. Bad bases, checkpoints and teachers are :class:`InputError` before
    any training step.

    A model card (:mod:`retraining.model_card`) is written next to the model folder, logged
    as ``card/…`` and summarised in the registered version's description.

    Example:
        >>> options = FlowOptions(register=False, card_speed=False)
        >>> run_flow(settings, Recipe(base="mpnet-base"), options=options)  # doctest: +SKIP
    """
    options = options or FlowOptions()
    cfg = recipe.training
    start = _prepare(settings, recipe, options, splits)
    soft = (
        start.teacher.soft_targets(
            start.train_x, start.splits.labels, cache_dir=start.run_dir, progress=progress
        )
        if start.teacher
        else None
    )
    every_s = options.checkpoint_minutes * 60 if options.checkpoint_minutes else None
    writer = (
        ckpt.Checkpointing(start.run_dir, start.identity, every_s=every_s)
        if options.checkpoints
        else None
    )
    outcome = fine_tune(
        start.model,
        start.tokenizer,
        start.train_x,
        start.train_y,
        start.val_x,
        start.val_y,
        cfg,
        progress=progress,
        checkpoint=writer,
        resume=start.resume_state,
        soft_targets=soft,
    )
    scores = _score(start, cfg)
    work = Path(tempfile.mkdtemp(prefix="newsflow-train-", dir=_scratch(settings)))
    exported = _export(recipe, start, scores, work)
    ev = scores.evaluation
    base_acc = (
        tfidf_baseline(
            start.train_x + start.val_x,
            start.train_y + start.val_y,
            start.test_x,
            start.test_y.tolist(),
        )
        if options.baseline
        else None
    )
    report_dir = work / "report"
    write_report(ev, scores.probs, start.test_y, report_dir, title=recipe.dataset)
    (report_dir / "evaluation.json").write_text(json.dumps(dataclasses.asdict(ev), indent=2))
    summary = _summarise(recipe, start, scores, exported, outcome, base_acc, report_dir)
    summary["recipe"] = _record_recipe(exported.model_dir, recipe, start)
    state_path = work / TORCH_STATE
    _save_state(start.model, state_path)
    card_dir = work / "card"
    write_model_card(
        card_dir,
        summary=summary,
        config=dataclasses.asdict(cfg),
        evaluation=ev,
        raw_probs=scores.raw_probs,
        probs=scores.probs,
        y=start.test_y,
        validation=start.splits.validation_info,
        speed=(
            measure_speed(exported.model_dir, start.test_x, threads=settings.ort_threads)
            if options.card_speed
            else None
        ),
        report_dir=report_dir,
    )
    summary["card_dir"] = str(card_dir)
    registered = None
    if options.register:
        registered = _log_to_mlflow(
            settings,
            summary,
            cfg,
            outcome.history,
            exported.model_dir,
            report_dir,
            exported.parity.ok,
            dict(options.tags),
            state_path,
            card_dir=card_dir,
        )
    # the run is complete: its checkpoints and cached teacher soft labels are not needed
    shutil.rmtree(start.run_dir, ignore_errors=True)
    return FlowResult(summary, exported.model_dir, registered, start.splits)


def _prepare(
    settings: Settings, recipe: Recipe, options: FlowOptions, splits: Splits | None
) -> _Start:
    """Everything checked before the first step: bad input is an :class:`InputError`
    (exit code 2 in the CLI)."""
    from retraining.modeling import check_max_length, load_base

    cfg, resume, init_from = recipe.training, options.resume, options.init_from
    warm_start = recipe.warm_start
    try:
        if resume not in (None, "auto") and not Path(str(resume)).expanduser().exists():
            raise TrainingError(f"checkpoint {resume} does not exist")
        splits = splits or load_training_data(
            settings, recipe.dataset, choice=recipe.data, validation=recipe.validation
        )
        base_path = resolve_base_model(recipe.base, settings)
        _seed_torch(cfg.seed)  # the new head's initial weights: the same for the same --seed
        model, tokenizer = load_base(base_path, len(splits.labels))  # fails before any training
        check_max_length(model.config, cfg.max_length)
        if warm_start is not None:
            if init_from is not None:
                raise TrainingError("warm_start and init_from are two starting points: pass one")
            warm_start, init_from = fetch_warm_start(
                settings, warm_start, recipe.base, splits.labels
            )
        if init_from is not None:
            _load_state(model, init_from)
        index = {lbl: i for i, lbl in enumerate(splits.labels)}
        tr_x, tr_y = [r.text for r in splits.train], [index[r.label] for r in splits.train]
        va_x = [r.text for r in splits.validation]
        va_y = [index[r.label] for r in splits.validation]
        te_x = [r.text for r in splits.test]
        te_y = np.array([index[r.label] for r in splits.test], dtype=np.int64)

        teacher = load_teacher(settings, recipe.teacher, splits.labels) if recipe.teacher else None
        identity = ckpt.training_identity(
            base_model=recipe.base,
            model=model,
            tokenizer=tokenizer,
            labels=splits.labels,
            cfg=cfg,
            train_texts=tr_x,
            train_y=tr_y,
            val_texts=va_x,
            val_y=va_y,
            teacher=teacher.record() if teacher else None,
            init_from=init_from,
        )
        run_dir = ckpt.run_dir(settings.home, identity)
        state = None
        if resume is not None:  # checked in full (size, hash, identity) before any step
            state = ckpt.load(ckpt.find(settings.home, identity, resume), identity)
    except InputError:
        raise
    except NewsflowError as exc:
        raise InputError(str(exc)) from exc
    return _Start(
        splits=splits,
        model=model,
        tokenizer=tokenizer,
        train_x=tr_x,
        train_y=tr_y,
        val_x=va_x,
        val_y=va_y,
        test_x=te_x,
        test_y=te_y,
        teacher=teacher,
        identity=identity,
        run_dir=run_dir,
        resume_state=state,
        init_from=init_from,
        warm_start=warm_start,
    )


def _score(start: _Start, cfg: TrainConfig) -> _Scores:
    """Temperature fitted on the validation rows; test results before and after it."""
    model, tokenizer, labels = start.model, start.tokenizer, start.splits.labels
    val_logits = predict_logits(model, tokenizer, start.val_x, max_length=cfg.max_length)
    temperature = fit_temperature(val_logits, np.asarray(start.val_y, dtype=np.int64))
    test_logits = predict_logits(model, tokenizer, start.test_x, max_length=cfg.max_length)
    raw_probs = softmax(test_logits)
    raw_eval = evaluate_probs(raw_probs, start.test_y, labels)
    probs = softmax(test_logits, temperature)
    return _Scores(
        val_logits,
        temperature,
        test_logits,
        raw_probs,
        raw_eval,
        probs,
        evaluate_probs(probs, start.test_y, labels),
    )


def _export(recipe: Recipe, start: _Start, scores: _Scores, work: Path) -> _Export:
    """The model folder (fp32, int8 as chosen, fp16 when asked) with its drift reference,
    checked for parity with torch; the served int8 graph scored on the test rows."""
    from retraining.export import parity_check, parity_sample, write_model_folder
    from retraining.int8_recipe import argmax_agreement, choose_int8

    cfg, labels, probs, ev = recipe.training, start.splits.labels, scores.probs, scores.evaluation
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    rng = np.random.default_rng(cfg.seed)
    conf = probs.max(1)
    sample = rng.choice(conf, size=min(5000, len(conf)), replace=False)
    pred = probs.argmax(1)
    reference = ReferenceDistribution(
        confidences=[round(float(c), 6) for c in sample],
        topic_mix={lbl: float(np.mean(pred == i)) for i, lbl in enumerate(labels)},
    )
    version = f"{stamp}-{recipe.base.split('/')[-1][:20]}"
    metrics = {
        "accuracy": ev.accuracy,
        "macro_f1": ev.macro_f1,
        "micro_f1": ev.micro_f1,
        "ece": ev.ece,
        "ece_uncalibrated": scores.raw_eval.ece,
        "temperature": scores.temperature,
    }
    model_dir = work / "model"
    write_model_folder(
        start.model,
        start.tokenizer,
        labels,
        model_dir,
        version=version,
        max_length=cfg.max_length,
        temperature=scores.temperature,
        base_model=recipe.base,
        metrics=metrics,
        reference=reference,
        int8=False,  # written by choose_int8 below
        fp16=recipe.fp16,
    )
    int8_choice = None
    if recipe.quantize:  # as much int8 as keeps torch's answers (retraining.int8_recipe)
        pick = np.sort(rng.permutation(len(start.val_x))[:INT8_CHOICE_TEXTS])
        int8_choice = choose_int8(
            model_dir, [start.val_x[i] for i in pick], scores.val_logits[pick]
        )
        log.info(
            "int8: %d MatMuls kept fp32, agreement with torch %.4f on %d validation texts "
            "(tried %s)",
            len(int8_choice.fp32_matmuls),
            int8_choice.agreement,
            int8_choice.n,
            int8_choice.tried,
        )
    parity_texts = parity_sample(start.test_x, seed=cfg.seed)
    parity = parity_check(
        start.model, start.tokenizer, model_dir, parity_texts, max_length=cfg.max_length
    )
    _record_parity(model_dir, parity.int8_agreement, parity.fp16_agreement)
    for failure in parity.failures():
        log.error("parity: %s", failure)
    served_acc = test_agreement = None
    if (model_dir / INT8).exists():
        from retraining.gate import evaluate_folder

        served_eval, served_probs = evaluate_folder(model_dir, start.splits.test, precision="int8")
        served_acc = served_eval.accuracy
        test_agreement = argmax_agreement(served_probs, scores.test_logits)
        _record_metrics(model_dir, {"int8_test_agreement": test_agreement})
    return _Export(model_dir, version, int8_choice, parity, served_acc, test_agreement)


def _summarise(
    recipe: Recipe,
    start: _Start,
    scores: _Scores,
    exported: _Export,
    outcome: TrainOutcome,
    base_acc: float | None,
    report_dir: Path,
) -> FlowSummary:
    ev, splits, parity = scores.evaluation, start.splits, exported.parity
    summary: FlowSummary = {
        "dataset": recipe.dataset,
        "base_model": recipe.base,
        "model_version": exported.version,
        "accuracy": ev.accuracy,
        "macro_f1": ev.macro_f1,
        "micro_f1": ev.micro_f1,
        "ece": ev.ece,
        "ece_uncalibrated": scores.raw_eval.ece,
        "temperature": scores.temperature,
        "served_int8_accuracy": exported.served_accuracy,
        "int8_test_agreement": exported.test_agreement,
        "int8_choice": exported.int8_choice.as_dict() if exported.int8_choice else None,
        "fp16_agreement": parity.fp16_agreement,
        "tfidf_lr_accuracy": base_acc,
        "train_seconds": outcome.seconds,
        "epoch_seconds": outcome.epoch_seconds,
        "best_epoch": outcome.best_epoch,
        "parity_ok": parity.ok,
        "parity": dataclasses.asdict(parity),
        "splits": splits.summary(),
        "data_card": splits.card,
        "per_class": ev.per_class,
        "model_dir": str(exported.model_dir),
        "report_dir": str(report_dir),
        "registered_version": None,
        "run_id": None,
        "warm_start": start.init_from is not None,
        "train_steps": outcome.steps,
        "resumed_from": outcome.resumed_from,
        "teacher": (
            start.teacher.summary(start.test_x, start.test_y, scores.probs, splits.labels)
            if start.teacher
            else None
        ),
    }
    summary["seed"], summary["validation_info"] = (
        recipe.training.seed,
        dict(splits.validation_info),
    )
    if start.warm_start is not None:
        summary["warm_start_version"] = start.warm_start
    return summary


def _record_recipe(folder: Path, recipe: Recipe, start: _Start) -> dict[str, Any]:
    """Keep the recipe in metadata.json as it ran: the data files it read with their
    SHA-256 (from the dataset card, when the rows came with one), the warm start's version
    in its canonical spelling. Returns the recorded record."""
    recorded = recipe.with_data_files(start.splits.card)
    if start.warm_start is not None:
        recorded = dataclasses.replace(recorded, warm_start=start.warm_start)
    record = recorded.to_dict()
    meta = read_metadata(folder)
    write_metadata(folder, meta.model_copy(update={"recipe": record}))
    return record


def _record_parity(folder: Path, int8: float | None, fp16: float | None) -> None:
    """Keep the graphs' measured agreement in metadata.json, so a worker can log it."""
    _record_metrics(folder, {"int8_agreement": int8, "fp16_agreement": fp16})


def _record_metrics(folder: Path, extra: dict[str, float | None]) -> None:
    meta = read_metadata(folder)
    meta.metrics.update({k: v for k, v in extra.items() if v is not None})
    write_metadata(folder, meta)


TORCH_STATE = TORCH_STATE_FILE  # the fine-tuned classifier's weights, logged under torch/


def _save_state(model: Any, path: Path) -> None:
    import torch

    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def _seed_torch(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _load_state(model: Any, path: Path) -> None:
    """Load a state dict saved by an earlier run; anything unreadable, not a state dict of
    this model or holding non-finite weights is a TrainingError."""
    import torch

    from retraining.errors import TrainingError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty, not a torch file, not readable
        raise TrainingError(
            f"cannot warm-start from {path}: unreadable weights ({type(exc).__name__}: "
            f"{str(exc)[:200]})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise TrainingError(f"cannot warm-start from {path}: not a state dict of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise TrainingError(
            f"cannot warm-start from {path}: non-finite weights in {len(bad)} tensors "
            f"(first: {bad[0]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # another base model, or another label set
        raise TrainingError(f"cannot warm-start from {path}: {str(exc)[:300]}") from exc


def _scratch(settings: Settings) -> Path:
    path = settings.home / "work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log_to_mlflow(
    settings: Settings,
    summary: FlowSummary,
    cfg: TrainConfig,
    history: list[dict[str, float]],
    model_dir: Path,
    report_dir: Path,
    parity_ok: bool,
    tags: dict[str, str],
    state_path: Path | None = None,
    *,
    card_dir: Path | None = None,
) -> str | None:
    import mlflow

    from pipeline.core import registry

    exp = registry.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=exp, run_name=summary["model_version"]) as run:
        mlflow.set_tags(
            {
                "dataset": summary["dataset"],
                "base_model": summary["base_model"],
                "model_version": summary["model_version"],
                **(
                    {"warm_start_version": summary["warm_start_version"]}
                    if "warm_start_version" in summary
                    else {}
                ),
                **tags,
            }
        )
        mlflow.log_params(
            {**dataclasses.asdict(cfg), **{f"split_{k}": v for k, v in summary["splits"].items()}}
        )
        if "recipe" in summary:  # the whole recipe: flattened params, and as it is recorded
            mlflow.log_params(mlflow_params(summary["recipe"]))
            mlflow.log_dict(summary["recipe"], "recipe.json")
            mlflow.set_tag("recipe", json.dumps(summary["recipe"], sort_keys=True))
        if summary.get("teacher"):
            teacher_params, teacher_metrics = distill_mlflow_record(summary["teacher"] or {})
            mlflow.log_params(teacher_params)
            mlflow.log_metrics(teacher_metrics)
            mlflow.set_tag("teacher_version", teacher_params["teacher_version"])
        if summary.get("resumed_from"):
            mlflow.set_tag("resumed_from", str(summary["resumed_from"]))
        for row in history:
            step = int(row["epoch"])
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=step)
        flat = {
            k: float(v)
            for k, v in summary.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        mlflow.log_metrics({**flat, "parity_ok": float(parity_ok)})
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        if card_dir is not None and card_dir.exists():
            log_card(card_dir)
        card = summary.get("data_card")
        if card:
            mlflow.log_dict(card, "dataset_card.json")
            mlflow.log_text(data_card_markdown(card), "dataset_card.md")
        mlflow.log_artifacts(str(model_dir), artifact_path=registry.MODEL_ARTIFACT)
        if state_path is not None and state_path.exists():
            mlflow.log_artifact(str(state_path), artifact_path=registry.TORCH_STATE_DIR)
        run_id: str = run.info.run_id
        summary["run_id"] = run_id
    if not parity_ok:
        log.error("ONNX parity check failed; version not registered")
        return None
    version = registry.register_folder(
        settings,
        run_id=run_id,
        model_version=summary["model_version"],
        metrics={
            "accuracy": summary["accuracy"],
            "macro_f1": summary["macro_f1"],
            "ece": summary["ece"],
        },
        folder=model_dir,
        torch_state=state_path if state_path is not None and state_path.exists() else None,
    )
    summary["registered_version"] = version
    if card_dir is not None and card_dir.exists():
        describe_version(settings, version, card_dir, run_id)
    return version
