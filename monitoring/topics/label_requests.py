"""More labels for a topic being onboarded: when the new-topic gate asks for them, or a topic
is short of labels with nothing left to review, unreviewed articles are queued with the
topic's name suggested. Most are the ones nearest the topic's named examples (cosine to
their mean, by the embedding discovery uses); a few come from its boundary (similarity
closest to the least typical of its own examples), so the labels also tell where it ends.
At most a per-topic share of the review budget is pending for one topic at a time.

Example:
    >>> top_up(settings, engine, embed=embed_texts)  # doctest: +SKIP
    {'Arts': 24}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from monitoring.topics import onboarding
from monitoring.topics.discovery import Embed
from pipeline import suggestions
from pipeline.core.db import topics as topics_db
from pipeline.core.settings import Settings

POOL = 2000  # latest unreviewed articles to pick from
EXAMPLES = 200  # named examples the prototype is built from
BOUNDARY_SHARE = 0.2
NO_BUDGET_CAP = suggestions.NO_BUDGET_CAP  # pending per topic without a review budget


def pick(
    examples: npt.NDArray[np.float32],
    pool: npt.NDArray[np.float32],
    n: int,
    *,
    boundary_share: float = BOUNDARY_SHARE,
) -> list[int]:
    """Indices into ``pool`` (unit rows) to suggest: ``n - k`` nearest the prototype (the
    normalised mean of ``examples``), then ``k = round(n * boundary_share)`` whose similarity
    is closest to the lowest similarity of an example (the edge of the topic)."""
    if n <= 0 or len(pool) == 0 or len(examples) == 0:
        return []
    proto = examples.mean(axis=0)
    proto = proto / max(float(np.linalg.norm(proto)), 1e-12)
    sims = pool @ proto
    edge = float((examples @ proto).min())
    k = round(n * boundary_share) if n > 1 else 0
    near = [int(i) for i in np.argsort(-sims)[: n - k]]
    taken = set(near)
    by_edge = np.argsort(np.abs(sims - edge))
    boundary = [int(i) for i in by_edge if int(i) not in taken][:k]
    return near + boundary


def topic_cap(settings: Settings) -> int:
    """Suggestions one topic may have pending: ``topic_label_request_share`` of the queue the
    review budget allows (``review_budget_per_hour`` × ``review_lookahead_hours``); the same
    cap the workers' provisional suggestions keep to (:func:`pipeline.suggestions.topic_cap`),
    all pending suggestions of the topic counted together."""
    return suggestions.topic_cap(
        settings.review_budget_per_hour,
        settings.review_lookahead_hours,
        settings.topic_label_request_share,
    )


def request_labels(
    settings: Settings, engine: Engine, name: str, *, want: int, embed: Embed
) -> int:
    """Queue up to ``want`` unreviewed articles for topic ``name`` (within its share of the
    budget); how many were queued. Nothing when the topic is not onboarding, has no named
    examples or members to start from, or nothing is left to suggest."""
    state = topics_db.select_topic_state(engine, name=name)
    if state is None or state.status != "onboarding":
        return 0
    room = min(want, topic_cap(settings) - state.pending)
    if room <= 0:
        return 0
    texts = topics_db.select_topic_texts(engine, label=name, limit=EXAMPLES)
    if not texts:  # nothing confirmed yet: start from the named candidates' members
        texts = topics_db.select_member_texts(engine, name=name, limit=EXAMPLES)
    pool = topics_db.select_unreviewed(engine, limit=POOL)
    if not texts or not pool:
        return 0
    vectors = embed([f"{p.title} {p.body}"[: onboarding.MAX_TEXT] for p in pool])
    chosen = pick(embed([t[: onboarding.MAX_TEXT] for t in texts]), vectors, room)
    return _queue(engine, name, [pool[i].article_id for i in chosen])


def _queue(engine: Engine, name: str, article_ids: Sequence[str]) -> int:
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        if topics_db.lock_topic_status(conn, name=name) != "onboarding":
            return 0  # cancelled or removed meanwhile
        return topics_db.queue_onboarding_reviews(
            conn,
            members=article_ids,
            suggested_label=name,
            review_round=onboarding.ONBOARDING_ROUND,
        )


def top_up(settings: Settings, engine: Engine, *, embed: Embed | None = None) -> dict[str, int]:
    """For every onboarding topic short of the labels it needs with no suggestion waiting
    (and not rejected every time: :func:`onboarding.hopeless`), queue more; topic → queued.
    The scheduler runs it; MiniLM loads only when a topic needs suggestions."""
    out: dict[str, int] = {}
    for name in onboarding.onboarding_topics(engine):
        state = topics_db.select_topic_state(engine, name=name)
        if state is None or state.pending or onboarding.hopeless(state):
            continue
        required = onboarding.labels_required(engine, name, min_labels=settings.topic_min_labels)
        short = required - onboarding.labelled_count(engine, name)
        if short <= 0:
            continue
        if embed is None:
            from monitoring.topics.embed import embed_texts

            embed = embed_texts
        out[name] = request_labels(settings, engine, name, want=short, embed=embed)
    return out
