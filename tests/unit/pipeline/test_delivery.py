"""The worker's delivery rules: which database failures are outages, and Kafka sends that
re-send only what was not delivered and never re-send a record refused for its size as it
was. The send function stands in for Faust's topic.send (futures resolved per record)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import exc as sa

from pipeline.delivery import StopGuard, is_transient_db_error, send_all


class MessageSizeTooLargeError(Exception):
    pass


class FlakyTopic:
    """Fails the first attempt of chosen values; records every attempt."""

    def __init__(self, fail_once: set[bytes], too_big: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail_once, self.too_big = set(fail_once), too_big
        self.attempts: list[bytes] = []
        self.delivered: list[bytes] = []

    async def send(self, key: bytes | None, value: bytes) -> Any:
        self.attempts.append(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value in self.too_big:
            fut.set_exception(MessageSizeTooLargeError("too large"))
        elif value in self.fail_once:
            self.fail_once.discard(value)
            fut.set_exception(ConnectionError("broker went away"))
        else:
            self.delivered.append(value)
            fut.set_result(None)
        return fut


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_only_undelivered_records_are_sent_again() -> None:
    topic = FlakyTopic(fail_once={b"b", b"d"})
    items = [(None, v) for v in (b"a", b"b", b"c", b"d")]
    _run(send_all(topic.send, items, guard=StopGuard(5, exit_=lambda _: None)))
    assert sorted(topic.delivered) == [b"a", b"b", b"c", b"d"]
    assert topic.attempts == [b"a", b"b", b"c", b"d", b"b", b"d"]  # a and c once only


def test_a_record_too_large_is_shrunk_once_and_never_resent_as_it_was() -> None:
    topic = FlakyTopic(fail_once=set(), too_big={b"huge"})
    _run(
        send_all(
            topic.send,
            [(None, b"ok"), (None, b"huge")],
            guard=StopGuard(5, exit_=lambda _: None),
            shrink=lambda _k, _v: b"cut",
        )
    )
    assert topic.attempts.count(b"huge") == 1
    assert topic.delivered == [b"ok", b"cut"]


def test_a_shrunk_record_still_too_large_is_raised_not_retried_forever() -> None:
    topic = FlakyTopic(fail_once=set(), too_big={b"huge", b"cut"})
    with pytest.raises(MessageSizeTooLargeError):
        _run(
            send_all(
                topic.send,
                [(None, b"huge")],
                guard=StopGuard(5, exit_=lambda _: None),
                shrink=lambda _k, _v: b"cut",
            )
        )
    assert topic.attempts == [b"huge", b"cut"]


def test_a_stop_request_abandons_undelivered_records() -> None:
    exits: list[int] = []
    guard = StopGuard(60, exit_=exits.append)
    guard.stopping = True  # as SIGTERM leaves it (without starting the watchdog)
    topic = FlakyTopic(fail_once={b"x"})
    _run(send_all(topic.send, [(None, b"x")], guard=guard))
    assert exits == [0] and topic.attempts == [b"x"]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (sa.OperationalError("connect", {}, Exception("connection refused")), True),
        (sa.InterfaceError("x", {}, Exception("closed")), True),
        (sa.ProgrammingError("x", {}, Exception("relation does not exist")), True),
        (sa.DataError("x", {}, Exception("invalid byte sequence")), False),
        (sa.IntegrityError("x", {}, Exception("violates check")), False),
        (ValueError("NUL"), False),
        (UnicodeEncodeError("utf-8", "\udfff", 0, 1, "surrogates not allowed"), False),
    ],
)
def test_which_database_failures_are_outages(error: BaseException, transient: bool) -> None:
    assert is_transient_db_error(error) is transient
