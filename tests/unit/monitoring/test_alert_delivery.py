"""The webhook POST of newsflow's own alerts against real local receivers (http.server in a
thread): 2xx delivered, 500 not, a redirect counted as a failure and not followed, a hanging
or dripping receiver cut at the timeout, a 50 MB answer read only up to the cap; and the
webhook setting refusing what is not an http(s) URL."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from monitoring.alert_delivery import MAX_BODY, RetryPolicy, post_json, redacted
from pipeline.core.settings import Settings

Behaviour = Callable[[BaseHTTPRequestHandler], None]


class Receiver:
    """A local webhook receiver; ``behaviour`` answers each POST; ``paths`` records them."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.paths: list[str] = []
        self.release = threading.Event()  # ends a hanging handler
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with contextlib.suppress(OSError):  # the client hung up (on a huge answer)
                    behaviour(self)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=secret"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _answer(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return behaviour


@pytest.fixture
def receiver() -> Iterator[Callable[[Behaviour], Receiver]]:
    started: list[Receiver] = []

    def start(behaviour: Behaviour) -> Receiver:
        r = Receiver(behaviour).__enter__()
        started.append(r)
        return r

    yield start
    for r in started:
        r.__exit__()


def test_2xx_is_delivered_and_500_is_not(receiver: Callable[[Behaviour], Receiver]) -> None:
    ok = receiver(_answer(204))
    assert post_json(ok.url, {"status": "firing"}, timeout_s=2).delivered
    assert ok.paths == ["/hook?token=secret"]
    down = receiver(_answer(500, b"database on fire"))
    result = post_json(down.url, {"status": "firing"}, timeout_s=2)
    assert (result.delivered, result.http_status) == (False, 500)
    assert "database on fire" in result.error


def test_credentials_in_the_url_become_basic_auth(
    receiver: Callable[[Behaviour], Receiver],
) -> None:
    seen: list[str | None] = []

    def check(h: BaseHTTPRequestHandler) -> None:
        seen.append(h.headers.get("Authorization"))
        _answer(200 if seen[-1] == "Basic b25jYWxsOnMzY3JldCE=" else 401)(h)

    hook = receiver(check)
    with_auth = hook.url.replace("http://", "http://oncall:s3cret%21@")
    assert post_json(with_auth, {"status": "firing"}, timeout_s=2).delivered
    refused = post_json(hook.url, {"status": "firing"}, timeout_s=2)  # no credentials
    assert (refused.delivered, refused.http_status) == (False, 401)
    assert seen == ["Basic b25jYWxsOnMzY3JldCE=", None]
    assert "s3cret" not in redacted(with_auth)


def test_a_redirect_is_a_failure_and_is_not_followed(
    receiver: Callable[[Behaviour], Receiver],
) -> None:
    hook = receiver(_answer(302, headers={"Location": "/elsewhere"}))
    result = post_json(hook.url, {"status": "firing"}, timeout_s=2)
    assert (result.delivered, result.http_status) == (False, 302)
    assert "redirect not followed" in result.error
    assert hook.paths == ["/hook?token=secret"]  # /elsewhere never asked for


def test_a_hanging_receiver_is_cut_at_the_timeout(
    receiver: Callable[[Behaviour], Receiver],
) -> None:
    def hang(h: BaseHTTPRequestHandler) -> None:
        hook.release.wait(30)

    hook = receiver(hang)
    t0 = time.monotonic()
    result = post_json(hook.url, {"status": "firing"}, timeout_s=0.5)
    took = time.monotonic() - t0
    assert not result.delivered and result.http_status is None
    assert "no answer within 0.5 s" in result.error
    assert took < 1.5, took


def test_a_dripping_receiver_is_cut_at_the_timeout_in_all(
    receiver: Callable[[Behaviour], Receiver],
) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            if hook.release.wait(0.1):
                return

    hook = receiver(drip)
    t0 = time.monotonic()
    result = post_json(hook.url, {"status": "firing"}, timeout_s=0.5)
    assert not result.delivered and time.monotonic() - t0 < 1.5


def test_a_huge_answer_is_read_only_up_to_the_cap(
    receiver: Callable[[Behaviour], Receiver],
) -> None:
    size = 50 * 1024 * 1024

    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(size))
        h.end_headers()
        chunk = b"x" * 65536
        for _ in range(size // len(chunk)):
            h.wfile.write(chunk)

    hook = receiver(huge)
    t0 = time.monotonic()
    result = post_json(hook.url, {"status": "firing"}, timeout_s=2)
    assert result.delivered and result.body_bytes == MAX_BODY
    assert time.monotonic() - t0 < 1.5


def test_backoff_doubles_from_30_s_and_is_capped_at_10_min() -> None:
    delays = [RetryPolicy().delay(n).total_seconds() for n in range(1, 8)]
    assert delays == [30, 60, 120, 240, 480, 600, 600]
    assert RetryPolicy().delay(10_000).total_seconds() == 600


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "http://h:x/",
    ],
)
def test_a_webhook_that_is_not_http_is_refused_by_the_settings(url: str) -> None:
    with pytest.raises(ValidationError, match="webhook"):
        Settings(alert_webhook_url=url)


def test_a_webhook_url_is_logged_without_its_path() -> None:
    assert Settings(alert_webhook_url="https://hooks.example/T0/secret").alert_webhook_url
    assert redacted("https://hooks.example:8443/T0/secret?k=1") == "https://hooks.example:8443/…"
