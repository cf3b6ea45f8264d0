"""A known topic split into parts and several topics onboarding at once, against a real,
freshly migrated Postgres (no training; the retraining itself: test_topic_split_retrain.py):
the old topic's reviewed examples queued for relabelling, the review page offering the
parts, the refusals that change nothing, a split short of labels saying how many more,
the next retraining's plan (every ready topic, each on its own labels), a split and a
removal cancelled and started again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from monitoring.topics import onboarding, progress, split
from monitoring.topics.plan import RetrainPlan, build_plan
from monitoring.topics.split import SPLIT_ROUND
from monitoring.web import review_queue
from pipeline.core.db import topic_splits
from pipeline.core.db.engine import make_engine
from pipeline.core.db.events import record_model_event
from pipeline.core.settings import Settings
from tests.integration import test_web_hardening as hardening
from tests.integration.test_db_topics import _articles, _prediction, _review
from tests.integration.test_topic_merge import _discovery, _state

pytestmark = pytest.mark.integration
KNOWN = ["World", "Sports", "Business", "Sci/Tech"]
web = hardening.web  # seeded review items (AG News labels in model_labels), a reviewer


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    eng = make_engine(db)
    yield eng
    eng.dispose()


def _reviewed(engine: Engine, label: str, ids: list[str]) -> None:
    _articles(engine, ids)
    for a in ids:
        when = datetime.now(UTC) - timedelta(hours=1)
        _review(engine, _prediction(engine, a, topic=label), a, label=label, labelled_at=when)


def _relabel(engine: Engine, old: str, labels: dict[str, str]) -> None:
    """Reviewers answer the relabelling requests of ``old``'s split (article → label)."""
    with engine.begin() as conn:
        for article, label in labels.items():
            conn.execute(
                text(
                    "UPDATE review_items SET status = 'done', label = :l, labelled_at = now(), "
                    "reviewer = 'rev' WHERE status = 'pending' AND reason = 'split' "
                    "AND suggested_label = :o AND article_id = :a"
                ),
                {"l": label, "o": old, "a": article},
            )


def _start(engine: Engine, old: str, parts: list[str]) -> split.SplitStart:
    return split.start_split(engine, old, parts, admin="ann", champion_labels=KNOWN)


def test_split_relabel_refusals_and_plan(engine: Engine) -> None:
    world = [f"w-{i}" for i in range(6)]
    _reviewed(engine, "World", world)
    _reviewed(engine, "Sports", ["s-0"])
    started = _start(engine, "World", [" Politics", "Conflict"])
    assert (started.parts, started.queued) == (["Politics", "Conflict"], 6)
    assert topic_splits.select_splits(engine)[0].parts == ["Politics", "Conflict"]
    with engine.connect() as conn:
        asked = conn.execute(
            text(
                "SELECT DISTINCT reason, round, priority, suggested_label FROM review_items "
                "WHERE status = 'pending'"
            )
        ).all()
    assert [tuple(r) for r in asked] == [("split", SPLIT_ROUND, -1, "World")]

    # the review page offers the parts first, not the topic being split
    task = review_queue.claim_next(engine, "rev", claim_minutes=5)
    assert task is not None and task.reason == "split" and task.split_of == "World"
    assert task.keyed[:2] == ["Politics", "Conflict"] and "World" not in task.keyed + task.others
    assert task.suggested is None
    review_queue.submit_label(engine, "rev", task.item_id, "Politics")

    # refusals: nothing changes
    (arts,) = _discovery(engine, [["w-0"]])
    onboarding.accept(engine, arts, "Arts", admin="a", known_labels=KNOWN)
    onboarding.retire(engine, "Business", into=None, admin="ann", champion_labels=KNOWN)
    before = _state(engine)
    refused: list[tuple[str, list[str], str]] = [
        ("Nope", ["A", "B"], "not a topic of the champion"),
        ("World", ["A", "B"], "pending already"),
        ("Business", ["A", "B"], "pending already"),
        ("Sports", ["A"], "at least two different parts"),
        ("Sports", ["A", "a"], "at least two different parts"),
        ("Sports", ["A", "sports"], "exists already"),
        ("Sports", ["A", "ARTS"], "exists already"),
        ("Sports", ["A", "Politics"], "exists already"),
        ("Sports", ["A", "__none__"], "reserved"),
        ("Sports", ["A", ""], "cannot be empty"),
    ]
    for old, parts, why in refused:
        with pytest.raises(onboarding.TopicError, match=why):
            _start(engine, old, parts)
    with pytest.raises(onboarding.TopicError, match="pending already"):
        onboarding.retire(engine, "World", into=None, admin="a", champion_labels=KNOWN)
    with pytest.raises(onboarding.TopicError, match="pending already"):
        onboarding.retire(engine, "Sports", into="World", admin="a", champion_labels=KNOWN)
    (fresh,) = _discovery(engine, [["s-0"]])
    with pytest.raises(onboarding.TopicError, match="being split"):
        onboarding.add_to_topic(engine, [fresh], "World", admin="a")
    for cancel in (split.cancel, onboarding.cancel):
        with pytest.raises(onboarding.TopicError, match="cancelled as a whole"):
            cancel(engine, "Conflict", admin="a")
    with pytest.raises(onboarding.TopicError, match="no topic 'Nope'"):
        split.cancel(engine, "Nope", admin="a")
    assert _state(engine)[0] == before[0]  # topics as they were (a discovery was added)

    # short of labels: the split waits and says how many more each part needs
    (waiting,) = split.split_progress(engine, min_labels=3)
    assert not waiting.ready and "'Politics' needs 2 more (1 of 3)" in waiting.text()
    assert "'Conflict' needs 3 more (0 of 3)" in waiting.text()
    plan = build_plan(engine, min_labels=3)
    assert plan == RetrainPlan((), {"Business": None}, {})  # only the removal
    rows = {r.name: r for r in progress.topic_rows(engine, min_labels=3)}
    assert rows["World"].status == "splitting" and "needs 2 more" in rows["Politics"].next_step

    _relabel(
        engine,
        "World",
        {
            "w-1": "Politics",
            "w-2": "Politics",
            "w-3": "Conflict",
            "w-4": "Conflict",
            "w-5": "Sports",
        },
    )
    assert build_plan(engine, min_labels=3) == RetrainPlan((), {"Business": None}, {})
    _reviewed(engine, "Conflict", ["c-0"])  # given in the usual queue
    plan = build_plan(engine, min_labels=3)
    assert plan == RetrainPlan(
        ("Politics", "Conflict"),
        {"Business": None, "World": None},
        {"World": ("Politics", "Conflict")},
    )

    # the gate asked for more labels for one part: the split waits as a whole
    record_model_event(
        engine=engine,
        kind="needs_labels",
        model_name="m",
        version="v2",
        previous_version="v1",
        reason="r",
        metrics={
            "topic_gate": {
                "Politics": {"decision": "promote", "labels_required": 3},
                "Conflict": {"decision": "needs_labels", "labels_required": 5},
            }
        },
    )
    assert build_plan(engine, min_labels=3).splits == {}
    assert (
        "'Conflict' needs 2 more (3 of 5)" in split.split_progress(engine, min_labels=3)[0].text()
    )

    # after the retraining that replaced it
    onboarding.mark_active(engine, ["Politics", "Conflict"], version="v3")
    onboarding.mark_retired(engine, ["World"], version="v3")
    with engine.connect() as conn:
        got: dict[str, str] = dict(conn.execute(text("SELECT name, status FROM topics")).all())
    assert got["World"] == "split" and got["Politics"] == got["Conflict"] == "active"
    assert topic_splits.select_splits(engine) == []


def test_several_topics_each_on_its_labels(engine: Engine) -> None:
    _articles(engine, [f"a-{i}" for i in range(4)])
    for i in range(4):
        _prediction(engine, f"a-{i}")
    c1, c2 = _discovery(engine, [["a-0", "a-1"], ["a-2", "a-3"]])
    onboarding.accept(engine, c1, "Arts", admin="a", known_labels=KNOWN)
    onboarding.accept(engine, c2, "Health", admin="a", known_labels=KNOWN)
    assert build_plan(engine, min_labels=2).empty
    _reviewed(engine, "Arts", ["x-0", "x-1"])
    assert build_plan(engine, min_labels=2).new_topics == ("Arts",)  # Health keeps collecting
    _reviewed(engine, "Health", ["y-0", "y-1"])
    assert build_plan(engine, min_labels=2).new_topics == ("Arts", "Health")  # one retraining
    record_model_event(
        engine=engine,
        kind="needs_labels",
        model_name="m",
        version="v2",
        previous_version="v1",
        reason="r",
        metrics={
            "topic_gate": {
                "Arts": {"decision": "promote", "labels_required": 2},
                "Health": {"decision": "needs_labels", "labels_required": 9},
            }
        },
    )
    assert build_plan(engine, min_labels=2).new_topics == ("Arts",)  # not held back


def test_cancel_a_split_and_a_removal_then_start_again(engine: Engine) -> None:
    _reviewed(engine, "Sports", ["s-0", "s-1"])
    assert _start(engine, "Sports", ["Football", "Tennis"]).queued == 2
    said = split.cancel(engine, "Sports", admin="bob")
    assert "split of 'Sports' cancelled" in said and "2 pending reviews withdrawn" in said
    with engine.connect() as conn:
        rows: dict[str, str] = dict(conn.execute(text("SELECT name, status FROM topics")).all())
        pending = conn.execute(
            text("SELECT count(*) FROM review_items WHERE status = 'pending'")
        ).scalar_one()
    assert rows == {"Football": "cancelled", "Tennis": "cancelled"} and pending == 0
    assert build_plan(engine, min_labels=2).empty
    # the same names again: the cancelled rows are taken over, the requests asked again
    assert _start(engine, "Sports", ["football", "Tennis"]).queued == 2
    assert topic_splits.select_splits(engine)[0].parts == ["football", "Tennis"]

    onboarding.retire(engine, "Business", into="World", admin="ann", champion_labels=KNOWN)
    assert split.cancel(engine, "Business", admin="ann").startswith("merge of 'Business'")
    assert onboarding.pending_changes(engine) == {}
    onboarding.retire(engine, "World", into=None, admin="a", champion_labels=KNOWN)
    onboarding.mark_retired(engine, ["World"], version="v2")
    with pytest.raises(onboarding.TopicError, match="nothing to cancel"):
        split.cancel(engine, "World", admin="a")  # removed already


def test_review_page_offers_the_parts(web: hardening.Web) -> None:
    with web.engine.begin() as conn:  # a seeded article was reviewed as World an hour ago
        conn.execute(
            text(
                "UPDATE review_items SET status = 'done', label = 'World', reviewer = 'x', "
                "labelled_at = now() - interval '1 hour' "
                "WHERE id = (SELECT min(id) FROM review_items)"
            )
        )
    split.start_split(
        web.engine, "World", ["Politics", "Conflict"], admin="ann", champion_labels=KNOWN
    )
    with hardening._signed_in(web, hardening.REVIEWER) as http:
        page = http.get("/review").text
    assert 'id="split-of"' in page and "being split into Politics, Conflict" in page
    keys = re.findall(r"<kbd>(\d)</kbd> ([^<]+)</button>", page)
    assert keys[:2] == [("1", "Politics"), ("2", "Conflict")]
    assert "World" not in [label for _, label in keys]


def test_a_topic_that_needs_labels_does_not_hold_back_the_other(
    engine: Engine, db: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """retrain_if_ready's second run without the undecided topic (the training stands in:
    its gate decisions are given; test_topic_split_retrain.py trains for real)."""
    from monitoring.topics import service
    from retraining.expand import ExpandOutcome

    _articles(engine, ["a-0", "a-1"])
    for a in ("a-0", "a-1"):
        _prediction(engine, a)
    c1, c2 = _discovery(engine, [["a-0"], ["a-1"]])
    onboarding.accept(engine, c1, "Arts", admin="a", known_labels=KNOWN)
    onboarding.accept(engine, c2, "Health", admin="a", known_labels=KNOWN)
    _reviewed(engine, "Arts", [f"x-{i}" for i in range(4)])
    _reviewed(engine, "Health", [f"y-{i}" for i in range(4)])
    plans: list[RetrainPlan] = []

    def gate(topic: str, decision: str) -> dict[str, object]:
        return {"topic": topic, "decision": decision}

    def trained(settings: Settings, eng: Engine, plan: RetrainPlan, **_: object) -> ExpandOutcome:
        plans.append(plan)
        if len(plans) == 1:
            gates = [gate("Arts", "promote"), gate("Health", "needs_labels")]
            return ExpandOutcome("needs_labels", "Health straddles", "v2", {}, {}, gates)
        return ExpandOutcome("promoted", "ok", "v3", {}, {}, [gate("Arts", "promote")])

    monkeypatch.setattr(service, "_retrain_plan", trained)
    monkeypatch.setattr("monitoring.topics.label_requests.top_up", lambda *a, **k: {})
    outcome = service.retrain_if_ready(db.model_copy(update={"topic_min_labels": 4}), engine)
    assert [p.new_topics for p in plans] == [("Arts", "Health"), ("Arts",)]
    assert outcome is not None and outcome.status == "promoted" and outcome.version == "v3"
    assert [g["topic"] for g in outcome.gate] == ["Health", "Arts"]
    assert outcome.reason.startswith("first without Health (Health straddles); then: ok")
    with engine.connect() as conn:
        got: dict[str, str] = dict(conn.execute(text("SELECT name, status FROM topics")).all())
    assert got == {"Arts": "active", "Health": "onboarding"}


def test_split_form_on_the_topics_page(web: hardening.Web) -> None:
    from tests.integration.test_web_topics import _token

    with hardening._signed_in(web, hardening.REVIEWER) as http:
        assert 'id="split-form"' not in http.get("/topics").text
    with hardening._signed_in(web, hardening.ADMIN) as http:
        assert 'id="split-form"' in http.get("/topics").text
        r = http.post(
            "/topics/split",
            data={
                "topic": "World",
                "part": ["Politics", " politics", ""],
                "csrf_token": _token(http),
            },
        )
    assert r.status_code == 422 and "needs at least two different parts" in r.text
    with web.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM topics")).scalar_one() == 0
