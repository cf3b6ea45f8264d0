"""Candidates and topics in PostgreSQL: store a discovery, name or dismiss a candidate (its
members become review items with the new name suggested), count the labels a new topic has.

Every change is one transaction that locks the candidate row first, so two admins acting on
the same candidate get one success and one clear refusal, and nothing is done half-way.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from monitoring.topics.discovery import Candidate, PoolItem
from monitoring.web.review_queue import NONE_LABEL
from pipeline.core.db.access import Db, connected

ONBOARDING_ROUND = 10  # review_items.round of onboarding reviews (1 = sampled, 2 = second)
MAX_NAME = 64


class TopicError(ValueError):
    """A request about topics that cannot be done; nothing was changed."""


class CandidateGone(TopicError):
    """The candidate is no longer open (a newer discovery replaced it, or it was decided)."""


@dataclasses.dataclass(frozen=True)
class StoredCandidate:
    id: int
    rank: int
    status: str
    size: int
    separation: float
    cohesion: float
    nearest_topic: str
    none_of_these: int
    terms: list[str]
    examples: list[str]
    members: list[str]
    name: str | None
    model_version: str | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


TOPICS_LOCK = 0x746F7063  # "topc": one change of topics or candidates at a time


def _serialise(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TOPICS_LOCK})


def pool(engine: Engine, *, model_version: str | None, low_confidence: int) -> list[PoolItem]:
    """What the model could not place: articles reviewers marked "none of these" (latest
    review), plus the ``low_confidence`` least confident predictions of ``model_version``."""
    with engine.connect() as conn:
        marked = conn.execute(
            text(
                "SELECT DISTINCT ON (a.id) a.id, a.title, a.body FROM review_items r "
                "JOIN articles a ON a.id = r.article_id WHERE r.status = 'done' "
                "AND r.label = :none ORDER BY a.id, r.labelled_at DESC"
            ),
            {"none": NONE_LABEL},
        ).all()
        low = conn.execute(
            text(
                "SELECT a.id, a.title, a.body FROM predictions p JOIN articles a "
                "ON a.id = p.article_id WHERE (CAST(:v AS text) IS NULL OR p.model_version = :v) "
                "ORDER BY p.confidence ASC, p.id LIMIT :n"
            ),
            {"v": model_version, "n": low_confidence},
        ).all()
    out = {
        r.id: PoolItem(r.id, r.title, f"{r.title} {r.body}"[:2000], "none_of_these") for r in marked
    }
    for r in low:
        out.setdefault(
            r.id, PoolItem(r.id, r.title, f"{r.title} {r.body}"[:2000], "low_confidence")
        )
    return list(out.values())


def known_samples(
    engine: Engine, *, model_version: str | None, per_topic: int = 48, min_confidence: float = 0.9
) -> dict[str, list[str]]:
    """Texts the model placed confidently, per topic (the known topics' centroids)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT topic, text FROM (SELECT p.topic, a.title || ' ' || a.body AS text, "
                "row_number() OVER (PARTITION BY p.topic ORDER BY p.confidence DESC, p.id) AS k "
                "FROM predictions p JOIN articles a ON a.id = p.article_id "
                "WHERE (CAST(:v AS text) IS NULL OR p.model_version = :v) "
                "AND p.confidence >= :c) s "
                "WHERE k <= :n"
            ),
            {"v": model_version, "c": min_confidence, "n": per_topic},
        ).all()
    out: dict[str, list[str]] = {}
    for topic, body in rows:
        out.setdefault(str(topic), []).append(str(body)[:2000])
    return out


def save_discovery(
    engine: Engine, found: Sequence[Candidate], *, model_version: str | None
) -> list[int]:
    """Store a discovery: earlier open candidates become ``superseded``; returns new ids."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE topic_candidates SET status = 'superseded' WHERE status = 'open'")
        )
        ids = []
        for rank, c in enumerate(found, start=1):
            ids.append(
                int(
                    conn.execute(
                        text(
                            "INSERT INTO topic_candidates (model_version, rank, size, separation, "
                            "cohesion, nearest_topic, none_of_these, terms, examples, members) "
                            "VALUES (:v, :r, :s, :sep, :coh, :near, :none, CAST(:t AS jsonb), "
                            "CAST(:e AS jsonb), CAST(:m AS jsonb)) RETURNING id"
                        ),
                        {
                            "v": model_version,
                            "r": rank,
                            "s": c.size,
                            "sep": c.separation,
                            "coh": c.cohesion,
                            "near": c.nearest_topic,
                            "none": c.none_of_these,
                            "t": json.dumps(c.terms),
                            "e": json.dumps(c.examples),
                            "m": json.dumps(c.members),
                        },
                    ).scalar_one()
                )
            )
    return ids


def candidates(engine: Engine, *, status: str | None = "open") -> list[StoredCandidate]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT * FROM topic_candidates WHERE (CAST(:s AS text) IS NULL OR status = :s) "
                "ORDER BY discovered_at DESC, rank LIMIT 200"
            ),
            {"s": status},
        ).mappings()
        return [_stored(r) for r in rows]


def _stored(r: Any) -> StoredCandidate:
    return StoredCandidate(
        id=int(r["id"]),
        rank=int(r["rank"]),
        status=str(r["status"]),
        size=int(r["size"]),
        separation=float(r["separation"]),
        cohesion=float(r["cohesion"]),
        nearest_topic=str(r["nearest_topic"]),
        none_of_these=int(r["none_of_these"]),
        terms=list(r["terms"]),
        examples=list(r["examples"]),
        members=list(r["members"]),
        name=r["name"],
        model_version=r["model_version"],
    )


def _lock_open(conn: Connection, candidate_id: int) -> StoredCandidate:
    row = (
        conn.execute(
            text("SELECT * FROM topic_candidates WHERE id = :i FOR UPDATE"), {"i": candidate_id}
        )
        .mappings()
        .first()
    )
    if row is None:
        raise CandidateGone(f"candidate {candidate_id} does not exist")
    found = _stored(row)
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
    rows = conn.execute(
        text("SELECT name FROM topics WHERE status IN ('onboarding', 'active') ORDER BY created_at")
    ).scalars()
    return [str(n) for n in rows if n not in model_labels]


def accept(
    engine: Engine, candidate_id: int, name: str, *, admin: str, known_labels: Sequence[str]
) -> int:
    """Name an open candidate as a new topic; its members' latest predictions become review
    items (first in the queue) with ``name`` suggested. Returns how many were queued."""
    try:
        with engine.begin() as conn:
            _serialise(conn)
            found = _lock_open(conn, candidate_id)
            existing = [*known_labels, *topic_names(conn)]
            cleaned = check_name(name, existing)
            conn.execute(
                text(
                    "INSERT INTO topics (name, status, candidate_id, created_by) "
                    "VALUES (:n, 'onboarding', :c, :u)"
                ),
                {"n": cleaned, "c": candidate_id, "u": admin},
            )
            queued = conn.execute(
                text(
                    "INSERT INTO review_items (prediction_id, article_id, reason, priority, "
                    "round, status, suggested_label) "
                    "SELECT DISTINCT ON (p.article_id) p.id, p.article_id, 'onboarding', -1, "
                    ":round, 'pending', :n FROM predictions p "
                    "WHERE p.article_id = ANY(:members) ORDER BY p.article_id, p.id DESC "
                    "ON CONFLICT ON CONSTRAINT uq_review_prediction_round DO NOTHING"
                ),
                {"n": cleaned, "members": found.members, "round": ONBOARDING_ROUND},
            ).rowcount
            conn.execute(
                text(
                    "UPDATE topic_candidates SET status = 'accepted', name = :n, "
                    "decided_by = :u, decided_at = now() WHERE id = :i"
                ),
                {"n": cleaned, "u": admin, "i": candidate_id},
            )
            return int(queued)
    except IntegrityError as exc:  # another admin created the same name at the same moment
        raise TopicError(f"topic {name.strip()!r} exists already") from exc


def dismiss(engine: Engine, candidate_id: int, *, admin: str) -> None:
    with engine.begin() as conn:
        _serialise(conn)
        _lock_open(conn, candidate_id)
        conn.execute(
            text(
                "UPDATE topic_candidates SET status = 'dismissed', decided_by = :u, "
                "decided_at = now() WHERE id = :i"
            ),
            {"u": admin, "i": candidate_id},
        )


def labelled_count(engine: Engine, name: str) -> int:
    """Articles whose latest human review says ``name``."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT DISTINCT ON (article_id) label "
                    "FROM review_items WHERE status = 'done' "
                    "ORDER BY article_id, labelled_at DESC) s WHERE label = :n"
                ),
                {"n": name},
            ).scalar_one()
        )


def onboarding_topics(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            str(n)
            for n in conn.execute(
                text("SELECT name FROM topics WHERE status = 'onboarding' ORDER BY created_at")
            ).scalars()
        ]


def mark_active(engine: Engine, names: Sequence[str], *, version: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE topics SET status = 'active', retrain_version = :v "
                "WHERE name = ANY(:n) AND status = 'onboarding'"
            ),
            {"v": version, "n": list(names)},
        )


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
        _serialise(conn)
        pending = pending_changes(conn)
        targets = {t for t in pending.values() if t is not None}
        busy = name if name in pending or name in targets else into if into in pending else None
        if busy is not None:
            raise TopicError(f"a change of {busy!r} is pending already")
        left = [t for t in labels if t not in pending and t != name]
        if len(left) < 2:
            raise TopicError("a model needs at least two topics")
        status = "merging" if into is not None else "removing"
        conn.execute(
            text(
                "INSERT INTO topics (name, status, merge_into, created_by) "
                "VALUES (:n, :s, :m, :u) ON CONFLICT (name) DO UPDATE "
                "SET status = :s, merge_into = :m, created_by = :u"
            ),
            {"n": name, "s": status, "m": into, "u": admin},
        )


def pending_changes(db: Db) -> dict[str, str | None]:
    """Topics to remove (→ None) or merge (→ target) at the next retraining."""
    with connected(db) as conn:
        rows = conn.execute(
            text("SELECT name, merge_into FROM topics WHERE status IN ('removing', 'merging')")
        ).all()
    return {str(n): (str(m) if m is not None else None) for n, m in rows}


def mark_retired(engine: Engine, names: Sequence[str], *, version: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE topics SET status = CASE status WHEN 'merging' THEN 'merged' "
                "ELSE 'removed' END, retrain_version = :v "
                "WHERE name = ANY(:n) AND status IN ('removing', 'merging')"
            ),
            {"v": version, "n": list(names)},
        )


def cancel(engine: Engine, name: str, *, admin: str) -> int:
    """Stop onboarding topic ``name``: it is no longer offered to reviewers and its pending
    onboarding reviews are withdrawn (labels already given stay). Returns how many."""
    with engine.begin() as conn:
        _serialise(conn)
        found = conn.execute(
            text("SELECT status FROM topics WHERE name = :n FOR UPDATE"), {"n": name}
        ).scalar()
        if found != "onboarding":
            raise TopicError(
                f"{name!r} is not a topic being onboarded" + (f" (it is {found})" if found else "")
            )
        conn.execute(
            text("UPDATE topics SET status = 'cancelled', created_by = :u WHERE name = :n"),
            {"n": name, "u": admin},
        )
        return int(
            conn.execute(
                text(
                    "UPDATE review_items SET status = 'withdrawn' WHERE status = 'pending' "
                    "AND reason = 'onboarding' AND suggested_label = :n"
                ),
                {"n": name},
            ).rowcount
        )
