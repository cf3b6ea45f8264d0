"""The lifecycle of newsflow's own alerts on a scratch database, driven by a fake clock, with
notifications delivered over HTTP to a real local receiver: one notice per condition and
repeat interval, one "resolved", silences that hold and lift, a receiver that answers 500 for
10 minutes and still gets the notice, a bounded retry window, a hanging receiver that does
not hold the delivery pass, and drift runs and retraining outcomes wired in."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from monitoring.alert_delivery import PassReport, deliver_due, post_json
from monitoring.alerts import (
    DRIFT_CONFIDENCE,
    DRIFT_TOPIC_MIX,
    RETRAINING_FAILED,
    RETRAINING_REFUSED,
    AlertBook,
    Condition,
    DbAlertStore,
    SilenceError,
    book_for,
    delivery_pass,
    record_retraining,
)
from pipeline.core.db import alerts as alerts_db
from pipeline.core.db.engine import make_engine
from pipeline.core.db.scratch import drop_database
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, by: dt.timedelta) -> None:
        self.now += by


class Receiver:
    """A webhook receiver; ``answer(n)`` gives the HTTP status for the n-th POST (0-based)."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200) -> None:
        self.got: list[tuple[int, dict[str, Any]]] = []  # (status answered, payload)
        self.hang = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.hang.is_set():
                    outer.release.wait(30)
                    return
                code = answer(len(outer.got))
                outer.got.append((code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        return [body for code, body in self.got if code < 300]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def shared_db(stack: Settings) -> Iterator[Settings]:
    """One migrated database for the module: these tests touch only the alert tables, which
    ``db`` empties before each test (a create-and-migrate per test would cost 1-3 s each)."""
    from pipeline.core.db.migrate import upgrade

    name = f"nf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        settings = stack.model_copy(update={"pg_database": name})
        upgrade(settings.database_url())
        yield settings
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def db(shared_db: Settings) -> Settings:
    e = make_engine(shared_db)
    with e.begin() as conn:
        conn.execute(text("TRUNCATE alert_deliveries, alerts"))
    e.dispose()
    return shared_db


@pytest.fixture
def engine(db: Settings) -> Iterator[Engine]:
    e = make_engine(db)
    yield e
    e.dispose()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _book(engine: Engine, clock: FakeClock) -> AlertBook:
    return AlertBook(
        DbAlertStore(engine), clock=clock, repeat=dt.timedelta(minutes=240), retry=24 * 60 * MIN
    )


def _deliver(engine: Engine, clock: FakeClock, url: str, timeout_s: float = 2.0) -> PassReport:
    return deliver_due(
        engine, send=lambda body: post_json(url, body, timeout_s=timeout_s), clock=clock
    )


def _drift(firing: bool, psi: float = 0.31) -> Condition:
    return Condition(DRIFT_CONFIDENCE, firing, "critical", f"PSI {psi}", {"psi": psi})


def test_a_lasting_condition_is_notified_once_per_repeat_interval_then_resolved(
    engine: Engine, hook: Receiver
) -> None:
    clock = FakeClock()
    book = _book(engine, clock)
    for _ in range(3):  # three drift checks, 15 minutes apart
        book.observe(_drift(True))
        _deliver(engine, clock, hook.url)
        clock.advance(15 * MIN)
    assert [b["status"] for b in hook.delivered()] == ["firing"]
    first = hook.delivered()[0]
    assert first["key"] == DRIFT_CONFIDENCE and first["severity"] == "critical"
    assert first["started_at"] == T0.isoformat() and "ends_at" not in first
    assert first["alerts"][0]["labels"]["alertname"] == DRIFT_CONFIDENCE

    clock.now = T0 + 240 * MIN  # the repeat interval has passed
    book.observe(_drift(True))
    book.observe(_drift(True))
    _deliver(engine, clock, hook.url)
    assert [b["status"] for b in hook.delivered()] == ["firing", "firing"]

    clock.advance(15 * MIN)
    assert book.observe(_drift(False, 0.02)) == "resolved"
    assert book.observe(_drift(False, 0.02)) is None
    _deliver(engine, clock, hook.url)
    statuses = [b["status"] for b in hook.delivered()]
    assert statuses == ["firing", "firing", "resolved"]
    resolved = hook.delivered()[-1]
    assert resolved["ends_at"] == clock.now.isoformat() and resolved["started_at"] == T0.isoformat()
    state = alerts_db.get_alert(engine, key=DRIFT_CONFIDENCE)
    assert state is not None and (state.status, state.notification_count) == ("resolved", 3)
    assert book.observe(Condition(DRIFT_TOPIC_MIX, False)) is None  # never fired: no row
    assert alerts_db.get_alert(engine, key=DRIFT_TOPIC_MIX) is None


def test_a_metric_hovering_at_its_cut_off_is_one_episode(engine: Engine, hook: Receiver) -> None:
    """With `NEWSFLOW_ALERT_CLEAR_CHECKS`=2 (the default): firing, clear, firing, clear, clear
    is one episode (one `firing`, one `resolved`); with 1, each crossing is another episode.
    A retraining alert still resolves at its first clear observation."""
    clock = FakeClock()
    book = AlertBook(DbAlertStore(engine), clock=clock, clear_after=2)
    for firing in (True, False, True, False):
        book.observe(_drift(firing))
        _deliver(engine, clock, hook.url)
        clock.advance(15 * MIN)
    state = alerts_db.get_alert(engine, key=DRIFT_CONFIDENCE)
    assert state is not None and state.status == "firing" and state.first_seen == T0
    assert state.details["clear_streak"] == 1  # one clear check so far
    assert book.observe(_drift(False)) == "resolved"  # the second clear check in a row
    _deliver(engine, clock, hook.url)
    assert [b["status"] for b in hook.delivered()] == ["firing", "resolved"]

    book.observe(Condition(RETRAINING_FAILED, True, "critical", "MLflow down"))
    assert book.observe(Condition(RETRAINING_FAILED, False, summary="promoted")) == "resolved"

    eager = AlertBook(DbAlertStore(engine), clock=clock, clear_after=1)
    notes = [eager.observe(Condition(DRIFT_TOPIC_MIX, f, summary="mix")) for f in (True, False) * 2]
    assert notes == ["firing", "resolved", "firing", "resolved"]
    with pytest.raises(ValueError, match="clear_after"):
        AlertBook(DbAlertStore(engine), clear_after=0)


def test_a_silence_suppresses_then_lifts_at_its_time(engine: Engine, hook: Receiver) -> None:
    clock = FakeClock()
    book = _book(engine, clock)
    book.observe(_drift(True))
    book.observe(_drift(False))  # before a delivery pass: the receiver needs only the latest
    _deliver(engine, clock, hook.url)
    assert [b["status"] for b in hook.delivered()] == ["resolved"]
    assert [d.state for d in alerts_db.list_deliveries(engine)] == ["delivered", "superseded"]

    with pytest.raises(SilenceError, match="future"):
        book.silence(DRIFT_CONFIDENCE, T0 - MIN, "oscar")
    with pytest.raises(SilenceError, match="30 days"):
        book.silence(DRIFT_CONFIDENCE, T0 + dt.timedelta(days=31), "oscar")
    with pytest.raises(SilenceError, match="no alert"):
        book.silence("drift:nonsense", T0 + 60 * MIN, "oscar")
    book.silence(DRIFT_CONFIDENCE, T0 + 60 * MIN, "oscar")
    for _ in range(3):  # fires again while silenced: recorded, not sent
        clock.advance(10 * MIN)
        assert book.observe(_drift(True)) is None
        book.reconcile()
        _deliver(engine, clock, hook.url)
    state = alerts_db.get_alert(engine, key=DRIFT_CONFIDENCE)
    assert state is not None and state.status == "firing" and state.silenced_by == "oscar"
    assert len(hook.delivered()) == 1

    clock.now = T0 + 61 * MIN  # the silence has ended: the next delivery pass catches up
    assert book.reconcile() == [(DRIFT_CONFIDENCE, "firing")]
    _deliver(engine, clock, hook.url)
    assert [b["status"] for b in hook.delivered()] == ["resolved", "firing"]
    state = alerts_db.get_alert(engine, key=DRIFT_CONFIDENCE)
    assert state is not None and state.silenced_until is None and state.silenced_by is None

    book.silence(DRIFT_CONFIDENCE, clock.now + 60 * MIN, "oscar")  # and lifted by hand
    book.lift(DRIFT_CONFIDENCE, "oscar")
    clock.advance(240 * MIN)
    assert book.reconcile() == [(DRIFT_CONFIDENCE, "firing")]  # the repeat, not held back


def test_a_receiver_down_for_10_minutes_gets_the_notice_once_it_recovers(
    engine: Engine,
) -> None:
    clock = FakeClock()
    hook = Receiver(lambda n: 500 if clock.now < T0 + 10 * MIN else 200)
    try:
        book = _book(engine, clock)
        book.observe(_drift(True))
        passes = 0
        while not hook.delivered():  # the delivery job, every 30 s of fake time
            _deliver(engine, clock, hook.url)
            clock.advance(dt.timedelta(seconds=30))
            passes += 1
            assert passes < 100
            if passes % 4 == 0:  # a restart in between: the outbox is in the database
                book = _book(engine, clock)
                book.observe(_drift(True))  # still firing: no new notice
    finally:
        hook.close()
    codes = [code for code, _ in hook.got]
    assert codes == [500] * 5 + [200]  # attempts at 0, 0.5, 1.5, 3.5, 7.5 and 15.5 min
    assert len(hook.delivered()) == 1
    (done,) = alerts_db.list_deliveries(engine, key=DRIFT_CONFIDENCE)
    assert (done.state, done.attempts, done.last_http_status) == ("delivered", 6, 200)
    assert done.finished_at == T0 + dt.timedelta(minutes=15, seconds=30)


def test_retries_stop_when_the_retry_window_ends(engine: Engine) -> None:
    clock = FakeClock()
    hook = Receiver(lambda n: 503)
    try:
        book = AlertBook(DbAlertStore(engine), clock=clock, retry=60 * MIN)
        book.observe(_drift(True))
        while clock.now < T0 + 120 * MIN:
            _deliver(engine, clock, hook.url)
            clock.advance(MIN)
    finally:
        hook.close()
    (gave_up,) = alerts_db.list_deliveries(engine, key=DRIFT_CONFIDENCE)
    assert gave_up.state == "expired" and gave_up.last_http_status == 503
    # passes every minute: attempts at 0, 1, 2, 4, 8, 16, 26, 36, 46 and 56 min; the next
    # would fall after the 60 min window
    assert len(hook.got) == gave_up.attempts == 10


def test_a_hanging_receiver_does_not_hold_the_delivery_pass(engine: Engine, hook: Receiver) -> None:
    clock = FakeClock()
    _book(engine, clock).observe(_drift(True))
    hook.hang.set()
    t0 = time.monotonic()
    report = _deliver(engine, clock, hook.url, timeout_s=0.5)
    assert time.monotonic() - t0 < 1.5
    assert (report.delivered, report.failed) == (0, 1)
    (pending,) = alerts_db.list_deliveries(engine, key=DRIFT_CONFIDENCE)
    assert pending.state == "pending" and "no answer within 0.5 s" in pending.last_error
    assert pending.next_attempt_at == T0 + dt.timedelta(seconds=30)


def test_retraining_outcomes_fire_and_promotion_resolves(
    db: Settings, engine: Engine, hook: Receiver
) -> None:
    s = db.model_copy(update={"alert_webhook_url": hook.url})
    record_retraining(s, engine, status="failed", reason="MLflow down", version=None)
    record_retraining(s, engine, status="refused", reason="recipe base missing", version=None)
    record_retraining(s, engine, status="cooldown", reason="retrained 2 h ago", version=None)
    delivery_pass(s, engine)
    got = {(b["key"], b["status"]) for b in hook.delivered()}
    assert got == {(RETRAINING_FAILED, "firing"), (RETRAINING_REFUSED, "firing")}
    record_retraining(s, engine, status="promoted", reason="passed", version="8")
    delivery_pass(s, engine)
    assert [(b["key"], b["status"]) for b in hook.delivered()[2:]] == [
        (RETRAINING_FAILED, "resolved"),
        (RETRAINING_REFUSED, "resolved"),
    ]
    assert [a.pending for a in alerts_db.list_alerts(engine)] == [0, 0]
    # without a webhook the state is still kept, nothing is queued
    quiet = book_for(db, engine)
    assert quiet.observe(_drift(True)) == "firing"
    assert alerts_db.list_deliveries(engine, key=DRIFT_CONFIDENCE) == []
