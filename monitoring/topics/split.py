"""A known topic split into parts (World into Politics and Conflict): an admin starts it, the
old topic's reviewed examples are queued for reviewers to relabel into the parts (the review
page offers the parts), and once every part has ``topic_min_labels`` reviewed labels (or what
the new-topic gate asked for), one retraining replaces the old class by the parts, through
the same gates as a new topic (each part's F1 interval, the other classes' macro-F1 check).
A split goes as a whole: a part is not cancelled or trained alone, the split is.

Rows: :mod:`pipeline.core.db.topic_splits`. Every change is one transaction under the topic
lock, so a refused request changes nothing.

Example:
    >>> start_split(engine, "World", ["Politics", "Conflict"], admin="ann",
    ...             champion_labels=["World", "Sports", "Business", "Sci/Tech"])  # doctest: +SKIP
    SplitStart(old='World', parts=['Politics', 'Conflict'], queued=120)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import Engine

from monitoring.topics import onboarding
from monitoring.topics.onboarding import TopicError
from pipeline.core.db import topic_splits as splits_db
from pipeline.core.db import topics as topics_db

SPLIT_ROUND = 11  # review_items.round of relabelling requests (onboarding's is 10)
MAX_PARTS = 8
_NAMED_STATUSES = ("onboarding", "active", "removing", "merging", "splitting", "split")


@dataclasses.dataclass(frozen=True)
class SplitStart:
    old: str
    parts: list[str]
    queued: int  # reviewed examples of the old topic queued for relabelling


@dataclasses.dataclass(frozen=True)
class PartNeed:
    """A part's reviewed labels against what it needs before the split trains."""

    name: str
    labelled: int
    required: int

    @property
    def short(self) -> int:
        return max(0, self.required - self.labelled)


@dataclasses.dataclass(frozen=True)
class SplitProgress:
    old: str
    parts: list[PartNeed]
    pending: int  # relabelling requests waiting for a reviewer

    @property
    def ready(self) -> bool:
        return len(self.parts) >= 2 and all(p.short == 0 for p in self.parts)

    def text(self) -> str:
        """Where the split stands, in words, with a way forward when it waits."""
        named = ", ".join(repr(p.name) for p in self.parts)
        head = f"split of {self.old!r} into {named}"
        if self.ready:
            return f"{head}: ready, the next retraining replaces {self.old!r} by its parts"
        needs = ", ".join(
            f"{p.name!r} needs {p.short} more ({p.labelled} of {p.required})"
            for p in self.parts
            if p.short
        )
        text = f"{head} waits for labels: {needs}"
        if self.pending:
            return f"{text}; {self.pending} relabelling requests waiting for review"
        return (
            f"{text}; no relabelling request is waiting: reviewers can give the parts on any "
            f"item, an admin can add candidates to a part (`newsflow topics add`), or cancel "
            f"the split (`newsflow topics cancel {self.old}`)"
        )


def check_parts(parts: Sequence[str], old: str) -> list[str]:
    """The parts' names stripped, in order, each once; TopicError unless at least two
    different names (case and width ignored) and at most ``MAX_PARTS``."""
    keyed: dict[str, str] = {}
    for p in parts:
        keyed.setdefault(onboarding.name_key(p.strip()), p.strip())
    names = list(keyed.values())
    if len(names) < 2:
        got = ", ".join(repr(n) for n in names) or "none"
        raise TopicError(
            f"a split of {old!r} needs at least two different parts (got {got}); to rename "
            "a topic, split it later or merge it"
        )
    if len(names) > MAX_PARTS:
        raise TopicError(f"a split has at most {MAX_PARTS} parts (got {len(names)})")
    return names


def start_split(
    engine: Engine,
    old: str,
    parts: Sequence[str],
    *,
    admin: str,
    champion_labels: Sequence[str],
) -> SplitStart:
    """Start splitting topic ``old`` of the champion into ``parts``: they become topics being
    onboarded (reviewers may give them on any item) and every article whose latest review
    says ``old`` is queued, first, for relabelling. TopicError, nothing changed, when ``old``
    is not a topic of the champion, a change of it is pending (or it is a merge's target),
    there are fewer than two different parts, or a part's name is refused or exists."""
    labels = list(champion_labels)
    if old not in labels:
        raise TopicError(
            f"{old!r} is not a topic of the champion ({', '.join(labels) or 'no champion'}); "
            "only a topic the model knows can be split"
        )
    names = check_parts(parts, old)
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        status = topics_db.lock_topic_status(conn, name=old)
        if status in ("splitting", "removing", "merging"):
            raise TopicError(
                f"a change of {old!r} is pending already ({status}); cancel it first "
                f"(`newsflow topics cancel {old}`)"
            )
        into = [k for k, v in onboarding.pending_changes(conn).items() if v == old]
        if into:
            raise TopicError(f"{', '.join(map(repr, into))} is being merged into {old!r}")
        existing = [*labels, *topics_db.select_topic_names(conn, statuses=_NAMED_STATUSES)]
        cleaned: list[str] = []
        for n in names:
            cleaned.append(onboarding.check_name(n, [*existing, *cleaned]))
        if splits_db.insert_split(conn, old=old, parts=cleaned, admin=admin) != len(cleaned):
            raise TopicError(  # another row holds the name (removed or merged earlier)
                f"a part's name ({', '.join(map(repr, cleaned))}) was used by an earlier "
                "topic that was removed or merged; choose another name"
            )
        queued = splits_db.queue_relabel_reviews(conn, old=old, review_round=SPLIT_ROUND)
    return SplitStart(old, cleaned, queued)


def split_progress(engine: Engine, *, min_labels: int) -> list[SplitProgress]:
    """Every split waiting for its retraining, with each part's labels against what it needs
    (``min_labels``, or more after the new-topic gate asked for more)."""
    return [
        SplitProgress(
            old=s.old,
            parts=[
                PartNeed(
                    name=p,
                    labelled=onboarding.labelled_count(engine, p),
                    required=onboarding.labels_required(engine, p, min_labels=min_labels),
                )
                for p in s.parts
            ],
            pending=s.pending,
        )
        for s in splits_db.select_splits(engine)
    ]


def split_parts(engine: Engine) -> dict[str, str]:
    """Part → the old topic, of every split waiting for its retraining."""
    return {p: s.old for s in splits_db.select_splits(engine) for p in s.parts}


def cancel(engine: Engine, name: str, *, admin: str) -> str:
    """Call off what is pending for topic ``name``, in words: a split (its parts cancelled,
    its relabelling requests and the parts' suggestions withdrawn; labels given stay), a
    removal or a merge (the topic stays as it is), or an onboarding
    (:func:`onboarding.cancel`). TopicError, nothing changed, for a part of a split (the
    split goes as a whole), an unknown topic, or one with nothing to cancel."""
    with engine.begin() as conn:
        topics_db.lock_topic_changes(conn)
        status = topics_db.lock_topic_status(conn, name=name)
        if status is None:
            raise TopicError(f"there is no topic {name!r} with anything to cancel")
        whole = splits_db.select_split_from(conn, name=name)
        if status == "onboarding" and whole is not None:
            raise TopicError(
                f"{name!r} is a part of the split of {whole!r}: a split is cancelled as a "
                f"whole (`newsflow topics cancel {whole}`)"
            )
        if status in ("splitting", "removing", "merging"):
            parts = splits_db.select_parts(conn, old=name)
            withdrawn = splits_db.withdraw_relabel_reviews(conn, old=name) + sum(
                topics_db.withdraw_onboarding_reviews(conn, suggested_label=p) for p in parts
            )
            splits_db.undo_change(conn, name=name, admin=admin)
            what = {"splitting": "split", "removing": "removal", "merging": "merge"}[status]
            return (
                f"{what} of {name!r} cancelled ({', '.join(map(repr, parts)) or 'no parts'} "
                f"dropped); {withdrawn} pending reviews withdrawn"
                if parts
                else f"{what} of {name!r} cancelled; it stays as it is"
            )
        if status != "onboarding":
            raise TopicError(f"{name!r} has nothing to cancel (it is {status})")
    withdrawn = onboarding.cancel(engine, name, admin=admin)
    return f"topic {name!r} cancelled; {withdrawn} pending reviews withdrawn"
