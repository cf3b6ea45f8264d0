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
  check's accuracy on reviewed items when the version was promoted, else the reference
  estimate) minus
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
from typing import Any, Literal

from pipeline.core.stats import wilson_interval

UNKNOWN = "unknown"
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
