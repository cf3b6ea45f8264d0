"""Distillation from a registered model version (`newsflow train --teacher VERSION`).

The teacher is a registered version's ONNX folder, run by the worker runtime
(:class:`pipeline.core.runtime.Classifier`, no torch). Its calibrated soft labels,
``softmax(logits / (its temperature * T))`` with the columns reordered to the student's labels
by name, are computed once for every training row before training; the student then minimises
``alpha * T² * KL(teacher ‖ student at T) + (1 - alpha) * CE(gold)``
(:func:`retraining.train.distill_loss`). Everything that would make the teacher unusable (no
such version, a corrupt folder, another label set) is a :class:`TrainingError` before any
training step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.errors import NewsflowError
from pipeline.core.runtime import Classifier, softmax
from pipeline.core.settings import Settings, mask_userinfo
from retraining.errors import TrainingError
from retraining.train import SoftTargets, check_distill_options

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
SOFT_CACHE = "teacher-soft.npy"
CHUNK = 1024  # rows per progress update


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """``teacher``: a registry version number; ``alpha``: weight of the distillation term
    (1 - alpha goes to cross-entropy on the gold labels); ``temperature``: T."""

    teacher: str
    alpha: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not (self.teacher.isascii() and self.teacher.isdigit() and len(self.teacher) < 10):
            raise TrainingError(
                f"--teacher takes a registry version number (see `newsflow models list`), "
                f"not {self.teacher[:40]!r}"
            )
        check_distill_options(self.alpha, self.temperature)


@dataclasses.dataclass
class Teacher:
    config: DistillConfig
    folder: Path
    classifier: Classifier
    registered_model: str
    soft_label_seconds: float = 0.0

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.labels)

    def record(self) -> dict[str, Any]:
        """What identifies the soft labels (part of a checkpoint's identity)."""
        return {
            "version": self.config.teacher,
            "model_version": self.classifier.version,
            "registered_model": self.registered_model,
            "alpha": self.config.alpha,
            "temperature": self.config.temperature,
        }

    def probabilities(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        t: float = 1.0,
        progress: Progress | None = None,
    ) -> npt.NDArray[np.float32]:
        """``softmax(logits / (calibration temperature * t))``, columns in ``labels`` order."""
        order = [self.labels.index(lbl) for lbl in labels]
        out = np.zeros((len(texts), len(labels)), dtype=np.float32)
        scale = self.classifier.meta.temperature * t
        for start in range(0, len(texts), CHUNK):
            end = min(start + CHUNK, len(texts))
            logits = self.classifier.logits(list(texts[start:end]))[:, order]
            out[start:end] = softmax(logits, scale).astype(np.float32)
            if progress:
                progress(f"teacher v{self.config.teacher} soft labels", end, len(texts))
        return out

    def soft_targets(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        cache_dir: Path | None = None,
        progress: Progress | None = None,
    ) -> SoftTargets:
        """The soft labels of every training row at T, computed once; kept in ``cache_dir``
        (the run's checkpoint folder) so a resumed run does not compute them again."""
        shape = (len(texts), len(labels))
        cached = _read_cache(cache_dir / SOFT_CACHE, shape) if cache_dir else None
        started = time.monotonic()
        if cached is not None:
            probs = cached
            log.info("teacher soft labels reused from %s", cache_dir)
        else:
            probs = self.probabilities(texts, labels, self.config.temperature, progress)
            if cache_dir is not None:
                _write_cache(cache_dir / SOFT_CACHE, probs)
        self.soft_label_seconds = time.monotonic() - started
        return SoftTargets(probs, alpha=self.config.alpha, temperature=self.config.temperature)

    def summary(
        self,
        test_texts: Sequence[str],
        test_y: npt.NDArray[np.int64],
        student_probs: npt.NDArray[np.float64],
        labels: Sequence[str],
    ) -> dict[str, Any]:
        """The teacher's record plus its test accuracy and the student's agreement with it."""
        teacher_pred = self.probabilities(test_texts, labels, 1.0).argmax(1)
        return {
            **self.record(),
            "base_model": self.classifier.meta.base_model,
            "labels": self.labels,
            "calibration_temperature": self.classifier.meta.temperature,
            "soft_label_seconds": round(self.soft_label_seconds, 3),
            "test_accuracy": float(np.mean(teacher_pred == test_y)) if len(test_y) else None,
            "student_agreement": (
                float(np.mean(teacher_pred == student_probs.argmax(1))) if len(test_y) else None
            ),
        }


def load_teacher(settings: Settings, cfg: DistillConfig, labels: Sequence[str]) -> Teacher:
    """Fetch and load the teacher version, checking it can teach a model with ``labels``."""
    from mlflow.exceptions import MlflowException

    from pipeline.core import registry

    name = settings.registered_model_name
    try:
        registry.client(settings).get_model_version(name, cfg.teacher)
    except MlflowException:
        raise TrainingError(
            f"teacher version {cfg.teacher} does not exist in registered model {name!r} at "
            f"{mask_userinfo(settings.tracking_uri())}{_known_versions(settings)}"
        ) from None
    try:
        folder = registry.local_copy(settings, cfg.teacher)
        clf = Classifier.load(folder, precision="fp32", warmup=False)
    except NewsflowError as exc:
        raise TrainingError(f"teacher version {cfg.teacher} is unusable: {exc}") from exc
    if set(clf.labels) != set(labels):
        raise TrainingError(
            f"teacher version {cfg.teacher} predicts other labels than the training data: "
            f"teacher {sorted(clf.labels)}, data {sorted(labels)} (only in the teacher: "
            f"{sorted(set(clf.labels) - set(labels))}; only in the data: "
            f"{sorted(set(labels) - set(clf.labels))})"
        )
    log.info("teacher: version %s (%s) from %s", cfg.teacher, clf.version, folder)
    return Teacher(cfg, folder, clf, name)


def _known_versions(settings: Settings) -> str:
    from pipeline.core import registry

    try:
        versions = [v.version for v in registry.list_versions(settings)]
    except Exception:  # the listing only decorates the message
        return ""
    return f" (registered: {', '.join(versions)})" if versions else " (no version registered)"


def mlflow_record(teacher: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """MLflow params and metrics of a distilled run, from FlowSummary's ``teacher``."""
    params = {
        "teacher_version": teacher["version"],
        "teacher_model_version": teacher["model_version"],
        "distill_alpha": teacher["alpha"],
        "distill_temperature": teacher["temperature"],
    }
    metrics = {
        f"teacher_{k}": float(teacher[k])
        for k in ("test_accuracy", "student_agreement", "soft_label_seconds")
        if teacher.get(k) is not None
    }
    return params, metrics


def _read_cache(path: Path, shape: tuple[int, int]) -> npt.NDArray[np.float32] | None:
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = (
        probs.shape == shape
        and probs.dtype == np.float32
        and bool(np.isfinite(probs).all())
        and bool(np.allclose(probs.sum(1), 1.0, atol=1e-3))
    )
    return probs if ok else None


def _write_cache(path: Path, probs: npt.NDArray[np.float32]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            np.save(fh, probs, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
