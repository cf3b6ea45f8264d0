"""What the worker needs to deliver a batch safely: which failures a retry can fix, sends
that retry only what Kafka did not take, and a stop guard that never acknowledges a batch
that is not stored. No I/O at import time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from sqlalchemy import exc as sa

from pipeline.core.errors import NewsflowError

log = logging.getLogger("newsflow.worker")

DLQ_SHRUNK_ORIGINAL_BYTES = 1024


class BatchAbandoned(NewsflowError):
    """A batch was given up unacknowledged because a stop was requested. In a worker the
    process has exited before this could be raised; it is seen only where the stop guard's
    exit function returns (tests)."""


def is_transient_db_error(exc: BaseException) -> bool:
    """A database failure that waiting can fix (the server is down, restarting, the
    connection dropped, the schema is not migrated yet). Data errors — a value Postgres
    refuses, a constraint — are not: retrying them would stall the partition for good."""
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa.OperationalError
        | sa.InterfaceError
        | sa.DisconnectionError
        | sa.TimeoutError
        | sa.ProgrammingError
        | sa.InternalError,
    )


def is_size_error(exc: BaseException) -> bool:
    """Kafka refused a record for its size (client- or broker-side)."""
    return "MessageSizeTooLarge" in type(exc).__name__ or "RecordTooLarge" in type(exc).__name__


class StopGuard:
    """Set by SIGTERM/SIGINT. Retry loops check it and give up their batch *without
    acknowledging it* (the process exits at once, so Faust never acks or commits it); a
    watchdog ends the process after ``grace_s`` whatever Faust's own shutdown waits for."""

    def __init__(self, grace_s: float, exit_: Callable[[int], Any] = os._exit) -> None:
        self.grace_s = grace_s
        self._exit = exit_
        self.stopping = False
        self._event: asyncio.Event | None = None

    def event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.event().set()
        threading.Thread(target=self._watchdog, daemon=True, name="stop-watchdog").start()

    def _watchdog(self) -> None:
        threading.Event().wait(self.grace_s)
        log.warning(
            "still stopping after %.0f s: exiting now (nothing unstored was acked)", self.grace_s
        )
        self.abandon("shutdown grace elapsed")

    def abandon(self, why: str) -> None:
        """Exit now, acknowledging nothing more: the batch in hand is redelivered later."""
        log.warning("exiting without acknowledging the batch in hand: %s", why)
        for handler in logging.getLogger().handlers + log.handlers:
            with contextlib.suppress(Exception):  # best effort on the way out
                handler.flush()
        self._exit(0)

    def give_up(self, why: str) -> NoReturn:
        """Abandon the batch in hand: exit, or (where the exit function returns) raise."""
        self.abandon(why)
        raise BatchAbandoned(why)

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event().wait(), seconds)


async def send_all(
    send: Callable[[bytes | None, bytes], Any],
    items: Sequence[tuple[bytes | None, bytes]],
    *,
    guard: StopGuard,
    shrink: Callable[[bytes | None, bytes], bytes] | None = None,
    on_retry: Callable[[int], None] | None = None,
    what: str = "send",
) -> None:
    """Send every item and wait until Kafka has taken each. Only items that were not
    delivered are sent again. An item refused for its size is never re-sent as it is:
    ``shrink`` gives a smaller record (a cut dead letter) or, without it, the failure is
    raised. While a stop is requested, undelivered items are abandoned unacknowledged."""
    pending = [(key, value, False) for key, value in items]
    delay = 0.2
    while pending:
        futures: list[tuple[int, Any]] = []
        failed: list[tuple[int, BaseException]] = []
        for i, (key, value, _) in enumerate(pending):
            try:
                futures.append((i, await send(key, value)))
            except Exception as exc:
                failed.append((i, exc))
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        failed += [
            (i, r)
            for (i, _), r in zip(futures, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if not failed:
            return
        retry: list[tuple[bytes | None, bytes, bool]] = []
        for i, err in sorted(failed, key=lambda f: f[0]):
            key, value, was_shrunk = pending[i]
            if is_size_error(err):
                if shrink is None or was_shrunk:
                    raise err
                retry.append((key, shrink(key, value), True))
            else:
                retry.append((key, value, was_shrunk))
        log.warning(
            "%s: %d of %d not delivered, retrying those: %s",
            what,
            len(retry),
            len(pending),
            failed[0][1],
        )
        if on_retry is not None:
            on_retry(len(retry))
        pending = retry
        if guard.stopping:
            guard.abandon(f"{what} not delivered while stopping")
            return
        await guard.pause(delay)
        delay = min(delay * 2, 5.0)


async def finish_or_abandon(work: Awaitable[Any], *, guard: StopGuard) -> None:
    """Run ``work`` (one batch) so that a cancellation (Faust stopping the agent) cannot cut
    it half-way: it finishes within the grace period, or the process exits without
    acknowledging the batch."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        guard.request_stop()
        done, _ = await asyncio.wait({task}, timeout=max(0.5, guard.grace_s - 2))
        if not done or task.exception() is not None:
            guard.abandon("the agent was cancelled before its batch was stored")
        raise


def shrink_dead_letter(_key: bytes | None, value: bytes) -> bytes:
    """A dead-letter record Kafka refused for its size, cut to a 1 KiB original."""
    record = json.loads(value)
    original = str(record.get("original", ""))
    cut = DLQ_SHRUNK_ORIGINAL_BYTES
    record["original"] = original[:cut]
    record["original_truncated"] = len(original) > cut or bool(record.get("original_truncated"))
    return json.dumps(record).encode()
