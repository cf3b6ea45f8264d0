"""The gates of a retraining that adds topics, decided on intervals rather than on a point.

A new topic's precision and recall come with Wilson intervals, its F1 with a percentile
bootstrap that resamples the evaluation rows within each stratum (the topic's own rows and
the others, so the number of positives stays as observed). For a binary outcome,
resampling a stratum of ``n`` rows with ``k`` hits is exactly a Binomial(n, k / n) draw, so
the bootstrap draws true positives and false positives that way (seeded). The decision is
three-way: ``promote`` when the F1 interval's lower bound reaches the threshold, ``refuse``
when its upper bound is below it, otherwise ``needs_labels`` with an estimate of how many
more reviewed labels would likely decide it.

The old classes' check is a paired bootstrap of their macro-F1 change (challenger minus
champion on the same rows): ``pass`` when the interval rules out a loss above the
tolerance, ``refuse`` when it shows one, ``undecided`` when the rows are too few to tell,
with the number of rows that would.

Pure: counts and predictions in, records out.

Example:
    >>> g = decide_new_topic("Arts", tp=7, fn=7, fp=0, negatives=800, threshold=0.8)
    >>> g.decision, round(g.f1.estimate, 3), g.f1.high >= 0.8
    ('needs_labels', 0.667, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from pipeline.core.stats import wilson_interval
from retraining.errors import TrainingError

NewTopicDecision = Literal["promote", "refuse", "needs_labels"]
OldDecision = Literal["pass", "refuse", "undecided"]
LEVEL = 0.95  # two-sided: each way a decision is wrong at most 2.5 % of the time
RESAMPLES = 2000
SEED = 13
MAX_MORE_LABELS = 1000  # the estimate is capped here (an F1 right at the threshold)
METHOD = "stratified percentile bootstrap (binomial draws per stratum)"


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with its interval at ``LEVEL``."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class NewTopicGate:
    """The new-topic gate's decision for one topic, with the figures it rests on."""

    topic: str
    decision: NewTopicDecision
    threshold: float
    positives: int  # the topic's rows in the evaluation (held out, never trained on)
    tp: int
    fn: int
    fp: int
    precision: Interval  # Wilson
    recall: Interval  # Wilson
    f1: Interval  # bootstrap
    more_labels: int  # reviewed labels that would likely decide it (0 unless needs_labels)
    prevalence: float | None = None  # the F1 is the one at this share of the rows (None: as seen)

    @property
    def reason(self) -> str:
        at = f" (at a {self.prevalence:.0%} share)" if self.prevalence is not None else ""
        f1 = f"new topic {self.topic!r} F1{at} {self.f1} on {self.positives} held-out examples"
        if self.decision == "promote":
            return f"{f1}: lower bound >= {self.threshold}"
        if self.decision == "refuse":
            return f"{f1}: upper bound < {self.threshold}"
        return f"{f1} straddles {self.threshold}: needs {self.more_labels} more labels"

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "decision": self.decision,
            "threshold": self.threshold,
            "positives": self.positives,
            "tp": self.tp,
            "fn": self.fn,
            "fp": self.fp,
            "precision": self.precision.to_json(),
            "recall": self.recall.to_json(),
            "f1": self.f1.to_json(),
            "more_labels": self.more_labels,
            "prevalence": self.prevalence,
            "method": f"P, R: Wilson; F1: {METHOD}, {RESAMPLES} resamples, level {LEVEL}",
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True)
class OldClassesGate:
    """The old classes' macro-F1 change (challenger minus champion) on the same rows."""

    decision: OldDecision
    rows: int
    tolerance: float  # the loss that must be ruled out (0.01 = one point of macro-F1)
    champion: float
    challenger: float
    change: Interval
    rows_needed: int  # rows at which the interval's half-width would be below the tolerance

    @property
    def distinguishable(self) -> bool:
        """Whether a loss of ``tolerance`` is told apart from no change on these rows."""
        return self.change.half_width < self.tolerance

    @property
    def reason(self) -> str:
        head = (
            f"old classes' macro-F1 {self.champion:.4f} -> {self.challenger:.4f}, change "
            f"{self.change} on {self.rows} rows (interval width {2 * self.change.half_width:.4f})"
        )
        if self.decision == "pass":
            return f"{head}: a loss above {self.tolerance} is ruled out"
        if self.decision == "refuse":
            return f"{head}: a loss above {self.tolerance}"
        return (
            f"{head}: cannot tell a loss of {self.tolerance} from noise; about "
            f"{self.rows_needed} rows would"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "rows": self.rows,
            "tolerance": self.tolerance,
            "champion": round(self.champion, 4),
            "challenger": round(self.challenger, 4),
            "change": self.change.to_json(),
            "interval_width": round(2 * self.change.half_width, 4),
            "distinguishable": self.distinguishable,
            "rows_needed": self.rows_needed,
            "reason": self.reason,
        }


def _f1(tp: np.ndarray, fn: int | np.ndarray, fp: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fn + fp
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def _f1_at(recall: np.ndarray, fp_rate: np.ndarray, prevalence: float) -> np.ndarray:
    """F1 where the class makes up ``prevalence`` of the rows: precision = pi R / (pi R + (1 -
    pi) FPR). The same recall and false-positive rate give a lower F1 the rarer the class."""
    found = prevalence * recall
    precision = np.where(
        found > 0, found / np.maximum(found + (1 - prevalence) * fp_rate, 1e-12), 0
    )
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.maximum(denom, 1e-12), 0.0)


def f1_interval(
    *,
    tp: int,
    fn: int,
    fp: int,
    negatives: int,
    prevalence: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """F1 of one class with a stratified percentile bootstrap: ``tp + fn`` rows of the class
    (``tp`` found) and ``negatives`` rows of other classes (``fp`` of them taken for it).
    ``prevalence``: the F1 the same recall and false-positive rate give where the class is
    that share of the rows (None: its share in these rows); its interval then comes from the
    rates' Jeffreys posteriors rather than binomial redraws."""
    positives = tp + fn
    if min(tp, fn, fp) < 0 or fp > negatives:
        raise TrainingError(f"bad counts: tp={tp} fn={fn} fp={fp} negatives={negatives}")
    if resamples < 1000:
        raise TrainingError(f"a bootstrap needs at least 1000 resamples, got {resamples}")
    if prevalence is not None and not 0 < prevalence < 1:
        raise TrainingError(f"prevalence must lie in (0, 1), got {prevalence}")
    at = prevalence is not None and positives > 0 and negatives > 0

    def f1(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
        if at:
            assert prevalence is not None
            return _f1_at(tps / positives, fps / negatives, prevalence)
        return _f1(tps, positives - tps, fps)

    point = float(f1(np.array(tp), np.array(fp)))
    if positives == 0:
        return Interval(point, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    if at:
        # Recall and false-positive rate drawn from their Jeffreys posteriors, Beta(k + 1/2,
        # n - k + 1/2): 10 of 10 found still leaves recall uncertain (a binomial draw at
        # 10/10 would always give 10), and so does 0 false positives.
        recall = rng.beta(tp + 0.5, fn + 0.5, resamples)
        fp_rate = rng.beta(fp + 0.5, negatives - fp + 0.5, resamples)
        assert prevalence is not None
        scores = _f1_at(recall, fp_rate, prevalence)
    else:
        tps = rng.binomial(positives, tp / positives, resamples)
        fps = (
            rng.binomial(negatives, fp / negatives, resamples) if negatives else np.zeros(resamples)
        )
        scores = f1(tps, fps)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return Interval(point, float(min(low, point)), float(max(high, point)))


def labels_to_decide(f1: Interval, *, positives: int, threshold: float) -> int:
    """Held-out examples of the topic still needed before the interval clears ``threshold``.

    The half-width ``h`` shrinks as 1/sqrt(n); at the observed F1 the interval clears the
    threshold once ``h * sqrt(n0 / n) < |F1 - threshold|``, so
    ``more = ceil(n0 * (h / |F1 - threshold|) ** 2) - n0`` (at least 1, at most
    ``MAX_MORE_LABELS``)."""
    gap = abs(f1.estimate - threshold)
    if positives <= 0:
        return MAX_MORE_LABELS
    if gap <= 0:
        return MAX_MORE_LABELS
    needed = math.ceil(positives * (f1.half_width / gap) ** 2) - positives
    return max(1, min(MAX_MORE_LABELS, needed))


def decide_new_topic(
    topic: str,
    *,
    tp: int,
    fn: int,
    fp: int,
    negatives: int,
    threshold: float,
    held_share: float = 1.0,
    prevalence: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> NewTopicGate:
    """Promote, refuse or ask for labels for a new topic from its held-out counts.

    ``held_share``: the share of new reviewed labels that will be held out at the next
    retraining (the rest train), so ``more_labels`` = held-out examples still needed /
    ``held_share``. ``prevalence``: judge the F1 the topic would have at that share of the
    rows (:func:`f1_interval`); a retraining passes 1 / its number of topics, the share each
    old topic has in a balanced test split, rather than the share its few held-out examples
    happen to have beside the test rows (10 beside 1,000: one false positive in a hundred
    old-topic rows then costs a tenth of precision)."""
    if not 0 < held_share <= 1:
        raise TrainingError(f"held_share must be within (0, 1], got {held_share}")
    if not 0 < threshold <= 1:
        raise TrainingError(f"the F1 threshold must be within (0, 1], got {threshold}")
    positives = tp + fn
    f1 = f1_interval(
        tp=tp,
        fn=fn,
        fp=fp,
        negatives=negatives,
        prevalence=prevalence,
        resamples=resamples,
        seed=seed,
    )
    decision: NewTopicDecision
    more = 0
    if positives and f1.low >= threshold:
        decision = "promote"
    elif positives and f1.high < threshold:
        decision = "refuse"
    else:
        decision = "needs_labels"
        held = labels_to_decide(f1, positives=positives, threshold=threshold)
        more = min(MAX_MORE_LABELS, math.ceil(held / held_share))
    return NewTopicGate(
        topic=topic,
        decision=decision,
        threshold=threshold,
        positives=positives,
        tp=tp,
        fn=fn,
        fp=fp,
        precision=_wilson(tp, tp + fp),
        recall=_wilson(tp, positives),
        f1=f1,
        more_labels=more,
        prevalence=prevalence,
    )


def topic_counts(
    truth: Sequence[str], predicted: Sequence[str], topic: str
) -> tuple[int, int, int, int]:
    """(tp, fn, fp, negatives) of ``topic`` over paired true and predicted labels."""
    if len(truth) != len(predicted):
        raise TrainingError(f"{len(truth)} true labels but {len(predicted)} predictions")
    tp = fn = fp = negatives = 0
    for t, p in zip(truth, predicted, strict=True):
        if t == topic:
            tp += p == topic
            fn += p != topic
        else:
            negatives += 1
            fp += p == topic
    return tp, fn, fp, negatives


def _wilson(successes: int, n: int) -> Interval:
    low, high = wilson_interval(successes, n)
    return Interval(successes / n if n else 0.0, low, high)


def _macro_f1(y: np.ndarray, pred: np.ndarray, weights: np.ndarray, classes: int) -> float:
    hit = y == pred
    tp = np.bincount(y[hit], weights=weights[hit], minlength=classes)
    true = np.bincount(y, weights=weights, minlength=classes)
    said = np.bincount(pred[pred < classes], weights=weights[pred < classes], minlength=classes)
    denom = true + said
    present = true > 0
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def old_classes_change(
    truth: Sequence[str],
    champion: Sequence[str],
    challenger: Sequence[str],
    *,
    classes: Sequence[str],
    tolerance: float = 0.01,
    resamples: int = 1000,
    seed: int = SEED,
) -> OldClassesGate:
    """The old classes' macro-F1 change with a paired bootstrap over the rows (both models'
    predictions on the same resampled rows). A prediction outside ``classes`` (a new topic)
    is a miss for its row's class."""
    if not len(truth) == len(champion) == len(challenger):
        raise TrainingError("truth and both models' predictions must have one entry per row")
    if not 0 < tolerance < 1:
        raise TrainingError(f"the tolerance must be within (0, 1), got {tolerance}")
    index = {c: i for i, c in enumerate(classes)}
    rows = [i for i, t in enumerate(truth) if t in index]
    if not rows:
        raise TrainingError("no rows of the old classes to compare the models on")
    other = len(classes)
    y = np.array([index[truth[i]] for i in rows])
    a = np.array([index.get(champion[i], other) for i in rows])
    b = np.array([index.get(challenger[i], other) for i in rows])
    n = len(rows)
    ones = np.ones(n)
    before, after = _macro_f1(y, a, ones, other), _macro_f1(y, b, ones, other)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for k in range(resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        diffs[k] = _macro_f1(y, b, w, other) - _macro_f1(y, a, w, other)
    tail = (1 - LEVEL) / 2 * 100
    low, high = (float(v) for v in np.percentile(diffs, [tail, 100 - tail]))
    change = Interval(after - before, min(low, after - before), max(high, after - before))
    decision: OldDecision
    if change.low >= -tolerance:
        decision = "pass"
    elif change.high < -tolerance:
        decision = "refuse"
    else:
        decision = "undecided"
    needed = math.ceil(n * (change.half_width / tolerance) ** 2) if change.half_width else n
    return OldClassesGate(
        decision=decision,
        rows=n,
        tolerance=tolerance,
        champion=before,
        challenger=after,
        change=change,
        rows_needed=max(needed, 1),
    )
