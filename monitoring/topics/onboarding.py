"""Candidates and topics: store a discovery, name or dismiss a candidate (its members become
review items with the new name suggested), count the labels a new topic has, ask for a topic
to be removed or merged. The rows are read and written by :mod:`pipeline.core.db.topics`.

Every change is one transaction that locks the candidate row first, so two admins acting on
the same candidate get one success and one clear refusal, and nothing is done half-way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from monitoring.topics.discovery import Candidate, PoolItem
from pipeline.core.db import topics as topics_db
from pipeline.core.db.access import Db
from pipeline.core.db.topics import StoredCandidate as StoredCandidate  # re-exported
from pipeline.core.errors import NewsflowError
from pipeline.core.records import NONE_LABEL

ONBOARDING_ROUND = 10  # review_items.round of onboarding reviews (1 = sampled, 2 = second)
MAX_NAME = 64


class TopicError(NewsflowError):
    """A request about topics that cannot be done; nothing was changed."""


class CandidateGone(TopicError):
    """The candidate is no longer open (a newer discovery replaced it, or it was decided)."""


_INVISIBLE = frozenset("\u034f\u115f\u1160\u2800\u3164\uffa0")


def name_key(name: str) -> str:
    """What two names are compared by: compatibility-normalised (fullwidth letters, ligatures)
    and case-folded, so "Ｓｐｏｒｔｓ", "SPORTS" and "sports" are one topic."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_name(name: str, existing: Sequence[str]) -> str:
    """The cleaned topic name; TopicError when it is empty, too long, holds invisible or
    control characters or no letter or digit, is the "none of these" marker, or is (after
    compatibility normalisation and case folding) a topic that exists."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise TopicError("a topic name cannot be empty")
    if len(cleaned) > MAX_NAME:
        raise TopicError(f"a topic name has at most {MAX_NAME} characters (got {len(cleaned)})")
    if any(
        not ch.isprintable()
        or ch in _INVISIBLE
        or unicodedata.category(ch) == "Cf"
        or 0xFE00 <= ord(ch) <= 0xFE0F
        or 0xE0100 <= ord(ch) <= 0xE01EF
        for ch in cleaned
    ):
        raise TopicError("a topic name cannot hold control or invisible characters")
    if not any(ch.isalnum() for ch in cleaned) or unicodedata.category(cleaned[0]) in ("Mn", "Me"):
        raise TopicError("a topic name needs a letter or digit (and cannot start with a mark)")
    if name_key(cleaned) == name_key(NONE_LABEL):
        raise TopicError(f"{NONE_LABEL!r} is reserved")
    taken = {name_key(e): e for e in existing}
    if name_key(cleaned) in taken:
        raise TopicError(f"topic {taken[name_key(cleaned)]!r} exists already")
    return cleaned


MAX_TEXT = 2000  # characters of an article that discovery embeds


def pool(engine: Engine, *, model_version: str | None, low_confidence: int) -> list[PoolItem]:
    """What the model could not place: articles reviewers marked "none of these" (latest
    review), plus the ``low_confidence`` least confident predictions of ``model_version``."""
    with engine.connect() as conn:
        marked = topics_db.select_none_of_these(conn)
        low = topics_db.select_least_confident(
            conn, model_version=model_version, limit=low_confidence
        )
    out = {
        a.article_id: PoolItem(
            a.article_id, a.title, f"{a.title} {a.body}"[:MAX_TEXT], "none_of_these"
        )
        for a in marked
    }
    for a in low:
        out.setdefault(
            a.article_id,
            PoolItem(a.article_id, a.title, f"{a.title} {a.body}"[:MAX_TEXT], "low_confidence"),
        )
    return list(out.values())


def known_samples(
    engine: Engine, *, model_version: str | None, per_topic: int = 48, min_confidence: float = 0.9
) -> dict[str, list[str]]:
    """Texts the model placed confidently, per topic (the known topics' centroids)."""
    out: dict[str, list[str]] = {}
    for found in topics_db.select_confident_texts(
        engine, model_version=model_version, per_topic=per_topic, min_confidence=min_confidence
    ):
        out.setdefault(found.topic, []).append(found.text[:MAX_TEXT])
    return out


def save_discovery(
    engine: Engine, found: Sequence[Candidate], *, model_version: str | None
) -> list[int]:
    """Store a discovery: earlier open candidates become ``superseded``; returns new ids."""
    with engine.begin() as conn:
        topics_db.supersede_open_candidates(conn)
        return [
            topics_db.insert_candidate(
                conn,
                candidate=topics_db.NewCandidate(
                    rank=rank,
                    size=c.size,
                    separation=c.separation,
                    cohesion=c.cohesion,
                    nearest_topic=c.nearest_topic,
                    none_of_these=c.none_of_these,
                    terms=c.terms,
                    examples=c.examples,
                    members=c.members,
                ),
                model_version=model_version,
            )
            for rank, c in enumerate(found, start=1)
        ]


def candidates(engine: Engine, *, status: str | None = "open") -> list[StoredCandidate]:
    return topics_db.select_candidates(engine, status=status)


def _lock_open(conn: Connection, candidate_id: int) -> StoredCandidate:
    found = topics_db.lock_candidate(conn, candidate_id=candidate_id)
    if found is None:
        raise CandidateGone(f"candidate {candidate_id} does not exist")
    if found.status != "open":
        what = {
            "superseded": "a newer discovery replaced it; look at the current candidates",
            "accepted": f"it was accepted already as {found.name!r}",
            "dismissed": "it was dismissed",
        }.get(found.status, found.status)
        raise CandidateGone(f"candidate {candidate_id} is no longer open: {what}")
    return found


def topic_names(conn: Connection, *, model_labels: Sequence[str] = ()) -> list[str]:
    """Topics people added (onboarding or active), after ``model_labels``."""
    names = topics_db.select_topic_names(conn, statuses=("onboarding", "active"))
    return [n for n in names if n not in model_labels]


def accept(
    engine: Engine, candidate_id: int, name: str, *, admin: str, known_labels: Sequence[str]
) -> int:
    """Name an open candidate as a new topic; its members' latest predictions become review
    items (first in the queue) with ``name`` suggested. Returns how many were queued."""
    try:
        with engine.begin() as conn:
            topics_db.lock_topic_changes(conn)
            found = _lock_open(conn, candidate_id)
            existing = [*known_labels, *topic_names(conn)]
            cleaned = check_name(name, existing)
            topics_db.insert_onboarding_topic(
                conn, name=cleaned, candidate_id=candidate_id, admin=admin
            )
            queued = topics_db.queue_onboarding_reviews(
                conn, members=found.members, suggested_label=cleaned, review_round=ONBOARDING_ROUND
            )
            topics_db.accept_candidate(conn, candidate_id=candidate_id, name=cleaned, admin=admin)
            return queued
    except IntegrityError as exc:  # another admin created the same name at the same moment
        raise TopicError(f"topic {name.strip()!r} exists already") from exc


def dismiss(engine: Engine, candidate_id: int, *, admin: str) -> None:
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        _lock_open(conn, candidate_id)
        topics_db.dismiss_candidate(conn, candidate_id=candidate_id, admin=admin)


def labelled_count(engine: Engine, name: str) -> int:
    """Articles whose latest human review says ``name``."""
    return topics_db.count_latest_labels(engine, label=name)


def onboarding_topics(engine: Engine) -> list[str]:
    return topics_db.select_topic_names(engine, statuses=("onboarding",))


def mark_active(engine: Engine, names: Sequence[str], *, version: str) -> None:
    with engine.begin() as conn:
        topics_db.activate_topics(conn, names=names, version=version)


def retire(
    engine: Engine,
    name: str,
    *,
    into: str | None,
    admin: str,
    champion_labels: Sequence[str],
) -> None:
    """Ask the next retraining to remove topic ``name`` (``into`` None) or to merge it into
    ``into``: its examples then count as ``into``. TopicError when either is not a topic of
    the champion, they are the same, fewer than two topics would remain, or a change of
    that topic is pending already."""
    labels = list(champion_labels)
    if name not in labels:
        raise TopicError(f"{name!r} is not a topic of the champion ({', '.join(labels)})")
    if into is not None:
        if into not in labels:
            raise TopicError(f"{into!r} is not a topic of the champion ({', '.join(labels)})")
        if into == name:
            raise TopicError("a topic cannot be merged into itself")
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        pending = pending_changes(conn)
        targets = {t for t in pending.values() if t is not None}
        busy = name if name in pending or name in targets else into if into in pending else None
        if busy is not None:
            raise TopicError(f"a change of {busy!r} is pending already")
        left = [t for t in labels if t not in pending and t != name]
        if len(left) < 2:
            raise TopicError("a model needs at least two topics")
        topics_db.request_topic_change(conn, name=name, merge_into=into, admin=admin)


def pending_changes(db: Db) -> dict[str, str | None]:
    """Topics to remove (→ None) or merge (→ target) at the next retraining."""
    return {c.name: c.merge_into for c in topics_db.select_pending_changes(db)}


def mark_retired(engine: Engine, names: Sequence[str], *, version: str) -> None:
    with engine.begin() as conn:
        topics_db.retire_topics(conn, names=names, version=version)


def cancel(engine: Engine, name: str, *, admin: str) -> int:
    """Stop onboarding topic ``name``: it is no longer offered to reviewers and its pending
    onboarding reviews are withdrawn (labels already given stay). Returns how many."""
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        found = topics_db.lock_topic_status(conn, name=name)
        if found != "onboarding":
            raise TopicError(
                f"{name!r} is not a topic being onboarded" + (f" (it is {found})" if found else "")
            )
        topics_db.cancel_topic(conn, name=name, admin=admin)
        return topics_db.withdraw_onboarding_reviews(conn, suggested_label=name)
