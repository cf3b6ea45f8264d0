"""The promotion gate: a challenger replaces the champion only if it is not worse on the
same evaluation data (macro-F1 within a margin, no class F1 dropping too far)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.datasets import LabelledText
from pipeline.core.model_folder import Precision
from pipeline.core.runtime import Classifier
from retraining.errors import TrainingError
from retraining.evaluate import Evaluation, evaluate_probs


@dataclasses.dataclass(frozen=True)
class GatePolicy:
    max_macro_f1_drop: float = 0.005
    max_class_f1_drop: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_macro_f1_drop", "max_class_f1_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise TrainingError(f"{name} must be within [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None
    # what the macro-F1 figures in ``reasons`` are taken over: the champion's topics with rows
    compared: dict[str, Any] = dataclasses.field(default_factory=dict)


def gate(
    challenger: Evaluation, champion: Evaluation | None, policy: GatePolicy | None = None
) -> GateDecision:
    policy = policy or GatePolicy()
    if champion is None:
        return GateDecision(True, ["no champion yet"], challenger.flat(), None)
    reasons = []
    # Both are compared on the champion's topics that have rows here. A challenger's new
    # topics (onboarding) and a topic being removed have none: their F1 of 0 would only
    # dilute the macro-F1 of whichever side knows them.
    scored = scored_classes(champion)
    ours_macro = old_classes_macro_f1(challenger, scored)
    theirs_macro = old_classes_macro_f1(champion, scored)
    drop = theirs_macro - ours_macro
    if not (math.isfinite(ours_macro) and math.isfinite(theirs_macro)):
        reasons.append(f"macro-F1 is not a number ({ours_macro} vs {theirs_macro})")
    elif drop > policy.max_macro_f1_drop:
        reasons.append(
            f"macro-F1 {ours_macro:.4f} is {drop:.4f} below the champion's "
            f"{theirs_macro:.4f} (allowed {policy.max_macro_f1_drop})"
        )
    for label, scores in champion.per_class.items():
        ours = challenger.per_class.get(label, {}).get("f1", 0.0)
        if not math.isfinite(ours) or scores["f1"] - ours > policy.max_class_f1_drop:
            reasons.append(f"class {label!r} F1 {ours:.4f} vs champion {scores['f1']:.4f}")
    passed = not reasons
    if passed:
        reasons.append(f"macro-F1 {ours_macro:.4f} vs champion {theirs_macro:.4f}")
    compared = {
        "classes": scored,
        "challenger_macro_f1": ours_macro,
        "champion_macro_f1": theirs_macro,
    }
    return GateDecision(passed, reasons, challenger.flat(), champion.flat(), compared)


def scored_classes(ev: Evaluation) -> list[str]:
    """The classes of ``ev`` that have rows in its evaluation data (all of them when none
    has: a degenerate set is not made to look better by dropping classes)."""
    present = [lbl for lbl, s in ev.per_class.items() if s.get("support", 0.0) > 0]
    return present or list(ev.per_class)


def old_classes_macro_f1(ev: Evaluation, old: Sequence[str] | dict[str, Any]) -> float:
    """``ev``'s macro-F1 over the classes ``old`` names (a class it does not have counts 0;
    one it has beyond them is left out)."""
    names = list(old)
    if not names:
        return ev.macro_f1
    return sum(ev.per_class.get(n, {}).get("f1", 0.0) for n in names) / len(names)


def evaluate_folder(
    folder: Path, rows: Sequence[LabelledText], *, precision: Precision = "auto"
) -> tuple[Evaluation, np.ndarray]:
    """Score a model folder (ONNX runtime, as served; ``precision`` picks another graph) on
    labelled rows."""
    clf = Classifier.load(folder, precision=precision)
    index = {lbl: i for i, lbl in enumerate(clf.labels)}
    unknown = sorted({r.label for r in rows} - set(index))
    if unknown:
        raise TrainingError(f"evaluation data has labels the model does not know: {unknown}")
    scored = clf.predict([r.text for r in rows])
    probs = np.array([s.probabilities for s in scored], dtype=np.float64)
    y = np.array([index[r.label] for r in rows], dtype=np.int64)
    return evaluate_probs(probs, y, clf.labels), probs
