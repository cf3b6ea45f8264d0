"""A model card for every trained version, built from what the flow measured.

``model_card.md`` and ``model_card.json`` (with ``confusion_matrix.png`` and
``reliability.png``) go to the MLflow run as ``card/…``; a short form becomes the registered
version's description. The card holds: base model, dataset, data card and split counts, the
validation split, training config, test accuracy / F1 and per-class precision / recall / F1,
the confusion matrix, calibration (ECE before and after temperature scaling, the temperature,
a reliability diagram of both), ONNX parity and the served graph's speed on the machine that
trained it (:func:`measure_speed`: the int8 graph, else fp32, with the runtime Classifier on
the CPU provider, batches of 64, a few seconds at most).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retraining.evaluate import Evaluation, expected_calibration_error

log = logging.getLogger(__name__)

CARD_ARTIFACT = "card"  # the run's artefact folder
CARD_MD, CARD_JSON = "model_card.md", "model_card.json"
CONFUSION_PNG, RELIABILITY_PNG = "confusion_matrix.png", "reliability.png"
DESCRIPTION_LIMIT = 4000  # MLflow's SQL stores keep 5,000 characters of a description
ECE_BINS = 15  # as retraining.evaluate.expected_calibration_error


@dataclasses.dataclass(frozen=True)
class ServingSpeed:
    """The served graph's throughput on the training machine (one process, CPU provider)."""

    graph: str
    precision: str
    provider: str
    texts: int  # texts timed (after one untimed warm-up batch)
    batch: int
    seconds: float
    seq_per_s: float
    ms_per_article: float
    batch_ms_p50: float
    threads: int  # intra-op threads asked for; 0 = ONNX Runtime's default (one per core)
    cpu_model: str
    cpus_usable: int
    load_average_1m: float | None  # other work on the machine while measuring
    onnxruntime: str
    platform: str
    stopped_early: bool  # the time budget ended the run before all texts were timed

    def line(self) -> str:
        threads = f"{self.threads} threads" if self.threads else "ORT default threads"
        load = "" if self.load_average_1m is None else f", load avg {self.load_average_1m:.1f}"
        return (
            f"{self.precision} graph on {self.provider}: {self.seq_per_s:.1f} seq/s, "
            f"{self.ms_per_article:.2f} ms/article (batch {self.batch}, {self.texts} test texts, "
            f"{threads}; {self.cpu_model}, {self.cpus_usable} usable CPUs{load})"
        )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure_speed(
    folder: Path,
    texts: Sequence[str],
    *,
    batch: int = 64,
    budget_s: float = 5.0,
    max_texts: int = 300,
    threads: int = 0,
) -> ServingSpeed | None:
    """Time ``folder``'s int8 graph (fp32 when it has none) on up to ``max_texts`` texts in
    batches of ``batch`` with the runtime Classifier (CPU provider). One batch of at most 16
    texts warms the session untimed; timing stops after the batch that crosses
    ``budget_s``. None when there are no texts."""
    import onnxruntime as ort

    from pipeline.core.model_folder import INT8, Precision
    from pipeline.core.runtime import CPU, Classifier

    sample = list(texts[:max_texts])
    if not sample:
        return None
    precision: Precision = "int8" if (folder / INT8).exists() else "fp32"
    clf = Classifier.load(
        folder, precision=precision, threads=threads, providers=[CPU], warmup=False
    )
    clf.predict(sample[: min(batch, 16)])
    batch_s: list[float] = []
    done = 0
    start = time.perf_counter()
    while done < len(sample):
        chunk = sample[done : done + batch]
        t0 = time.perf_counter()
        clf.predict(chunk)
        batch_s.append(time.perf_counter() - t0)
        done += len(chunk)
        if time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return ServingSpeed(
        graph=clf.graph.name,
        precision=clf.precision,
        provider=clf.provider,
        texts=done,
        batch=batch,
        seconds=round(seconds, 4),
        seq_per_s=round(done / seconds, 2),
        ms_per_article=round(1000 * seconds / done, 3),
        batch_ms_p50=round(1000 * float(np.median(batch_s)), 2),
        threads=threads,
        cpu_model=cpu_model(),
        cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        load_average_1m=None if load is None else round(load, 2),
        onnxruntime=str(ort.__version__),
        platform=platform.platform(),
        stopped_early=done < len(sample),
    )


def reliability_bins(
    probs: npt.NDArray[np.float64], y: npt.NDArray[np.int64], bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width confidence bin: count, mean confidence, accuracy (non-empty bins)."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    out = []
    for lo, hi in itertools.pairwise(np.linspace(0.0, 1.0, bins + 1)):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            out.append(
                {
                    "lo": round(float(lo), 4),
                    "hi": round(float(hi), 4),
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "accuracy": float(correct[m].mean()),
                }
            )
    return out


def write_model_card(
    out: Path,
    *,
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    evaluation: Evaluation,
    raw_probs: npt.NDArray[np.float64],
    probs: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    validation: Mapping[str, Any] | None = None,
    speed: ServingSpeed | None = None,
    report_dir: Path | None = None,
) -> dict[str, Any]:
    """Write the card into ``out`` (created; replaced if present) and return its JSON.

    ``summary``: the flow's FlowSummary (its ``data_card`` and ``teacher`` when present);
    ``raw_probs`` / ``probs``: test probabilities before / after temperature scaling;
    ``report_dir``: where :func:`retraining.evaluate.write_report` drew the confusion
    matrix (copied; drawn here when absent)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    before, after = reliability_bins(raw_probs, y), reliability_bins(probs, y)
    ece_before = expected_calibration_error(raw_probs, y)
    ece_after = expected_calibration_error(probs, y)
    card: dict[str, Any] = {
        "model_version": summary.get("model_version"),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": summary.get("base_model"),
        "dataset": summary.get("dataset"),
        "data": {
            "splits": summary.get("splits"),
            "validation": dict(validation) if validation is not None else None,
            "data_card": summary.get("data_card"),
        },
        "training": {
            "config": dict(config),
            "train_seconds": summary.get("train_seconds"),
            "best_epoch": summary.get("best_epoch"),
            "train_steps": summary.get("train_steps"),
            "warm_start": summary.get("warm_start"),
            "warm_start_version": summary.get("warm_start_version"),
            "resumed_from": summary.get("resumed_from"),
            "teacher": summary.get("teacher"),
        },
        "evaluation": {
            "n": evaluation.n,
            "accuracy": evaluation.accuracy,
            "macro_f1": evaluation.macro_f1,
            "micro_f1": evaluation.micro_f1,
            "served_int8_accuracy": summary.get("served_int8_accuracy"),
            "tfidf_lr_accuracy": summary.get("tfidf_lr_accuracy"),
            "per_class": evaluation.per_class,
            "labels": evaluation.labels,
            "confusion": evaluation.confusion,
        },
        "calibration": {
            "temperature": summary.get("temperature"),
            "ece_before": ece_before,
            "ece_after": ece_after,
            "bins": ECE_BINS,
            "reliability_before": before,
            "reliability_after": after,
        },
        "parity": summary.get("parity"),
        "int8": {
            "test_agreement": summary.get("int8_test_agreement"),
            **(summary.get("int8_choice") or {}),
        },
        "parity_ok": summary.get("parity_ok"),
        "serving": dataclasses.asdict(speed) if speed is not None else None,
        "files": [CARD_MD, CARD_JSON, CONFUSION_PNG, RELIABILITY_PNG],
    }
    _confusion_png(out / CONFUSION_PNG, evaluation, probs, y, report_dir)
    _reliability_png(out / RELIABILITY_PNG, before, after, ece_before, ece_after, card)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, default=str))
    (out / CARD_MD).write_text(card_markdown(card))
    return card


def card_markdown(card: Mapping[str, Any]) -> str:
    lines = [
        f"# Model card: {card['model_version']}",
        "",
        f"Base model `{card['base_model']}` fine-tuned on **{card['dataset']}**; "
        f"card generated {card['generated_at']}.",
        "",
        *_data_section(card["data"]),
        *_training_section(card["training"]),
        *_test_section(card["evaluation"]),
        *_calibration_section(card["calibration"]),
        *_parity_section(card),
        *_speed_section(card.get("serving")),
    ]
    return "\n".join(lines) + "\n"


def _data_section(data: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Data",
        "",
        "Split counts: " + _pairs(data.get("splits") or {}),
        "",
        f"Validation (early stopping, temperature): {_validation_text(data.get('validation'))}",
        "",
    ]
    data_card = data.get("data_card")
    if data_card:
        from retraining.training_data import data_card_markdown

        try:
            text = data_card_markdown(data_card).replace("# Dataset card", "### Dataset card", 1)
        except TypeError:  # another card layout: show it as it is
            dump = json.dumps(data_card, indent=2, default=str)
            text = f"### Dataset card\n\n```json\n{dump}\n```\n"
        lines += [text]
    return lines


def _training_section(training: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Training",
        "",
        "| option | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in training["config"].items()],
        "",
        f"Training time {_num(training.get('train_seconds'), '.0f')} s, best epoch "
        f"{training.get('best_epoch')}, {training.get('train_steps') or '?'} steps"
        + (
            f", warm-started from version {training['warm_start_version']}"
            if training.get("warm_start_version")
            else (", warm-started" if training.get("warm_start") else "")
        )
        + (f", resumed from {training['resumed_from']}" if training.get("resumed_from") else "")
        + ".",
        "",
    ]
    teacher = training.get("teacher")
    if teacher:
        lines += [f"Distilled from: {_pairs(teacher)}", ""]
    return lines


def _test_section(ev: Mapping[str, Any]) -> list[str]:
    lines = [
        f"## Test results ({ev['n']} rows)",
        "",
        f"Accuracy {_num(ev['accuracy'])}, macro-F1 {_num(ev['macro_f1'])}, micro-F1 "
        f"{_num(ev['micro_f1'])}; served int8 graph accuracy "
        f"{_num(ev.get('served_int8_accuracy'))}; TF-IDF + logistic regression on the same "
        f"split {_num(ev.get('tfidf_lr_accuracy'))}.",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, s in ev["per_class"].items():
        lines.append(
            f"| {label} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} | "
            f"{int(s['support'])} |"
        )
    labels = ev["labels"]
    lines += [
        "",
        "### Confusion matrix",
        "",
        "Rows: true class; columns: predicted class (numbered as the rows).",
        "",
        "| true \\ predicted | " + " | ".join(str(i + 1) for i in range(len(labels))) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for i, (label, row) in enumerate(zip(labels, ev["confusion"], strict=True)):
        lines.append(f"| {i + 1}. {label} | " + " | ".join(str(v) for v in row) + " |")
    return [*lines, "", f"![confusion matrix]({CONFUSION_PNG})", ""]


def _calibration_section(cal: Mapping[str, Any]) -> list[str]:
    return [
        "## Calibration",
        "",
        f"Temperature {_num(cal['temperature'])} (fitted on the validation split). ECE "
        f"({cal['bins']} equal-width bins) on the test split: {_num(cal['ece_before'])} before "
        f"scaling, {_num(cal['ece_after'])} after.",
        "",
        f"![reliability diagram]({RELIABILITY_PNG})",
        "",
    ]


def _parity_section(card: Mapping[str, Any]) -> list[str]:
    parity = card.get("parity") or {}
    int8 = card.get("int8") or {}
    lines = [
        "## ONNX parity",
        "",
        f"fp32 graph vs torch: max |logit diff| {_num(parity.get('fp32_max_abs_diff'), '.2e')}, "
        f"argmax equal {parity.get('fp32_argmax_equal')}; int8 argmax agreement with torch "
        f"{_num(parity.get('int8_agreement'))}; fp16 agreement with fp32 "
        f"{_num(parity.get('fp16_agreement'))}"
        + (f" (checked on {parity['fp16_checked_on']})" if parity.get("fp16_checked_on") else "")
        + f"; {parity.get('n', '?')} test texts; parity ok: {card.get('parity_ok')}.",
        "",
    ]
    if int8.get("int8_tried"):
        lines += [
            f"int8 graph: argmax agreement with torch {_num(int8.get('test_agreement'))} on "
            f"every test row; {int8['int8_fp32_matmuls']} FFN down-projections kept in fp32 "
            f"(chosen on {int8['int8_validation_n']} validation texts, agreement "
            f"{_num(int8['int8_validation_agreement'])}; tried {int8['int8_tried']}).",
            "",
        ]
    return lines


def _speed_section(speed: Mapping[str, Any] | None) -> list[str]:
    if not speed:
        return ["## Serving speed", "", "Not measured for this run."]
    return [
        "## Serving speed",
        "",
        ServingSpeed(**speed).line() + ".",
        "",
        f"Measured once on the training machine ({speed['platform']}, onnxruntime "
        f"{speed['onnxruntime']}) over {speed['seconds']:.2f} s"
        + (" (time budget reached)" if speed["stopped_early"] else "")
        + "; other work on the machine lowers it. A guide, not a benchmark: "
        "`newsflow bench` measures the streaming path.",
    ]


def short_description(card: Mapping[str, Any], *, run_id: str | None = None) -> str:
    """A few lines for the registry's version description."""
    ev, cal = card["evaluation"], card["calibration"]
    parity = card.get("parity") or {}
    worst = sorted(ev["per_class"].items(), key=lambda kv: kv[1]["f1"])[:3]
    training = card.get("training") or {}
    start = (
        f" (warm-started from version {training['warm_start_version']})"
        if training.get("warm_start_version")
        else (" (warm-started from the champion)" if training.get("warm_start") else "")
    )
    lines = [
        f"{card['model_version']}: {card['base_model']} fine-tuned on {card['dataset']}{start}.",
        f"Test ({ev['n']} rows): accuracy {_num(ev['accuracy'])}, macro-F1 "
        f"{_num(ev['macro_f1'])}; weakest F1: "
        + ", ".join(f"{k} {v['f1']:.3f}" for k, v in worst)
        + ".",
        f"Calibration: temperature {_num(cal['temperature'])}, ECE {_num(cal['ece_before'])} "
        f"-> {_num(cal['ece_after'])}; validation: "
        f"{_validation_text(card['data'].get('validation'))}.",
        f"Parity: int8 agreement {_num(parity.get('int8_agreement'))}, fp16 agreement "
        f"{_num(parity.get('fp16_agreement'))}.",
    ]
    if card.get("serving"):
        lines.append(f"Serving: {ServingSpeed(**card['serving']).line()}.")
    where = f"run {run_id} " if run_id else "the run's "
    lines.append(f"Full card: {where}artefacts {CARD_ARTIFACT}/{CARD_MD}.")
    return "\n".join(lines)[:DESCRIPTION_LIMIT]


def log_card(card_dir: Path) -> None:
    """Log the card folder as ``card/…`` on the active MLflow run."""
    import mlflow

    mlflow.log_artifacts(str(card_dir), artifact_path=CARD_ARTIFACT)
    validation = json.loads((card_dir / CARD_JSON).read_text())["data"].get("validation") or {}
    mlflow.set_tag("validation_split", validation.get("mode", "random"))


def describe_version(settings: Any, version: str, card_dir: Path, run_id: str | None) -> bool:
    """Set the registered version's description to the card's short form; False (logged)
    where the registry refuses it."""
    from pipeline.core import registry

    card = json.loads((card_dir / CARD_JSON).read_text())
    try:
        registry.client(settings).update_model_version(
            settings.registered_model_name,
            version,
            description=short_description(card, run_id=run_id),
        )
    except Exception as exc:  # a registry without descriptions must not fail the flow
        log.warning("could not set the description of version %s: %s", version, exc)
        return False
    return True


def _validation_text(info: Mapping[str, Any] | None) -> str:
    from retraining.time_split import describe_validation

    return describe_validation(dict(info)) if info else "not recorded"


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def _pairs(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _confusion_png(
    path: Path,
    evaluation: Evaluation,
    probs: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    report_dir: Path | None,
) -> None:
    drawn = report_dir / CONFUSION_PNG if report_dir is not None else None
    if drawn is None or not drawn.exists():
        from retraining.evaluate import write_report

        drawn = write_report(evaluation, probs, y, path.parent / ".report")[1]
    shutil.copyfile(drawn, path)
    shutil.rmtree(path.parent / ".report", ignore_errors=True)


def _reliability_png(
    path: Path,
    before: list[dict[str, float]],
    after: list[dict[str, float]],
    ece_before: float,
    ece_after: float,
    card: Mapping[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig: Any
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    temperature = card["calibration"]["temperature"]
    for bins, name, ece, style in (
        (before, "before scaling", ece_before, "s--"),
        (after, f"after (T = {_num(temperature, '.3f')})", ece_after, "o-"),
    ):
        xs = [b["confidence"] for b in bins]
        ax.plot(xs, [b["accuracy"] for b in bins], style, label=f"{name}, ECE {ece:.3f}")
        hist.bar(
            [(b["lo"] + b["hi"]) / 2 for b in bins],
            [b["n"] for b in bins],
            width=1 / ECE_BINS,
            alpha=0.45,
            label=name.split(" (")[0],
        )
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability on the test split ({card['dataset']})")
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel("confidence")
    hist.set_ylabel("rows")
    hist.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
