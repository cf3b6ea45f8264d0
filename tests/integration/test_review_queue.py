"""Review queue, accounts and Label Studio interchange against real Postgres."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import text

from monitoring.web import labelstudio, review_queue
from monitoring.web.seed import DEFAULT_LABELS, seed_review_items
from monitoring.web.users import (
    UserError,
    add_user,
    authenticate,
    end_session,
    session_user,
    start_session,
)
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(db: Settings):  # type: ignore[no-untyped-def]
    eng = make_engine(db, pool_size=10)
    yield eng
    eng.dispose()


def test_concurrent_reviewers_never_share_an_item(engine) -> None:  # type: ignore[no-untyped-def]
    seed_review_items(engine, 60)
    labelled: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def reviewer(name: str) -> None:
        mine = labelled.setdefault(name, [])
        try:
            while (task := review_queue.claim_next(engine, name, claim_minutes=10)) is not None:
                review_queue.submit_label(engine, name, task.item_id, task.labels[0])
                mine.append(task.item_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everything = [i for items in labelled.values() for i in items]
    assert len(everything) == 60 and len(set(everything)) == 60
    assert sum(1 for items in labelled.values() if items) >= 2  # the work was shared
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), count(DISTINCT reviewer) FROM review_items WHERE status='done'")
        ).one()
    assert rows[0] == 60


def test_claim_order_held_item_skip_and_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    seed_review_items(engine, 6)
    first = review_queue.claim_next(engine, "ann", claim_minutes=10)
    assert first is not None and first.reason == "uncertainty"  # uncertainty before uniform
    assert len(first.top) == 3 and first.top[0][1] >= first.top[1][1] >= first.top[2][1]
    assert first.labels == list(DEFAULT_LABELS)
    again = review_queue.claim_next(engine, "ann", claim_minutes=10)
    assert again is not None and again.item_id == first.item_id  # reload keeps the same item
    other = review_queue.claim_next(engine, "bob", claim_minutes=10)
    assert other is not None and other.item_id != first.item_id
    review_queue.skip(engine, "ann", first.item_id)
    nxt = review_queue.claim_next(engine, "ann", claim_minutes=10)
    assert nxt is not None and nxt.item_id not in {first.item_id, other.item_id}
    with pytest.raises(review_queue.ReviewError):
        review_queue.submit_label(engine, "ann", other.item_id, "World")  # bob holds it
    with pytest.raises(review_queue.ReviewError, match="not a topic"):
        review_queue.submit_label(engine, "ann", nxt.item_id, "Cooking")
    # A claim that expires returns to the queue for someone else.
    time.sleep(0.2)
    stolen = review_queue.claim_next(engine, "cy", claim_minutes=0.001)
    assert stolen is not None and stolen.item_id in {other.item_id, nxt.item_id}


def test_second_review_goes_to_another_reviewer(engine) -> None:  # type: ignore[no-untyped-def]
    seed_review_items(engine, 1)
    task = review_queue.claim_next(engine, "ann", claim_minutes=10)
    assert task is not None
    queued = review_queue.submit_label(
        engine, "ann", task.item_id, "Sports", second_share=1.0, rng=random.Random(1)
    )
    assert queued
    assert review_queue.claim_next(engine, "ann", claim_minutes=10) is None  # not her own
    second = review_queue.claim_next(engine, "bob", claim_minutes=10)
    assert second is not None and second.round == 2 and second.article_id == task.article_id
    assert not review_queue.submit_label(engine, "bob", second.item_id, "Business", second_share=1)
    agreement = review_queue.agreement(engine)
    assert (agreement.pairs, agreement.agreed) == (1, 0)
    progress = review_queue.progress(engine, "bob")
    assert progress.labelled_today == 1 and progress.pending == 0


def test_none_of_these_label_is_kept_out_of_accuracy(engine) -> None:  # type: ignore[no-untyped-def]
    from monitoring.drift import reviewed_accuracy

    seed_review_items(engine, 3)
    with engine.begin() as conn:  # reviewed accuracy counts the uniform sample only
        conn.execute(text("UPDATE review_items SET reason = 'uniform'"))
    for label in ("World", review_queue.NONE_LABEL, "Sports"):
        task = review_queue.claim_next(engine, "ann", claim_minutes=10)
        assert task is not None
        review_queue.submit_label(engine, "ann", task.item_id, label, note="maybe Health")
    _, n = reviewed_accuracy(engine, "seed-1")
    assert n == 2  # the "none of these" label does not count


def test_accounts_and_sessions(engine) -> None:  # type: ignore[no-untyped-def]
    user = add_user(engine, "ann", "a long enough password", "reviewer")
    with pytest.raises(UserError, match="exists"):
        add_user(engine, "ann", "another long password", "reviewer")
    with pytest.raises(UserError, match="at least"):
        add_user(engine, "bob", "short", "reviewer")
    with pytest.raises(UserError, match="role"):
        add_user(engine, "bob", "a long enough password", "root")
    with pytest.raises(UserError, match="usernames"):
        add_user(engine, "Bob Smith", "a long enough password", "admin")
    assert authenticate(engine, "ann", "wrong password!!") is None
    assert authenticate(engine, "nobody", "a long enough password") is None
    assert authenticate(engine, "ann", "a long enough password") == user
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("scrypt$") and "a long enough password" not in stored
    token, csrf = start_session(engine, user, hours=1)
    assert session_user(engine, token) == (user, csrf)
    end_session(engine, token)
    assert session_user(engine, token) is None
    token, _ = start_session(engine, user, hours=1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE web_sessions SET expires_at = now() - interval '1 s'"))
    assert session_user(engine, token) is None


def test_label_studio_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    seed_review_items(engine, 5)
    tasks = labelstudio.export_tasks(engine)
    assert len(tasks) == 5
    first = tasks[0]
    assert first["data"]["review_item_id"] == first["id"] and first["data"]["text"]
    assert first["predictions"][0]["result"][0]["value"]["choices"][0] in DEFAULT_LABELS
    config = labelstudio.label_config(DEFAULT_LABELS)
    assert 'name="topic"' in config and 'value="Sci/Tech"' in config

    def annotated(task: dict, label: str, who: object = 7) -> dict:  # type: ignore[type-arg]
        result = [
            {
                "from_name": "topic",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ]
        return {**task, "annotations": [{"result": result, "completed_by": who}]}

    upload = [
        annotated(tasks[0], "World"),
        annotated(tasks[1], "Sports", {"id": 3, "email": "x@example.org"}),
        annotated(tasks[2], "Cooking"),  # not a topic
        {**tasks[3], "annotations": []},  # nothing chosen
        annotated({"id": 999_999, "data": {}}, "World"),  # no such item
        "not a task",
    ]
    report = labelstudio.import_annotations(engine, upload)
    assert report.applied == 2
    reasons = dict(report.rejected)
    assert "not a topic" in reasons[f"review item {tasks[2]['id']}"]
    assert "no 'topic' choice" in reasons[f"review item {tasks[3]['id']}"]
    assert reasons["review item 999999"] == "no such review item"
    assert reasons["task #5"] == "not a JSON object"
    again = labelstudio.import_annotations(engine, upload[:1])
    assert again.applied == 0 and "already done" in again.rejected[0][1]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT label, reviewer FROM review_items WHERE status = 'done' ORDER BY id")
        ).all()
    assert sorted(r[0] for r in rows) == ["Sports", "World"]
    assert {r[1] for r in rows} == {"labelstudio:7", "labelstudio:x@example.org"}
    bad = labelstudio.import_annotations(engine, {"tasks": []})
    assert bad.applied == 0 and "JSON list" in bad.rejected[0][1]


def test_simulated_reviewer_labels_only_its_own_items(engine) -> None:  # type: ignore[no-untyped-def]
    from monitoring.demo import SIMULATED_REVIEWER, SimulatedReviewer

    seed_review_items(engine, 10, prefix="demoabc")
    seed_review_items(engine, 5, prefix="other", model_version="seed-2")
    truth: dict[str, str | None] = {f"demoabc-{i}": "Sports" for i in range(1, 6)}
    truth.update({f"demoabc-{i}": None for i in range(6, 11)})
    reviewer = SimulatedReviewer(engine, truth, "demoabc")
    reviewer.start()
    deadline = time.monotonic() + 30
    while reviewer.labelled < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    reviewer.stop()
    assert reviewer.labelled == 10
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT article_id, label, simulated, reviewer FROM review_items "
                "WHERE status = 'done'"
            )
        ).all()
    assert len(rows) == 10 and all(r.simulated and r.reviewer == SIMULATED_REVIEWER for r in rows)
    by_id = {r.article_id: r.label for r in rows}
    assert by_id["demoabc-1"] == "Sports" and by_id["demoabc-7"] == review_queue.NONE_LABEL
    assert not any(a.startswith("other") for a in by_id)
