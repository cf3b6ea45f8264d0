"""Provisional suggestions for topics being onboarded, found in the live stream by the workers
without torch: the served graph's second output (the pooled, L2-normalised embedding,
:meth:`pipeline.core.runtime.Classifier.infer`) is compared with each onboarding topic's
prototype (the normalised mean of its named examples in the same model's space), one matrix
product per batch.

* **Prototypes** (:func:`refresh`, run by the worker at each model poll): for every topic
  being onboarded, the served model embeds its named examples (confirmed labels first, then
  the named candidates' members nobody relabelled) and stores the prototype per model
  version; it is computed again when the topic has gained confirmed labels, and for a new
  model version after a swap. The worker then serves the prototypes of its version.
* **Matching** (:meth:`SuggestionSet.match`): an item whose best cosine clears
  ``topic_suggest_min_cosine`` is a suggestion for that topic.
* **Queueing** (:func:`queue_matches`): in one short transaction after the batch is stored
  (it never holds the batch up: a failure is logged and the batch stands), within the
  topic's share of the review budget (:func:`topic_cap`, the same cap as the scheduler's
  label requests: every pending suggestion of the topic counts), each article once.
* **Favoured or not** (:func:`favoured`): a topic's suggestions go first in the queue while
  reviewers accept them; once at least ``topic_suggest_min_answered`` are answered and the
  95 % Wilson upper bound of their acceptance is below ``topic_suggest_min_acceptance``, the
  worker queues no more for it (the waiting ones, at most the cap, stay; nothing else waits
  on them, and the topic page says what to do).

Example:
    >>> found = refresh(engine, classifier, policy=policy)  # doctest: +SKIP
    >>> found.match(vectors)  # doctest: +SKIP
    [Match(row=3, topic='Medicine', cosine=0.91)]
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from pipeline.core.db import suggestions as suggestions_db
from pipeline.core.db.topics import lock_topic_changes

if TYPE_CHECKING:
    from pipeline.core.runtime import Classifier
    from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.suggestions")

EXAMPLES = 200  # named examples a prototype averages at most
NO_BUDGET_CAP = 200  # pending suggestions per topic when the review budget is off (0)
FAVOURED_PRIORITY = -1  # first in the queue, as the named candidates' members
Z95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class SuggestPolicy:
    """The worker's suggestion settings (see :meth:`from_settings`)."""

    min_cosine: float = 0.8
    cap: int = 30  # pending suggestions per topic
    min_answered: int = 10
    min_acceptance: float = 0.3

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be within [-1, 1], got {self.min_cosine}")
        if self.cap < 0 or self.min_answered < 0 or not 0.0 <= self.min_acceptance <= 1.0:
            raise ValueError(f"invalid suggestion policy: {self}")

    @classmethod
    def from_settings(cls, settings: Settings) -> SuggestPolicy:
        return cls(
            min_cosine=settings.topic_suggest_min_cosine,
            cap=topic_cap(
                settings.review_budget_per_hour,
                settings.review_lookahead_hours,
                settings.topic_label_request_share,
            ),
            min_answered=settings.topic_suggest_min_answered,
            min_acceptance=settings.topic_suggest_min_acceptance,
        )


def topic_cap(budget_per_hour: int, lookahead_hours: float, share: float) -> int:
    """Suggestions one topic may have pending: ``share`` of the queue the review budget
    allows (``budget_per_hour`` × ``lookahead_hours``); :data:`NO_BUDGET_CAP` without one."""
    budget = budget_per_hour * lookahead_hours
    if budget <= 0:
        return NO_BUDGET_CAP
    return max(1, math.floor(share * budget))


def acceptance_upper(accepted: int, answered: int) -> float:
    """The 95 % Wilson upper bound of ``accepted / answered`` (1.0 with nothing answered)."""
    if answered <= 0:
        return 1.0
    p = accepted / answered
    z2 = Z95 * Z95
    centre = p + z2 / (2 * answered)
    spread = Z95 * math.sqrt(p * (1 - p) / answered + z2 / (4 * answered * answered))
    return min(1.0, (centre + spread) / (1 + z2 / answered))


def favoured(answers: suggestions_db.TopicAnswers, policy: SuggestPolicy) -> bool:
    """Keep suggesting for this topic: too few answers to judge, or reviewers may still
    accept at least ``min_acceptance`` of them (Wilson upper bound)."""
    if answers.answered < policy.min_answered:
        return True
    return acceptance_upper(answers.accepted, answers.answered) >= policy.min_acceptance


def prototype(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The unit-length mean of ``vectors`` (rows); ValueError when there are none or they
    cancel out."""
    if len(vectors) == 0:
        raise ValueError("a prototype needs at least one example")
    mean = vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not math.isfinite(norm) or norm < 1e-9:
        raise ValueError("the examples' mean is zero: no direction to compare with")
    unit: npt.NDArray[np.float32] = (mean / norm).astype(np.float32)
    return unit


@dataclasses.dataclass(frozen=True)
class Match:
    row: int  # index into the batch
    topic: str
    cosine: float


@dataclasses.dataclass(frozen=True)
class SuggestionSet:
    """The prototypes one model version's items are compared with (unit rows of
    ``matrix``, one per topic in ``topics``)."""

    model_version: str
    topics: tuple[str, ...]
    matrix: npt.NDArray[np.float32]  # [topics, hidden]
    min_cosine: float

    def match(self, vectors: npt.NDArray[np.float32] | None) -> list[Match]:
        """Items (rows of ``vectors``, unit length) whose best cosine to a prototype is at
        least ``min_cosine``, best first."""
        if vectors is None or len(vectors) == 0 or not self.topics:
            return []
        if vectors.shape[1] != self.matrix.shape[1]:
            return []  # another model's space (cannot happen after the version check)
        sims = vectors @ self.matrix.T
        best = sims.argmax(axis=1)
        top = sims[np.arange(len(vectors)), best]
        rows = np.flatnonzero(top >= self.min_cosine)
        found = [Match(int(i), self.topics[int(best[i])], float(top[i])) for i in rows]
        return sorted(found, key=lambda m: -m.cosine)


class SuggestionHolder:
    """The current :class:`SuggestionSet`, set by the refresher thread, read per batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: SuggestionSet | None = None
        self._warned: set[str] = set()

    @property
    def current(self) -> SuggestionSet | None:
        with self._lock:
            return self._current

    def set(self, found: SuggestionSet | None) -> None:
        with self._lock:
            self._current = found

    def warn_once(self, version: str, message: str) -> None:
        """Log ``message`` once per model version."""
        with self._lock:
            if version in self._warned:
                return
            self._warned.add(version)
        log.warning("%s", message)


def _stale(stored: suggestions_db.Prototype | None, confirmed: int) -> bool:
    """No prototype yet, or the topic gained confirmed labels since (a tenth more, at least
    four): its examples say more now."""
    if stored is None:
        return True
    return confirmed >= stored.labelled + max(4, stored.labelled // 10)


def refresh(
    engine: Engine,
    classifier: Classifier,
    *,
    policy: SuggestPolicy,
    holder: SuggestionHolder | None = None,
) -> SuggestionSet | None:
    """Compute the missing or stale prototypes of the topics being onboarded with
    ``classifier`` and return the set its items are compared with (favoured topics only);
    None when nothing is onboarding, or the model has no embedding output (logged once)."""
    answers = suggestions_db.select_onboarding_answers(engine)
    if not answers:
        return None
    version = classifier.version
    if not classifier.has_embedding:
        message = (
            f"model {version} was exported without the embedding output: no provisional "
            "suggestions for the topics being onboarded until a model exported since issue 24 "
            "serves (retrain, or export the folder again)"
        )
        if holder is not None:
            holder.warn_once(version, message)
        else:
            log.warning("%s", message)
        return None
    stored = {p.topic: p for p in suggestions_db.select_prototypes(engine, model_version=version)}
    confirmed = suggestions_db.count_confirmed(engine, topics=[a.topic for a in answers])
    for a in answers:
        if _stale(stored.get(a.topic), confirmed[a.topic]):
            made = _compute(engine, classifier, a.topic, labelled=confirmed[a.topic])
            if made is not None:
                stored[a.topic] = made
    keep = [a.topic for a in answers if a.topic in stored and favoured(a, policy)]
    if not keep:
        return SuggestionSet(version, (), np.zeros((0, 0), dtype=np.float32), policy.min_cosine)
    matrix = np.array([stored[t].vector for t in keep], dtype=np.float32)
    return SuggestionSet(version, tuple(keep), matrix, policy.min_cosine)


def _compute(
    engine: Engine, classifier: Classifier, topic: str, *, labelled: int
) -> suggestions_db.Prototype | None:
    texts = suggestions_db.select_prototype_texts(engine, topic=topic, limit=EXAMPLES)
    if not texts:
        return None
    try:
        vector = prototype(classifier.embed(texts))
    except ValueError as exc:
        log.warning("no prototype for topic %r: %s", topic, exc)
        return None
    made = suggestions_db.Prototype(
        topic, classifier.version, tuple(float(x) for x in vector), len(texts), labelled
    )
    with engine.begin() as conn:
        suggestions_db.upsert_prototype(conn, prototype=made)
    log.info(
        "prototype of topic %r for model %s from %d examples (%d confirmed)",
        topic,
        classifier.version,
        len(texts),
        labelled,
    )
    return made


def queue_matches(
    engine: Engine,
    matches: Sequence[Match],
    article_ids: Sequence[str],
    *,
    model_version: str,
    cap: int,
) -> dict[str, int]:
    """Queue the matched items (``article_ids`` by batch row) for review with their topic
    suggested, at most ``cap`` pending per topic (counted under the topics lock, so several
    workers keep to it), best cosine first; topic → queued."""
    if not matches:
        return {}
    with engine.begin() as conn:
        lock_topic_changes(conn)
        pending = suggestions_db.lock_onboarding_topics(
            conn, topics=sorted({m.topic for m in matches})
        )
        room = {t: max(0, cap - n) for t, n in pending.items()}
        chosen: dict[str, list[suggestions_db.NewSuggestion]] = {}
        for m in matches:  # best first
            if room.get(m.topic, 0) > len(chosen.get(m.topic, [])):
                chosen.setdefault(m.topic, []).append(
                    suggestions_db.NewSuggestion(
                        article_ids[m.row], model_version, m.topic, m.cosine
                    )
                )
        return {
            topic: suggestions_db.queue_suggestions(conn, items=items, priority=FAVOURED_PRIORITY)
            for topic, items in chosen.items()
        }
