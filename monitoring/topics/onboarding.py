"""Candidates and topics: store a discovery, name or dismiss a candidate (its members become
review items with the new name suggested), name several candidates of one discovery as one
topic or add one to a topic being onboarded (their members count together), count the labels
a new topic has and say what it needs next, ask for a topic to be removed or merged. The rows
are read and written by :mod:`pipeline.core.db.topics`.

Every change is one transaction that locks the candidate row first, so two admins acting on
the same candidate get one success and one clear refusal, and nothing is done half-way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from monitoring.topics.discovery import Candidate, PoolItem
from pipeline.core.db import topic_splits as topic_splits_db
from pipeline.core.db import topics as topics_db
from pipeline.core.db.access import Db
from pipeline.core.db.topics import StoredCandidate as StoredCandidate  # re-exported
from pipeline.core.errors import NewsflowError
from pipeline.core.records import NONE_LABEL

ONBOARDING_ROUND = 10  # review_items.round of onboarding reviews (1 = sampled, 2 = second)
MAX_NAME = 64
MAX_MERGE = 20  # candidates named as one topic at once
HOPELESS_AFTER = 20  # answered suggestions, all rejected: stop suggesting more


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
                    near=c.near,
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
    return _check_open(found)


def _check_open(found: StoredCandidate) -> StoredCandidate:
    candidate_id = found.id
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
    return accept_many(engine, [candidate_id], name, admin=admin, known_labels=known_labels)


def accept_many(
    engine: Engine,
    candidate_ids: Sequence[int],
    name: str,
    *,
    admin: str,
    known_labels: Sequence[str],
) -> int:
    """Name one or several open candidates of the same discovery as one new topic: their
    members (together) become review items with ``name`` suggested. Returns how many were
    queued. TopicError (nothing changed) when a candidate does not exist, is no longer open,
    or they come from different discoveries, or the name is refused."""
    ids = _candidate_ids(candidate_ids)
    try:
        with engine.begin() as conn:
            topics_db.lock_topic_changes(conn)
            found = _lock_open_together(conn, ids)
            existing = [*known_labels, *topic_names(conn)]
            cleaned = check_name(name, existing)
            topics_db.insert_onboarding_topic(conn, name=cleaned, candidate_id=ids[0], admin=admin)
            return _take(conn, found, cleaned, admin=admin)
    except IntegrityError as exc:  # another admin created the same name at the same moment
        raise TopicError(f"topic {name.strip()!r} exists already") from exc


def add_to_topic(engine: Engine, candidate_ids: Sequence[int], name: str, *, admin: str) -> int:
    """Add open candidates to topic ``name``, which is being onboarded: their members are
    queued with ``name`` suggested and count with its own. Returns how many were queued.
    TopicError (nothing changed) when there is no such topic, it is not onboarding (being
    removed or merged, cancelled, already in the model), or a candidate is refused as in
    :func:`accept_many`."""
    ids = _candidate_ids(candidate_ids)
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        names = topics_db.select_topic_names(conn, statuses=(*_WHY_NOT_ADD, "onboarding"))
        topic = next((n for n in names if name_key(n) == name_key(name.strip())), None)
        status = None if topic is None else topics_db.lock_topic_status(conn, name=topic)
        if topic is None or status is None:
            raise TopicError(f"there is no topic {name.strip()!r} to add candidates to")
        if status != "onboarding":
            why = _WHY_NOT_ADD.get(status, f"it is {status}")
            raise TopicError(f"candidates cannot be added to topic {topic!r}: {why}")
        found = _lock_open_together(conn, ids)
        return _take(conn, found, topic, admin=admin)


_WHY_NOT_ADD = {
    "removing": "it is being removed at the next retraining",
    "merging": "it is being merged into another topic at the next retraining",
    "removed": "it was removed",
    "merged": "it was merged into another topic",
    "cancelled": "its onboarding was cancelled",
    "active": "the model knows it already; reviewers label it in the usual queue",
    "splitting": "it is being split at the next retraining; add candidates to one of its parts",
    "split": "it was split into other topics",
}


def _candidate_ids(candidate_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(candidate_ids))
    if not ids:
        raise TopicError("name at least one candidate")
    if len(ids) > MAX_MERGE:
        raise TopicError(f"at most {MAX_MERGE} candidates make one topic (got {len(ids)})")
    return ids


def _lock_open_together(conn: Connection, ids: Sequence[int]) -> list[StoredCandidate]:
    """The candidates ``ids``, locked, each open, all of one discovery."""
    found = {c.id: c for c in topics_db.lock_candidates(conn, candidate_ids=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise CandidateGone(f"candidate {', '.join(map(str, missing))} does not exist")
    by_discovery: dict[object, list[int]] = {}
    for i in ids:
        by_discovery.setdefault(found[i].discovered_at, []).append(i)
    if len(by_discovery) > 1:
        groups = " and ".join(", ".join(f"#{i}" for i in g) for g in by_discovery.values())
        raise TopicError(
            f"candidates {groups} come from different discoveries: name candidates of the "
            "latest discovery together (a later one can be added to the topic afterwards)"
        )
    return [_check_open(found[i]) for i in ids]


def _take(conn: Connection, found: Sequence[StoredCandidate], name: str, *, admin: str) -> int:
    """Queue the candidates' members (together, each once) with ``name`` suggested and mark
    the candidates accepted as ``name``; how many review items were queued."""
    members = list(dict.fromkeys(m for c in found for m in c.members))
    queued = topics_db.queue_onboarding_reviews(
        conn, members=members, suggested_label=name, review_round=ONBOARDING_ROUND
    )
    for c in found:
        topics_db.accept_candidate(conn, candidate_id=c.id, name=name, admin=admin)
    return queued


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


def labels_required(engine: Engine, name: str, *, min_labels: int) -> int:
    """Reviewed examples topic ``name`` needs before it is trained: ``min_labels``, or what
    the new-topic gate asked for after its last decision (more labels, never fewer)."""
    state = topics_db.select_topic_state(engine, name=name)
    asked = None if state is None else state.labels_required
    return max(min_labels, asked or 0)


def hopeless(state: topics_db.TopicState) -> bool:
    """Reviewers rejected every one of at least ``HOPELESS_AFTER`` suggestions: suggesting
    more of the same would waste their time."""
    return state.done >= HOPELESS_AFTER and state.rejected == state.done


def next_step(engine: Engine, name: str, *, labelled: int, min_labels: int) -> str:
    """What an onboarding topic waits for, in words (the page and the CLI show it): never
    a dead end; each case names a way forward."""
    state = topics_db.select_topic_state(engine, name=name)
    if state is None or state.status != "onboarding":
        return state.status if state else "no such topic"
    required = max(min_labels, state.labels_required or 0)
    short = required - labelled
    if short <= 0:
        return "ready: the next retraining trains it"
    text = f"needs {short} more labels"
    if state.pending:
        return f"{text} ({state.pending} suggestions waiting for review)"
    if hopeless(state):
        return (
            f"{text}; reviewers rejected all {state.done} suggestions, so no more are "
            "queued: add a candidate to it, or cancel it"
        )
    return f"{text}; more suggestions are queued at the next scheduler run"


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
        splitting = topics_db.select_topic_names(conn, statuses=("splitting",))
        pending.update({t: None for t in splitting})  # a split is a pending change too
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
        whole = topic_splits_db.select_split_from(conn, name=name)
        if whole is not None:  # one part alone would leave the split with no way forward
            raise TopicError(
                f"{name!r} is a part of the split of {whole!r}: a split is cancelled as a "
                f"whole (`newsflow topics cancel {whole}`)"
            )
        topics_db.cancel_topic(conn, name=name, admin=admin)
        return topics_db.withdraw_onboarding_reviews(conn, suggested_label=name)
