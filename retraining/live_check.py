"""The live check before a promotion: the challenger faces the champion on live evidence.

Two kinds of evidence, both scored with the ONNX runtime as served:

* **Reviewed live items**: the latest uniformly sampled review items (the unbiased slice of
  the review queue; uncertainty-sampled items are the hard ones) with the reviewers' labels.
  Both models are scored on the same items, so the accuracy difference (challenger -
  champion) is paired; its interval is Newcombe's square-and-add of the two Wilson score
  intervals with the correlation of the pairs (Newcombe 1998, "Improved confidence intervals
  for the difference between binomial proportions based on paired data", method 10).
  Promotion needs **non-inferiority**: the interval's lower bound above ``-margin``. An upper
  bound below ``-margin`` is **inferior**; an interval across ``-margin`` is **undecided**: the
  items cannot tell, and the reason says about how many would (the interval narrows as
  1/sqrt(n)). Undecided is treated as missing evidence (below).
* **Recent traffic** (no labels): how often the two models pick the same topic, and the PSI
  of the challenger's confidences against the champion's on the same articles (bins at the
  champion's quantiles). Recorded and shown, not decisive.

Fewer reviewed items than ``min_reviewed``, or an undecided interval, is *no live evidence*:
with ``required`` the
promotion is refused (nothing is promoted on missing evidence), without it the offline gate
decides alone and the event says the evidence was missing.

Example:
    >>> policy = LivePolicy(margin=0.02, min_reviewed=50)
    >>> check = decide(PairedCounts(both=400, challenger_only=12, champion_only=8, neither=80),
    ...                policy)
    >>> check.verdict, check.allows
    ('non-inferior', True)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine

from pipeline.cleaning import model_text
from pipeline.core.db import articles, reviews
from pipeline.core.psi import psi, quantile_edges
from pipeline.core.runtime import Classifier, Scored
from pipeline.core.settings import Settings
from pipeline.core.stats import wilson_interval
from retraining.errors import TrainingError

Verdict = Literal["non-inferior", "inferior", "undecided", "insufficient"]


@dataclasses.dataclass(frozen=True)
class PairedCounts:
    """Reviewed items by which of the two models got them right."""

    both: int
    challenger_only: int
    champion_only: int
    neither: int

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise TrainingError(f"{f.name} must be a count (an int >= 0), got {value!r}")

    @classmethod
    def from_outcomes(
        cls, challenger_right: Sequence[bool], champion_right: Sequence[bool]
    ) -> PairedCounts:
        """Counts from each item's (challenger right, champion right)."""
        if len(challenger_right) != len(champion_right):
            raise TrainingError(
                f"paired outcomes differ in length: {len(challenger_right)} vs "
                f"{len(champion_right)}"
            )
        pairs = list(zip(challenger_right, champion_right, strict=True))
        return cls(
            both=sum(1 for a, b in pairs if a and b),
            challenger_only=sum(1 for a, b in pairs if a and not b),
            champion_only=sum(1 for a, b in pairs if b and not a),
            neither=sum(1 for a, b in pairs if not (a or b)),
        )

    @property
    def n(self) -> int:
        return self.both + self.challenger_only + self.champion_only + self.neither

    @property
    def challenger_accuracy(self) -> float | None:
        return (self.both + self.challenger_only) / self.n if self.n else None

    @property
    def champion_accuracy(self) -> float | None:
        return (self.both + self.champion_only) / self.n if self.n else None

    @property
    def difference(self) -> float | None:
        """Challenger's accuracy minus the champion's."""
        return (self.challenger_only - self.champion_only) / self.n if self.n else None


def paired_difference_interval(
    counts: PairedCounts, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Two-sided interval of the paired accuracy difference (challenger - champion):
    Newcombe's method 10, each side's Wilson interval combined with the correlation of the
    pairs (its numerator reduced by n/2 when positive, zero in between, as Newcombe's).

    Example (Newcombe's worked table: 59 both, 6 / 16 one side only, 80 neither):
        >>> [round(b, 4) for b in paired_difference_interval(PairedCounts(59, 6, 16, 80))]
        [-0.1186, -0.0046]
    """
    if not 0 < confidence < 1:
        raise TrainingError(f"confidence must be within (0, 1), got {confidence}")
    n = counts.n
    if n == 0:
        return (-1.0, 1.0)
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    right1 = counts.both + counts.challenger_only  # the challenger's correct items
    right2 = counts.both + counts.champion_only  # the champion's
    p1, p2 = right1 / n, right2 / n
    l1, u1 = wilson_interval(right1, n, z)
    l2, u2 = wilson_interval(right2, n, z)
    margins = right1 * (n - right1) * right2 * (n - right2)
    phi = 0.0
    if margins > 0:
        cross = counts.both * counts.neither - counts.challenger_only * counts.champion_only
        if cross > n / 2:
            phi = (cross - n / 2) / math.sqrt(margins)
        elif cross < 0:
            phi = cross / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return (max(-1.0, low), min(1.0, high))


@dataclasses.dataclass(frozen=True)
class LivePolicy:
    """What the live check asks (the ``live_check_*`` settings)."""

    margin: float = 0.02
    min_reviewed: int = 50
    required: bool = True
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise TrainingError(f"live check margin must be within [0, 1), got {self.margin}")
        if self.min_reviewed < 1:
            raise TrainingError(f"live check min_reviewed must be >= 1, got {self.min_reviewed}")
        if not 0.5 <= self.confidence < 1:
            raise TrainingError(
                f"live check confidence must be within [0.5, 1), got {self.confidence}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> LivePolicy:
        if settings.live_check_min_reviewed > settings.live_check_reviewed:
            raise TrainingError(
                f"live_check_min_reviewed ({settings.live_check_min_reviewed}) is above "
                f"live_check_reviewed ({settings.live_check_reviewed}): the check could "
                "never have enough evidence"
            )
        return cls(
            margin=settings.live_check_margin,
            min_reviewed=settings.live_check_min_reviewed,
            required=settings.live_check_required,
            confidence=settings.live_check_confidence,
        )


@dataclasses.dataclass(frozen=True)
class WindowComparison:
    """The two models on the same recent live articles (no labels)."""

    n: int = 0
    agreement: float | None = None  # share of articles given the same topic
    confidence_psi: float | None = None  # challenger's confidences vs the champion's


@dataclasses.dataclass(frozen=True)
class LiveCheck:
    verdict: Verdict
    allows: bool  # whether the promotion may go on (the offline gate still has to pass)
    reason: str
    counts: PairedCounts
    interval: tuple[float, float] | None  # None without enough reviewed items
    policy: LivePolicy
    window: WindowComparison
    left_out: int = 0  # uniformly reviewed articles left out: the challenger trained on them
    # the challenger's (correct, items) on the reviewed items, by the reviewers' topic: what
    # the drift check weights to the topic mix of later reviews (a rhythm is not a drop)
    by_topic: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The figures recorded on the model event (``metrics["live_check"]``)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        c = self.counts
        return {
            "verdict": self.verdict,
            "allows": self.allows,
            "reason": self.reason,
            "n_reviewed": c.n,
            "challenger_accuracy": r(c.challenger_accuracy),
            "champion_accuracy": r(c.champion_accuracy),
            "difference": r(c.difference),
            "interval": None if self.interval is None else [r(b) for b in self.interval],
            "confidence": self.policy.confidence,
            "margin": self.policy.margin,
            "min_reviewed": self.policy.min_reviewed,
            "required": self.policy.required,
            "counts": dataclasses.asdict(c),
            "left_out": self.left_out,
            "challenger_by_topic": {t: list(v) for t, v in sorted(self.by_topic.items())},
            "window": {
                "n": self.window.n,
                "agreement": r(self.window.agreement),
                "confidence_psi": r(self.window.confidence_psi),
            },
        }


def decide(
    counts: PairedCounts,
    policy: LivePolicy,
    window: WindowComparison | None = None,
    *,
    left_out: int = 0,
) -> LiveCheck:
    """The live check's verdict from the paired counts on reviewed items. Pure."""
    window = window or WindowComparison()
    traffic = _traffic_note(window)
    if counts.n < policy.min_reviewed:
        then = (
            "nothing is promoted without it (live_check_required)"
            if policy.required
            else "the offline gate decides alone (live_check_required is off)"
        )
        reason = (
            f"live check: insufficient evidence (n={counts.n} uniformly reviewed live items, "
            f"need {policy.min_reviewed}); {then}{traffic}"
        )
        return LiveCheck(
            "insufficient", not policy.required, reason, counts, None, policy, window, left_out
        )
    low, high = paired_difference_interval(counts, confidence=policy.confidence)
    figures = (
        f"accuracy {counts.challenger_accuracy:.3f} vs champion {counts.champion_accuracy:.3f} "
        f"on {counts.n} uniformly reviewed live items, difference {counts.difference:+.3f} "
        f"({policy.confidence:.0%} CI {low:+.3f} to {high:+.3f})"
    )
    verdict: Verdict
    if low > -policy.margin:
        verdict, allows = "non-inferior", True
        reason = f"live check: {figures}, non-inferior within the {policy.margin:g} margin"
    elif high < -policy.margin:
        verdict, allows = "inferior", False
        reason = (
            f"live check: {figures}; even its upper bound is below -{policy.margin:g}: "
            "inferior, not shown non-inferior"
        )
    else:
        verdict, allows = "undecided", not policy.required
        then = (
            "nothing is promoted without it (live_check_required)"
            if policy.required
            else "the offline gate decides alone (live_check_required is off)"
        )
        reason = (
            f"live check: {figures}; the interval spans -{policy.margin:g}: undecided, not "
            f"shown non-inferior ({_items_to_decide(counts, low, policy.margin)}); {then}"
        )
    return LiveCheck(
        verdict, allows, reason + traffic, counts, (low, high), policy, window, left_out
    )


def _items_to_decide(counts: PairedCounts, low: float, margin: float) -> str:
    """About how many reviewed items would put the lower bound above ``-margin`` if the
    difference stayed where it is (the interval's half-width shrinks as 1/sqrt(n))."""
    d = counts.difference or 0.0
    if d <= -margin:
        return "at this difference more items would not show it"
    need = math.ceil(counts.n * ((d - low) / (d + margin)) ** 2)
    return f"about {need} reviewed items would decide it at this difference"


def _traffic_note(window: WindowComparison) -> str:
    if window.n == 0 or window.agreement is None:
        return ""
    psi_text = (
        "" if window.confidence_psi is None else f", confidence PSI {window.confidence_psi:.3f}"
    )
    return f"; agreement {window.agreement:.3f} on {window.n} recent live articles{psi_text}"


def compare_window(
    champion: Sequence[Scored], challenger: Sequence[Scored], *, bins: int = 10
) -> WindowComparison:
    """Agreement and confidence PSI of two models' scores of the same articles. Pure."""
    if len(champion) != len(challenger):
        raise TrainingError(f"scores differ in length: {len(champion)} vs {len(challenger)}")
    if not champion:
        return WindowComparison()
    agree = sum(a.topic == b.topic for a, b in zip(champion, challenger, strict=True))
    theirs = [s.confidence for s in champion]
    edges = quantile_edges(theirs, n_bins=bins)
    return WindowComparison(
        n=len(champion),
        agreement=agree / len(champion),
        confidence_psi=psi(theirs, [s.confidence for s in challenger], edges),
    )


def _score(folder: Path, texts: Sequence[str]) -> list[Scored]:
    if not texts:
        return []
    return Classifier.load(folder, warmup=False).predict(texts)


def run_live_check(
    settings: Settings,
    *,
    engine: Engine,
    challenger: Path,
    champion: Path,
    exclude_ids: Collection[str] = (),
) -> LiveCheck:
    """Score both model folders on the latest uniformly reviewed live items (leaving out
    ``exclude_ids``: reviewed articles the challenger was trained on) and the latest stored
    articles, then :func:`decide`.

    Example:
        check = run_live_check(settings, engine=engine, challenger=new_dir, champion=old_dir)
        check.verdict, check.to_json()["interval"]
    """
    policy = LivePolicy.from_settings(settings)
    excluded = set(exclude_ids)
    reviewed = reviews.latest_uniform_reviews(
        engine, limit=settings.live_check_reviewed, exclude_ids=excluded
    )
    recent = (
        articles.latest_article_texts(engine, limit=settings.live_check_window)
        if settings.live_check_window
        else []
    )
    texts = [model_text(r.title, r.body) for r in reviewed]
    texts += [model_text(a.title, a.body) for a in recent]
    ours, theirs = _score(challenger, texts), _score(champion, texts)
    k = len(reviewed)
    counts = PairedCounts.from_outcomes(
        [s.topic == r.label for s, r in zip(ours[:k], reviewed, strict=True)],
        [s.topic == r.label for s, r in zip(theirs[:k], reviewed, strict=True)],
    )
    window = compare_window(theirs[k:], ours[k:], bins=settings.drift_bins)
    left_out = reviews.count_uniform_reviewed(engine, article_ids=excluded)
    check = decide(counts, policy, window, left_out=left_out)
    return dataclasses.replace(
        check, by_topic=topic_counts([s.topic for s in ours[:k]], [r.label for r in reviewed])
    )


def topic_counts(predicted: Sequence[str], labels: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(correct, items) by the reviewers' label. Pure.

    Example:
        >>> topic_counts(["A", "B", "A"], ["A", "A", "A"])
        {'A': (2, 3)}
    """
    out: dict[str, tuple[int, int]] = {}
    for topic, label in zip(predicted, labels, strict=True):
        right, n = out.get(label, (0, 0))
        out[label] = (right + (topic == label), n + 1)
    return dict(sorted(out.items()))
