"""The lifecycle of the notices newsflow sends itself (for people without Prometheus and
Alertmanager): drift of the confidence distribution or the topic mix, the reviewers' signals
(a share of "none of these" labels that points at a new kind of news, a fall in recent reviewed
accuracy), a retraining that failed or was refused (the champion's recipe cannot run here).

Each condition has a stable key (:data:`DRIFT_CONFIDENCE`, ...) and one row of state in
``alerts``. Observing a condition reconciles what the webhook receiver was told with what is
true now:

* firing, and the receiver has not been told (a new episode): one ``firing`` notification;
* still firing: nothing until ``alert_repeat_minutes`` have passed since the last one;
* cleared after the receiver was told it fires: one ``resolved`` notification;
* silenced (until a time, by an admin on the on-call page): the state is recorded, nothing is
  sent; when the time comes the silence lifts by itself and the next reconciliation (the
  delivery job, every ~30 s) sends what the receiver has missed.

Notifications go through the outbox (:mod:`monitoring.alert_delivery`), written in the same
transaction as the state, so the scheduler never waits for a receiver. :class:`AlertBook`
holds the rules over an injected clock and store; tests drive it with a fake clock.

Example:
    >>> book = AlertBook(store, clock=lambda: now, repeat=dt.timedelta(hours=4))  # doctest: +SKIP
    >>> book.observe(Condition(DRIFT_CONFIDENCE, firing=True, summary="PSI 0.31"))  # doctest: +SKIP
    'firing'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import Engine

from monitoring.alert_delivery import (
    Clock,
    RetryPolicy,
    SendResult,
    deliver_due,
    post_json,
    redacted,
)
from monitoring.psi import level_of
from monitoring.review_signals import REVIEWED_ACCURACY, UNKNOWN, ReviewSignal, summary
from pipeline.core.db import alerts as alerts_db
from pipeline.core.db.alerts import AlertState, NewDelivery
from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from monitoring.drift import DriftResult

log = logging.getLogger("newsflow.alerts")

DRIFT_CONFIDENCE = "drift:confidence"
DRIFT_TOPIC_MIX = "drift:topic_mix"
REVIEW_UNKNOWN_SHARE = "review:unknown_share"
REVIEW_ACCURACY = "review:accuracy"
RETRAINING_FAILED = "retraining:failed"
RETRAINING_REFUSED = "retraining:refused"
KEYS = (
    DRIFT_CONFIDENCE,
    DRIFT_TOPIC_MIX,
    REVIEW_UNKNOWN_SHARE,
    REVIEW_ACCURACY,
    RETRAINING_FAILED,
    RETRAINING_REFUSED,
)
MAX_SILENCE = dt.timedelta(days=30)
# Measured at every drift check: these resolve only after ``alert_clear_checks`` clear checks
# in a row, so a metric that hovers at its cut-off is one episode, not one per crossing.
STEADY_KEYS = frozenset({DRIFT_CONFIDENCE, DRIFT_TOPIC_MIX, REVIEW_UNKNOWN_SHARE, REVIEW_ACCURACY})
CLEAR_STREAK = "clear_streak"  # in a firing state's details: clear observations so far

Severity = Literal["info", "warning", "critical"]
Notified = Literal["firing", "resolved"]


class SilenceError(NewsflowError):
    """A silence that cannot be set: unknown key, a time in the past or too far ahead."""


@dataclasses.dataclass(frozen=True)
class Condition:
    """One observation of a condition: firing or not, with what to tell people."""

    key: str
    firing: bool
    severity: Severity = "warning"
    summary: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class AlertStore(Protocol):
    def get(self, key: str) -> AlertState | None: ...

    def all(self) -> list[AlertState]: ...

    def save(self, state: AlertState, delivery: NewDelivery | None) -> None: ...

    def silence(self, key: str, until: dt.datetime | None, by: str | None) -> bool: ...

    def exclusive(self) -> AbstractContextManager[None]: ...


@dataclasses.dataclass(frozen=True)
class DbAlertStore:
    """The store on Postgres (``pipeline.core.db.alerts``)."""

    engine: Engine

    def get(self, key: str) -> AlertState | None:
        return alerts_db.get_alert(self.engine, key=key)

    def all(self) -> list[AlertState]:
        return alerts_db.list_alert_states(self.engine)

    def save(self, state: AlertState, delivery: NewDelivery | None) -> None:
        alerts_db.save_alert(self.engine, state=state, delivery=delivery)

    def silence(self, key: str, until: dt.datetime | None, by: str | None) -> bool:
        return alerts_db.set_silence(self.engine, key=key, until=until, by=by)

    def exclusive(self) -> AbstractContextManager[None]:
        return alerts_db.serialized(self.engine)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AlertBook:
    """The rules. ``deliver``: whether notifications are queued for a webhook (without one,
    the state is still kept and the log line is the notification)."""

    def __init__(
        self,
        store: AlertStore,
        *,
        clock: Clock = utc_now,
        repeat: dt.timedelta = dt.timedelta(hours=4),
        retry: dt.timedelta = dt.timedelta(hours=24),
        deliver: bool = True,
        clear_after: int = 1,
    ) -> None:
        """``clear_after``: a drift or reviewer alert resolves only after that many
        observations in a row found it clear (1: the first one, as the retraining alerts)."""
        if clear_after < 1:
            raise ValueError(f"clear_after must be at least 1, got {clear_after}")
        self.store, self.clock, self.repeat, self.retry = store, clock, repeat, retry
        self.deliver, self.clear_after = deliver, clear_after

    def observe(self, cond: Condition) -> Notified | None:
        """Record one observation; returns the notification it caused, if any."""
        with self.store.exclusive():
            return self._observe(cond)

    def _observe(self, cond: Condition) -> Notified | None:
        now = self.clock()
        old = self.store.get(cond.key)
        if old is None and not cond.firing:
            return None  # never fired: nothing to record or resolve
        if cond.firing:
            new_episode = old is None or old.status == "resolved"
            state = AlertState(
                key=cond.key,
                severity=cond.severity,
                status="firing",
                summary=cond.summary,
                details=cond.details,
                first_seen=now if new_episode or old is None else old.first_seen,
                last_seen=now,
                **_kept(old),
            )
        else:
            assert old is not None
            needed = self.clear_after if cond.key in STEADY_KEYS else 1
            streak = int(old.details.get(CLEAR_STREAK, 0)) + 1
            if old.status == "resolved":
                state = dataclasses.replace(old, last_seen=now)
            elif streak < needed:  # clear once: it stays open, one episode, no notification
                details = {**old.details, CLEAR_STREAK: streak}
                state = dataclasses.replace(old, last_seen=now, details=details)
            else:
                state = dataclasses.replace(
                    old, status="resolved", last_seen=now, resolved_at=now, summary=cond.summary
                )
        return self._settle(state, now)

    def reconcile(self) -> list[tuple[str, Notified]]:
        """Lift lapsed silences and send what is due (a repeat, or what a silence held
        back) without a new observation; the delivery job runs this every pass."""
        with self.store.exclusive():
            return self._reconcile()

    def _reconcile(self) -> list[tuple[str, Notified]]:
        now = self.clock()
        sent: list[tuple[str, Notified]] = []
        for state in self.store.all():
            if state.silenced_until is not None and state.silenced_until > now:
                continue  # still silenced: nothing to change
            if state.silenced_until is not None or _due(state, now, self.repeat):
                notified = self._settle(state, now)
                if notified:
                    sent.append((state.key, notified))
        return sent

    def silence(self, key: str, until: dt.datetime, by: str) -> None:
        now = self.clock()
        if until <= now:
            raise SilenceError("a silence must end in the future")
        if until - now > MAX_SILENCE:
            raise SilenceError(f"a silence may last at most {MAX_SILENCE.days} days")
        with self.store.exclusive():  # not between a reconciliation's read and write
            found = self.store.silence(key, until, by)
        if not found:
            raise SilenceError(f"no alert {key!r}")
        log.warning("alert %s silenced until %s by %s", key, until.isoformat(), by)

    def lift(self, key: str, by: str) -> None:
        with self.store.exclusive():
            found = self.store.silence(key, None, None)
        if not found:
            raise SilenceError(f"no alert {key!r}")
        log.warning("silence of alert %s lifted by %s", key, by)

    def _settle(self, state: AlertState, now: dt.datetime) -> Notified | None:
        """Save ``state`` and, unless silenced, the notification it calls for."""
        if state.silenced_until is not None and state.silenced_until <= now:
            state = dataclasses.replace(state, silenced_until=None, silenced_by=None)
        silenced = state.silenced_until is not None
        notify = None if silenced else _due(state, now, self.repeat)
        if notify is None:
            self.store.save(state, None)
            return None
        state = dataclasses.replace(
            state,
            last_notified=now,
            notified_status=notify,
            notification_count=state.notification_count + 1,
        )
        delivery = None
        if self.deliver:
            delivery = NewDelivery(notify, payload(state), now, now + self.retry)
        self.store.save(state, delivery)
        log.warning("alert %s %s: %s", state.key, notify, state.summary)
        return notify


def parse_until(raw: str) -> dt.datetime:
    """A silence's end as a form sends it (``2026-12-08T09:30``, ISO 8601); a time without
    an offset is UTC."""
    try:
        until = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise SilenceError(f"{raw[:40]!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC)") from None
    return until if until.tzinfo is not None else until.replace(tzinfo=dt.UTC)


def _kept(old: AlertState | None) -> dict[str, Any]:
    """What carries over from the previous state into a firing one."""
    if old is None:
        return {}
    return {
        "last_notified": old.last_notified,
        "notified_status": old.notified_status,
        "notification_count": old.notification_count,
        "silenced_until": old.silenced_until,
        "silenced_by": old.silenced_by,
    }


def _due(state: AlertState, now: dt.datetime, repeat: dt.timedelta) -> Notified | None:
    """The notification the receiver needs now (silences aside)."""
    if state.status == "firing":
        if state.notified_status != "firing" or state.last_notified is None:
            return "firing"
        return "firing" if now - state.last_notified >= repeat else None
    return "resolved" if state.notified_status == "firing" else None


def payload(state: AlertState) -> dict[str, Any]:
    """The webhook's JSON: newsflow's fields, then the same in Alertmanager's webhook shape
    (``version`` 4, ``commonLabels``, ``alerts``, ...), so a receiver built for Alertmanager
    reads it too."""
    body: dict[str, Any] = {
        "status": state.notified_status,
        "key": state.key,
        "severity": state.severity,
        "summary": state.summary,
        "details": state.details,
        "started_at": state.first_seen.isoformat(),
    }
    if state.status == "resolved" and state.resolved_at is not None:
        body["ends_at"] = state.resolved_at.isoformat()
    labels = {"alertname": state.key, "severity": state.severity, "job": "newsflow"}
    annotations = {"summary": state.summary}
    body.update(
        version="4",
        receiver="newsflow",
        groupKey=state.key,
        groupLabels={"alertname": state.key},
        commonLabels=labels,
        commonAnnotations=annotations,
        alerts=[
            {
                "status": state.notified_status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": body["started_at"],
                "endsAt": body.get("ends_at", "0001-01-01T00:00:00Z"),
            }
        ],
    )
    return body


def book_for(settings: Settings, engine: Engine, *, clock: Clock = utc_now) -> AlertBook:
    return AlertBook(
        DbAlertStore(engine),
        clock=clock,
        repeat=dt.timedelta(minutes=settings.alert_repeat_minutes),
        retry=dt.timedelta(hours=settings.alert_retry_hours),
        deliver=settings.alert_webhook_url is not None,
        clear_after=settings.alert_clear_checks,
    )


def drift_conditions(settings: Settings, result: DriftResult) -> list[Condition]:
    """One condition per PSI the run measured (none for an insufficient window or an error:
    those say nothing about drift, so the state stays as it was)."""
    details = {
        "level": result.level,
        "run_id": result.run_id,
        "model_version": result.model_version,
        "window_size": result.window_size,
        "psi_confidence": result.psi_confidence,
        "psi_topics": result.psi_topics,
        "estimated_accuracy": result.estimated_accuracy,
        "reviewed_accuracy": result.reviewed_accuracy,
        "report_path": result.report_path,
        "decision": result.decision.to_json() if result.decision else None,
    }
    out = []
    for key, metric, what, value in (
        (DRIFT_CONFIDENCE, "confidence", "confidence distribution", result.psi_confidence),
        (DRIFT_TOPIC_MIX, "topics", "topic mix", result.psi_topics),
    ):
        if value is None:
            continue
        # the run's own level for the metric: cut-offs from its reference (monitoring.reference)
        fixed = level_of(value, settings.drift_warn, settings.drift_threshold)
        level = (result.levels or {}).get(metric, fixed)
        out.append(
            Condition(
                key,
                firing=level != "ok",
                severity="critical" if level == "drift" else "warning",
                summary=f"{what} PSI {value:.3f} ({level}) for model {result.model_version}",
                details=details,
            )
        )
    return out + review_conditions(result, details)


def review_conditions(result: DriftResult, details: dict[str, Any]) -> list[Condition]:
    """One condition per reviewer signal with enough items (:mod:`monitoring.review_signals`);
    one with too few says nothing, so the state stays as it was."""
    out = []
    for key, metric in ((REVIEW_UNKNOWN_SHARE, UNKNOWN), (REVIEW_ACCURACY, REVIEWED_ACCURACY)):
        raw = (result.review_signals or {}).get(metric)
        if raw is None:
            continue
        signal = ReviewSignal(**{**raw, "interval": _pair(raw.get("interval"))})
        if not signal.measured:
            continue
        out.append(
            Condition(
                key,
                firing=signal.level in {"warn", "drift"},
                severity="critical" if signal.level == "drift" else "warning",
                summary=summary(signal, result.model_version),
                details={**details, "signal": signal.to_json()},
            )
        )
    return out


def _pair(raw: Any) -> tuple[float, float] | None:
    return (float(raw[0]), float(raw[1])) if raw is not None else None


def record_drift(
    settings: Settings, engine: Engine, result: DriftResult, *, clock: Clock = utc_now
) -> None:
    """Feed a drift run into the lifecycle. Never raises (the check's result stands)."""
    try:
        book = book_for(settings, engine, clock=clock)
        for cond in drift_conditions(settings, result):
            book.observe(cond)
    except Exception:
        log.exception("recording the drift alerts failed")


def record_retraining(
    settings: Settings,
    engine: Engine,
    *,
    status: str,
    reason: str,
    version: str | None,
    clock: Clock = utc_now,
) -> None:
    """A retraining outcome: ``failed`` (an error while training) and ``refused`` (the
    champion's recipe cannot run here) fire; a retraining that ran through (``promoted``, or
    ``rejected``: the gate kept the champion, which is the gate working) resolves both. The
    outcomes that turn a retraining away before it starts (busy, cooldown, ...) say nothing.
    Never raises."""
    detail = {"status": status, "reason": reason, "version": version}
    try:
        book = book_for(settings, engine, clock=clock)
        if status == "failed":
            summary = f"retraining failed: {reason}"
            book.observe(Condition(RETRAINING_FAILED, True, "critical", summary, detail))
        elif status == "refused":
            summary = f"retraining refused: {reason}"
            book.observe(Condition(RETRAINING_REFUSED, True, "warning", summary, detail))
        elif status in {"promoted", "rejected"}:
            summary = f"a retraining ran through ({status}, model {version})"
            for key in (RETRAINING_FAILED, RETRAINING_REFUSED):
                book.observe(Condition(key, False, summary=summary, details=detail))
    except Exception:
        log.exception("recording the retraining alert failed")


def delivery_pass(
    settings: Settings, engine: Engine, *, clock: Clock = utc_now, budget_s: float = 20.0
) -> None:
    """One pass of the delivery job: reconcile (repeats, lapsed silences), then send what
    is due. Never raises: the scheduler keeps running."""
    try:
        book_for(settings, engine, clock=clock).reconcile()
        url = settings.alert_webhook_url
        if url is None:
            return
        timeout = settings.alert_timeout_s

        def send(body: dict[str, Any]) -> SendResult:
            return post_json(url, body, timeout_s=timeout)

        report = deliver_due(
            engine, send=send, clock=clock, policy=RetryPolicy(), budget_s=budget_s
        )
        if report.failed:
            log.warning(
                "alert delivery to %s: %d delivered, %d failed",
                redacted(url),
                report.delivered,
                report.failed,
            )
    except Exception:
        log.exception("alert delivery pass failed")


def delivery_job(settings: Settings, engine: Engine) -> Callable[[], None]:
    """The scheduler's job (every ~30 s, its own thread: the drift job never waits on it)."""

    def job() -> None:
        delivery_pass(settings, engine)

    return job
