"""Two drift signals from the reviewers, for what the confidence distribution does not show.

Both read first-round review items that are labelled and whose article was received within
the last ``NEWSFLOW_DRIFT_REVIEW_HOURS`` (of the check's clock). Each has a 95 % Wilson
interval and is only judged on its interval:

* ``unknown``: the share labelled "none of these" (:data:`~pipeline.core.records.NONE_LABEL`)
  among every sampled item of the feed, whichever version served it (a promotion does not
  restart the count: a new kind of news stays one alert, not one per version), uniform and
  uncertainty samples alike: a kind of news no topic
  covers is what uncertainty sampling finds first, and in a feed the topics cover the share
  is near 0 in either slice (so it is a share of reviewed items, above the feed's own).
  ``warn`` when the interval's lower bound is above ``NEWSFLOW_DRIFT_UNKNOWN_WARN``, ``drift``
  above twice it: a new kind of news that no topic covers (it needs onboarding, not
  retraining). The setting must sit above the feed's usual share of "none of these". A label
  that names no topic of the model counts as not-none here.
* ``reviewed_accuracy``: on the champion's uniform sample only (the unbiased slice:
  uncertainty samples are the hard ones), the share of topic labels equal to the model's
  topic. ``warn`` when the interval's upper bound is below the reference accuracy (the live
  check's accuracy on reviewed items when the version was promoted, weighted to these
  items' topics by :func:`mix_adjusted`; else the reference estimate) minus
  ``NEWSFLOW_RETRAIN_ACCURACY_MARGIN``, ``drift`` below the reference minus twice it (a change
  of source the model reads less well). A label naming no topic of the model counts as wrong.

With fewer than ``NEWSFLOW_DRIFT_REVIEW_MIN`` items a signal is ``insufficient``: reported,
never raising the check's level or firing an alert. Pure: the drift check feeds the counts.

Example:
    >>> unknown_share(10, 40, warn=0.05, min_n=20).level
    'drift'
    >>> recent_accuracy(38, 40, reference=0.9, margin=0.05, min_n=20).level
    'ok'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from pipeline.core.stats import wilson_interval

UNKNOWN = "unknown"
# pseudo-items of the overall accuracy added to each topic's counts (a topic with a handful
# of reviewed items at the live check is read mostly as the whole)
TOPIC_PRIOR = 10.0
REVIEWED_ACCURACY = "reviewed_accuracy"

SignalLevel = Literal["ok", "warn", "drift", "insufficient"]


@dataclasses.dataclass(frozen=True)
class ReviewSignal:
    """One reviewer signal: ``count`` of ``n`` (none-of-these labels, or correct topic
    labels), the share and its interval, the cut-offs it was judged against (unknown: the
    lower bound above them; accuracy: the upper bound below them) and its level."""

    metric: str
    level: SignalLevel
    count: int
    n: int
    min_n: int
    hours: float
    value: float | None = None
    interval: tuple[float, float] | None = None
    warn_at: float | None = None
    drift_at: float | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        """Enough items to judge: only then does the signal join the check's levels."""
        return self.level != "insufficient"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def unknown_share(
    none: int, labelled: int, *, warn: float, min_n: int, hours: float = 24.0
) -> ReviewSignal:
    """The "none of these" signal from ``none`` of ``labelled`` recent reviews."""
    _check_counts(none, labelled)
    base = ReviewSignal(UNKNOWN, "insufficient", none, labelled, min_n, hours)
    if labelled < min_n:
        return dataclasses.replace(base, note=f"{labelled} reviewed; need {min_n}")
    low, high = wilson_interval(none, labelled)
    level: SignalLevel = "drift" if low > 2 * warn else "warn" if low > warn else "ok"
    return dataclasses.replace(
        base,
        level=level,
        value=none / labelled,
        interval=(low, high),
        warn_at=warn,
        drift_at=2 * warn,
    )


def recent_accuracy(
    correct: int,
    n: int,
    *,
    reference: float | None,
    margin: float,
    min_n: int,
    hours: float = 24.0,
) -> ReviewSignal:
    """The recent reviewed accuracy from ``correct`` of ``n`` topic labels, against the
    ``reference`` accuracy (None: nothing to compare with, ``insufficient``)."""
    _check_counts(correct, n)
    base = ReviewSignal(REVIEWED_ACCURACY, "insufficient", correct, n, min_n, hours)
    if n < min_n:
        return dataclasses.replace(base, note=f"{n} reviewed; need {min_n}")
    low, high = wilson_interval(correct, n)
    base = dataclasses.replace(base, value=correct / n, interval=(low, high))
    if reference is None:
        return dataclasses.replace(base, note="no reference accuracy")
    warn_at, drift_at = reference - margin, reference - 2 * margin
    level: SignalLevel = "drift" if high < drift_at else "warn" if high < warn_at else "ok"
    return dataclasses.replace(base, level=level, warn_at=warn_at, drift_at=drift_at)


def mix_adjusted(
    overall: float,
    reference_by_topic: Mapping[str, tuple[int, int]],
    reviewed_by_topic: Mapping[str, tuple[int, int]],
) -> float | None:
    """The accuracy that reviewed items with ``reviewed_by_topic``'s topics would have if
    each topic were read as well as at the reference (``reference_by_topic``: (correct,
    items) per topic, ``overall`` their accuracy): ``sum(n_t * R_t) / sum(n_t)``, each
    topic's ``R_t`` shrunk toward ``overall`` by :data:`TOPIC_PRIOR` items. A feed's topic mix
    moves with the hour and the day, and topics are not read equally well: in the 30-day
    replay weekday accuracy sat 4-6 points under the weekend's with the model unchanged, and
    an accuracy measured over 12 days of mixed days made every weekday look like a drop.
    None without reviewed items or reference topics. Pure.

    Example:
        >>> round(mix_adjusted(0.9, {"A": (99, 100), "B": (81, 100)}, {"B": (40, 50)}), 3)
        0.818
    """
    n = sum(items for _, items in reviewed_by_topic.values())
    if n == 0 or not reference_by_topic:
        return None
    expected = 0.0
    for topic, (_, items) in reviewed_by_topic.items():
        right, seen = reference_by_topic.get(topic, (0, 0))
        expected += items * (right + TOPIC_PRIOR * overall) / (seen + TOPIC_PRIOR)
    return expected / n


def _check_counts(count: int, n: int) -> None:
    if not 0 <= count <= n:
        raise ValueError(f"a count of {count} out of {n} is not a share")


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def describe(signal: ReviewSignal) -> str:
    """One clause for the check's reason text."""
    what = "none of these" if signal.metric == UNKNOWN else "reviewed accuracy"
    if signal.value is None or signal.interval is None:
        return f"{what}: {signal.note or 'not measured'}"
    low, high = signal.interval
    return (
        f"{what} {_pct(signal.value)} [{_pct(low)}, {_pct(high)}] of {signal.n} "
        f"({signal.level}{'; ' + signal.note if signal.note else ''})"
    )


def summary(signal: ReviewSignal, model_version: str | None) -> str:
    """What an alert tells the on-call engineer."""
    low, high = signal.interval or (0.0, 1.0)
    share = f"{_pct(signal.value or 0.0)} [{_pct(low)}, {_pct(high)}]"
    span = f"in the last {signal.hours:g} h"
    if signal.metric == UNKNOWN:
        return (
            f"reviewers marked {share} of {signal.n} sampled articles {span} as none of these "
            f"topics ({signal.level}): a new kind of news? see the topics page"
        )
    floor = f"{_pct(signal.warn_at)}" if signal.warn_at is not None else "?"
    return (
        f"reviewers agreed with model {model_version} on {share} of {signal.n} sampled "
        f"articles {span}, below {floor} ({signal.level}): accuracy has fallen (a change of "
        "source?); see the drift page"
    )
