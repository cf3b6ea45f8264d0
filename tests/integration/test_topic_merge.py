"""One topic from several candidates, and what a topic being onboarded needs next, against a
real, freshly migrated Postgres: candidates named together (their members counted
together), added to a topic, the refusals that change nothing, the gate's request for more
labels, suggestions picked near the topic's examples, and a reviewer who rejects every
suggestion."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import Engine, text

from monitoring.topics import label_requests, onboarding, progress
from monitoring.topics.discovery import Candidate
from pipeline.core.db import topics as topics_db
from pipeline.core.db.engine import make_engine
from pipeline.core.db.events import record_model_event
from pipeline.core.settings import Settings
from tests.integration.test_db_topics import _articles, _prediction

pytestmark = pytest.mark.integration
KNOWN = ["World", "Sports", "Business"]


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _discovery(engine: Engine, groups: Sequence[Sequence[str]]) -> list[int]:
    """One discovery; candidates 1 and 2 (by rank) are marked near each other."""
    near = {0: [(2, 0.81)], 1: [(1, 0.81)]}
    return onboarding.save_discovery(
        engine,
        [
            Candidate(list(g), len(g), 0.5, "World", 0.7, 0, ["t"], ["e"], near.get(i, []))
            for i, g in enumerate(groups)
        ],
        model_version="v1",
    )


def _state(engine: Engine) -> tuple[list[tuple[str, ...]], ...]:
    with engine.connect() as conn:
        return tuple(
            [tuple(map(str, r)) for r in conn.execute(text(q))]
            for q in (
                "SELECT name, status, coalesce(merge_into, '') FROM topics ORDER BY name",
                "SELECT id, status, coalesce(name, '') FROM topic_candidates ORDER BY id",
                "SELECT article_id, status, coalesce(suggested_label, '') FROM review_items "
                "ORDER BY id",
            )
        )


def _answer(engine: Engine, topic: str, label: str) -> int:
    """Reviewers answer every pending suggestion of ``topic`` with ``label``."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "UPDATE review_items SET status = 'done', label = :l, labelled_at = now(), "
                    "reviewer = 'rev' WHERE status = 'pending' AND suggested_label = :t"
                ),
                {"l": label, "t": topic},
            ).rowcount
        )


def test_candidates_named_as_one_topic_and_the_refusals(engine: Engine) -> None:
    ids = [f"a-{i}" for i in range(1, 8)] + ["b-1", "b-2"]
    _articles(engine, ids)
    for a in ids:
        _prediction(engine, a)
    c1, c2, c3, c4 = _discovery(engine, [["a-1", "a-2"], ["a-3", "a-4"], ["a-5"], ["a-6"]])
    stored = {c.id: c for c in onboarding.candidates(engine)}
    assert stored[c1].near == [(2, 0.81)] and stored[c2].near == [(1, 0.81)]
    assert stored[c3].near == [] and stored[c1].terms == ["t"]
    assert len({c.discovered_at for c in stored.values()}) == 1  # one discovery

    # two near candidates named as one topic: members queued and counted together
    assert (
        onboarding.accept_many(engine, [c1, c2, c1], "Arts", admin="ann", known_labels=KNOWN) == 4
    )
    # a third added later (the name matched whatever its case)
    assert onboarding.add_to_topic(engine, [c3], "arts", admin="bob") == 1
    (row,) = topics_db.select_topics(engine)
    assert (row.name, row.status, row.candidates, row.members, row.pending) == (
        "Arts",
        "onboarding",
        [c1, c2, c3],
        5,
        5,
    )
    assert {c.id: c.name for c in topics_db.select_candidates(engine, status="accepted")} == {
        c1: "Arts",
        c2: "Arts",
        c3: "Arts",
    }

    # a newer discovery supersedes c4; a topic is being removed; another was cancelled
    (d1,) = _discovery(engine, [["b-1", "b-2"]])
    onboarding.retire(engine, "World", into=None, admin="ann", champion_labels=KNOWN)
    onboarding.accept(engine, d1, "Gone", admin="ann", known_labels=KNOWN)
    onboarding.cancel(engine, "Gone", admin="ann")
    (d2,) = _discovery(engine, [["a-7"]])
    before = _state(engine)
    named: list[tuple[list[int], str, str]] = [  # (candidates, name, why refused)
        ([d2, c4], "Mixed", "different discoveries"),
        ([c4], "Old", "a newer discovery replaced it"),
        ([d2, 10**9], "X", "does not exist"),
        ([d2, c1], "X", "different discoveries"),
        ([], "X", "at least one candidate"),
        ([d2], "ARTS", "exists already"),
    ]
    for cands, name, why in named:
        with pytest.raises(onboarding.TopicError, match=why):
            onboarding.accept_many(engine, cands, name, admin="a", known_labels=KNOWN)
    added: list[tuple[list[int], str, str]] = [  # (candidates, topic, why refused)
        ([d2], "World", "being removed at the next retraining"),
        ([d2], "Gone", "was cancelled"),
        ([d2], "Nope", "there is no topic"),
        ([c4], "Arts", "newer discovery"),
        ([c1], "Arts", "accepted already"),
    ]
    for cands, topic, why in added:
        with pytest.raises(onboarding.TopicError, match=why):
            onboarding.add_to_topic(engine, cands, topic, admin="a")
    assert _state(engine) == before  # nothing half-done


def _embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """'art' texts point one way, the rest another; a digit tilts each a little."""
    rows = []
    for t in texts:
        tilt = sum(map(ord, t)) % 7 / 20
        v = np.array([1.0, tilt] if "art" in t else [tilt, 1.0], dtype=np.float32)
        rows.append(v / np.linalg.norm(v))
    return np.stack(rows)


def test_what_an_onboarding_topic_needs_next(
    engine: Engine, db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = ["art-1", "art-2", "art-3"]
    live = ["art-live-1", "art-live-2", "art-live-3", "news-1", "news-2", "news-3"]
    _articles(engine, [*members, *live])
    for a in [*members, *live]:
        _prediction(engine, a)
    (cid,) = _discovery(engine, [members])
    onboarding.accept(engine, cid, "Arts", admin="ann", known_labels=KNOWN)
    assert onboarding.next_step(engine, "Arts", labelled=0, min_labels=4) == (
        "needs 4 more labels (3 suggestions waiting for review)"
    )

    # a reviewer rejects every suggestion: never stuck, and told what to do once it is clear
    assert _answer(engine, "Arts", "World") == 3
    assert "more suggestions are queued" in onboarding.next_step(
        engine, "Arts", labelled=0, min_labels=4
    )
    monkeypatch.setattr(onboarding, "HOPELESS_AFTER", 3)
    step = onboarding.next_step(engine, "Arts", labelled=0, min_labels=4)
    assert "rejected all 3 suggestions" in step and "cancel it" in step
    assert label_requests.top_up(db, engine, embed=_embed) == {}  # no more of the same
    monkeypatch.undo()

    # suggestions near the named members (no label yet), within the topic's share
    small = db.model_copy(update={"review_budget_per_hour": 4, "topic_label_request_share": 0.5})
    assert label_requests.topic_cap(small) == 2
    assert label_requests.request_labels(small, engine, "Arts", want=5, embed=_embed) == 2
    with engine.connect() as conn:
        picked = (
            conn.execute(
                text("SELECT article_id FROM review_items WHERE status = 'pending' ORDER BY id")
            )
            .scalars()
            .all()
        )
    assert len(picked) == 2 and all(a.startswith("art-live") for a in picked)
    assert label_requests.request_labels(small, engine, "Arts", want=5, embed=_embed) == 0  # full
    _answer(engine, "Arts", "Arts")

    # the gate asked for more labels: the topic needs them before it trains again
    record_model_event(
        engine=engine,
        kind="needs_labels",
        model_name="m",
        version="v9",
        metrics={
            "topic_gate": {
                "Arts": {
                    "decision": "needs_labels",
                    "threshold": 0.8,
                    "positives": 14,
                    "f1": {"estimate": 0.667, "low": 0.353, "high": 0.833},
                    "labels_required": 9,
                }
            }
        },
    )
    assert onboarding.labels_required(engine, "Arts", min_labels=4) == 9
    (row,) = progress.topic_rows(engine, min_labels=4)
    assert (row.labelled, row.required, row.rejected) == (2, 9, 3)
    assert (
        row.next_step
        == "needs 7 more labels; more suggestions are queued at the next scheduler run"
    )
    assert row.gate_text == "needs_labels: F1 0.667 [0.353, 0.833] vs 0.8 on 14 held out"
    assert not row.ready(4)
    # the rest of the unreviewed articles (7 short, within the default share)
    assert label_requests.top_up(db, engine, embed=_embed) == {"Arts": 4}
