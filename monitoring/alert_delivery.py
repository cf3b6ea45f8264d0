"""Delivery of newsflow's own alert notifications to the webhook: one bounded HTTP POST per
attempt, and the delivery pass that works through the outbox (``alert_deliveries``).

A POST never holds its caller longer than ``timeout_s`` in all (connect, send, response
headers and body together: a watchdog shuts the socket when time is up, so a receiver that
drips bytes cannot stretch it); redirects are not followed (a 3xx is a failure that says so:
point the setting at the final URL); at most :data:`MAX_BODY` bytes of the response are read.
A failed delivery is retried with exponential backoff (30 s doubling, capped at 10 min) until
its retry window ends; then it is marked ``expired`` and logged.

The pass claims one due delivery at a time with a lease, so passes on several hosts never send
the same notification twice at once, and it starts no new POST after its time budget: it
returns within the budget plus one timeout whatever the receiver does.

Example:
    >>> [RetryPolicy().delay(n).total_seconds() for n in (1, 2, 3, 10)]
    [30.0, 60.0, 120.0, 600.0]
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from pipeline.core.db import alerts as alerts_db
from pipeline.core.errors import NewsflowError

log = logging.getLogger("newsflow.alerts")
MAX_BODY = 4096  # bytes of a receiver's answer that are read (kept for the error message)
Clock = Callable[[], dt.datetime]


class WebhookURLError(NewsflowError):
    """The webhook URL cannot be used (not http/https, no host)."""


@dataclasses.dataclass(frozen=True)
class SendResult:
    delivered: bool
    http_status: int | None
    error: str = ""
    body_bytes: int = 0  # how much of the answer was read (at most MAX_BODY)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts: ``first`` doubling, capped at ``cap``."""

    first: dt.timedelta = dt.timedelta(seconds=30)
    cap: dt.timedelta = dt.timedelta(minutes=10)

    def delay(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        factor: int = 2 ** min(max(attempts - 1, 0), 20)
        delay: dt.timedelta = min(self.first * factor, self.cap)
        return delay


@dataclasses.dataclass(frozen=True)
class PassReport:
    delivered: int = 0
    failed: int = 0
    expired: int = 0


def redacted(url: str) -> str:
    """Scheme, host and port only: a webhook's path or query often carries its token."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


def _headers(parts: urllib.parse.SplitResult) -> dict[str, str]:
    """JSON headers, with HTTP basic auth where the URL carries ``user:password@`` (the same
    URL Alertmanager is given)."""
    headers = {"Content-Type": "application/json", "User-Agent": "newsflow-alerts"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def post_json(url: str, payload: dict[str, Any], *, timeout_s: float = 5.0) -> SendResult:
    """POST ``payload`` as JSON; 2xx is delivered, anything else (a 3xx included) is not.
    Never raises for network or HTTP trouble; returns within about ``timeout_s``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookURLError(
            f"the webhook must be an http(s) URL with a host, not {redacted(url)}"
        )
    body = json.dumps(payload, default=str).encode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    watchdog: threading.Timer | None = None
    try:
        conn.connect()
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _shut, (conn,))
        watchdog.daemon = True
        watchdog.start()
        conn.request(
            "POST",
            target,
            body=body,
            headers=_headers(parts),
        )
        response = conn.getresponse()
        answer = response.read(MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        late = time.monotonic() >= deadline
        what = f"no answer within {timeout_s:g} s" if late else f"{type(exc).__name__}: {exc}"
        return SendResult(False, None, what)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()
    code = response.status
    if 200 <= code < 300:
        return SendResult(True, code, body_bytes=len(answer))
    text = answer[:200].decode("utf-8", "replace")
    if 300 <= code < 400:
        error = f"HTTP {code}: redirect not followed; set the webhook to the final URL"
    else:
        error = f"HTTP {code}: {text}".rstrip(": ")
    return SendResult(False, code, error, len(answer))


def _shut(conn: http.client.HTTPConnection) -> None:
    """Unblock a request that ran out of time (shutdown wakes a thread blocked in recv)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


Sender = Callable[[dict[str, Any]], SendResult]


def deliver_due(
    engine: Engine,
    *,
    send: Sender,
    clock: Clock,
    policy: RetryPolicy = RetryPolicy(),  # frozen: safe to share
    budget_s: float = 20.0,
    lease: dt.timedelta = dt.timedelta(minutes=2),
) -> PassReport:
    """Send what is due in the outbox, oldest first, one at a time, until nothing is due or
    ``budget_s`` (wall time) is spent. ``clock`` is the lifecycle's (tests pass a fake one)."""
    started = time.monotonic()
    done = failed = expired = 0
    while time.monotonic() - started < budget_s:
        now = clock()
        item = alerts_db.claim_due_delivery(engine, now=now, lease=lease)
        if item is None:
            break
        if now >= item.expires_at:
            alerts_db.expire_delivery(engine, delivery_id=item.id, at=now)
            log.error("alert %s (%s) was never delivered; gave up", item.alert_key, item.status)
            expired += 1
            continue
        result = send(item.payload)
        after = clock()
        retry_at = after + policy.delay(item.attempts + 1)
        next_at = None if result.delivered or retry_at >= item.expires_at else retry_at
        alerts_db.record_attempt(
            engine,
            delivery_id=item.id,
            at=after,
            delivered=result.delivered,
            http_status=result.http_status,
            error=result.error,
            next_attempt_at=next_at,
        )
        if result.delivered:
            done += 1
            continue
        failed += 1
        if next_at is None:
            expired += 1
            log.error(
                "alert %s (%s) not delivered after %d attempts; gave up: %s",
                item.alert_key,
                item.status,
                item.attempts + 1,
                result.error,
            )
        else:
            log.warning(
                "alert %s (%s) not delivered (%s); next attempt at %s",
                item.alert_key,
                item.status,
                result.error,
                next_at.isoformat(timespec="seconds"),
            )
    return PassReport(done, failed, expired)
