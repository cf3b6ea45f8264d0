"""Hardening of the web app, against real Postgres and the app served by uvicorn in a thread:
non-ASCII CSRF values, labels outside the item's model refused, body caps enforced before
parsing, the session checked before an upload is parsed, an atomic login limiter under a
parallel burst, and psql without secrets on its command line."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text
from starlette.requests import Request

from monitoring.web import labelstudio
from monitoring.web.app import create_app
from monitoring.web.seed import NEWSGROUPS_LABELS, seed_review_items, shuffle_probabilities
from monitoring.web.users import add_user
from pipeline.core.db.engine import make_engine
from pipeline.core.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

REVIEWER, ADMIN, PASSWORD = "rita", "oscar", "correct horse battery"
ATTEMPTS = 3
UPLOAD_CAP = 256 * 1024  # the test app's Label Studio file cap (body cap: + 64 KiB)
FORM_CAP = 64 * 1024


@dataclass(frozen=True)
class Web:
    url: str
    port: int
    engine: Engine
    parsed: list[str]  # paths whose body reached Request.form()


@pytest.fixture
def web(db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    settings = db.model_copy(
        update={"home": tmp_path, "review_second_share": 0.0, "web_login_attempts": ATTEMPTS}
    )
    engine = make_engine(settings, pool_size=8)
    seed_review_items(engine, 8)
    add_user(engine, REVIEWER, PASSWORD, "reviewer")
    add_user(engine, ADMIN, PASSWORD, "admin")

    parsed: list[str] = []
    real_form = Request.form

    def counting_form(self: Request, **kwargs: Any) -> Any:
        parsed.append(self.url.path)
        return real_form(self, **kwargs)

    monkeypatch.setattr(Request, "form", counting_form)

    port = free_port()
    app = create_app(settings, engine=engine, max_upload_bytes=UPLOAD_CAP)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    try:
        yield Web(f"http://127.0.0.1:{port}", port, engine, parsed)
    finally:
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():  # a half-sent chunked body may hold a connection open
            server.force_exit = True
            thread.join(5)
        engine.dispose()


def _client(web: Web) -> httpx.Client:
    return httpx.Client(base_url=web.url, follow_redirects=False, timeout=60)


def _login_token(http: httpx.Client) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
    assert found, "login form without CSRF token"
    return found[1]


@contextlib.contextmanager
def _signed_in(web: Web, user: str) -> Iterator[httpx.Client]:
    with _client(web) as http:
        r = http.post(
            "/login",
            data={"username": user, "password": PASSWORD, "csrf_token": _login_token(http)},
        )
        assert r.status_code == 303, r.text
        yield http


def _claim(http: httpx.Client) -> tuple[int, str]:
    """The reviewer's current item and the session's CSRF token, from the review page."""
    page = http.get("/review")
    item = re.search(r'action="/review/(\d+)/label"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert item and token, page.text[:500]
    return int(item[1]), token[1]


def _status(web: Web, item: int) -> str:
    with web.engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT status FROM review_items WHERE id = :i"), {"i": item}
            ).scalar_one()
        )


def _ls_file(web: Web, item: int, *, pad: int = 0) -> bytes:
    """A Label Studio export with one annotation for ``item`` (``pad`` bytes of whitespace)."""
    task = next(t for t in labelstudio.export_tasks(web.engine) if t["id"] == item)
    task["annotations"] = [
        {
            "result": [
                {
                    "from_name": "topic",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": ["Business"]},
                }
            ],
            "completed_by": 7,
        }
    ]
    return json.dumps([task]).encode() + b" " * pad


def _pending_item(web: Web) -> int:
    with web.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT min(id) FROM review_items WHERE status = 'pending'")
            ).scalar_one()
        )


def test_non_ascii_csrf_is_refused_and_changes_nothing(web: Web) -> None:
    with _signed_in(web, REVIEWER) as http:
        item, _ = _claim(http)
        for forged in ("jeton-é", "☃" * 43, "\u00ff"):
            r = http.post(f"/review/{item}/label", data={"label": "World", "csrf_token": forged})
            assert r.status_code == 403 and "CSRF" in r.text, (forged, r.status_code)
            r = http.post("/logout", data={"csrf_token": forged})
            assert r.status_code == 403
        assert _status(web, item) == "pending"
        assert http.get("/review").status_code == 200  # still signed in

    with _client(web) as http:  # the sign-in form's own token
        _login_token(http)
        r = http.post(
            "/login", data={"username": REVIEWER, "password": PASSWORD, "csrf_token": "ключ"}
        )
        assert r.status_code == 403 and "nf_session" not in r.cookies


def _row(web: Web, item: int) -> tuple[str, str | None, str | None, str | None]:
    with web.engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, label, reviewer, assigned_to FROM review_items WHERE id = :i"),
            {"i": item},
        ).one()
    return row[0], row[1], row[2], row[3]


def test_only_the_items_own_labels_are_accepted(web: Web) -> None:
    seed_review_items(web.engine, 1, prefix="ng", model_version="ng20-1", labels=NEWSGROUPS_LABELS)
    shuffle_probabilities(web.engine, model_version="ng20-1", seed=5)
    with web.engine.begin() as conn:  # the 20-topic item comes first in the queue
        conn.execute(text("UPDATE review_items SET priority = -1 WHERE article_id LIKE 'ng-%'"))
    with _signed_in(web, REVIEWER) as http:
        for model_labels, foreign in ((NEWSGROUPS_LABELS, "World"), (None, "rec.autos")):
            item, token = _claim(http)
            page = http.get("/review").text
            keyed = re.findall(r'data-key="[1-9]" aria-keyshortcuts="[1-9]"', page)
            others = re.findall(r'role="option" id="topic-option-\d+" data-label="([^"]+)"', page)
            labels = model_labels or ("World", "Sports", "Business", "Sci/Tech")
            assert len(keyed) == min(9, len(labels)) and len(others) == len(labels) - len(keyed)
            good = others[-1] if others else labels[-1]
            unknown = "is not a topic of this item"
            bad = {  # label: what the error page says
                "astrology": unknown,
                "": "Choose a topic",
                "x" * 10_000: "over 128 characters",
                good.upper(): unknown,
                good + " ": unknown,
                " " + good: unknown,
                foreign: unknown,  # another model's topic
            }
            for label, says in bad.items():
                r = http.post(f"/review/{item}/label", data={"label": label, "csrf_token": token})
                message = re.search(r'id="error">([^<]*)<', r.text)
                assert r.status_code == 422 and message, (label[:20], r.status_code)
                assert says in message[1], (label[:20], message[1])
                assert _row(web, item) == ("pending", None, None, REVIEWER), label[:20]
            r = http.post(f"/review/{item}/label", data={"label": good, "csrf_token": token})
            assert r.status_code == 303, r.text
            assert _row(web, item) == ("done", good, REVIEWER, None)


def test_oversize_form_body_is_413_before_parsing(web: Web) -> None:
    big = "x" * (FORM_CAP + 1)
    with _signed_in(web, REVIEWER) as http:
        item, token = _claim(http)
        web.parsed.clear()
        r = http.post(
            f"/review/{item}/label", data={"label": "World", "note": big, "csrf_token": token}
        )
        assert r.status_code == 413 and "64 KiB" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]  # headers kept
        r = http.post("/login", data={"username": "a", "password": big, "csrf_token": "t"})
        assert r.status_code == 413
        assert web.parsed == []  # refused on Content-Length, nothing parsed
        assert _status(web, item) == "pending"

        # Chunked (no Content-Length): counted as it streams, answered at the cap.
        session = http.cookies["nf_session"]
        status, sent = _chunked_post(
            web, f"/review/{item}/label", session, b"label=World&csrf_token=" + token.encode()
        )
        assert status == 413
        assert sent < 1024 * 1024  # answered before the client sent everything
        assert _status(web, item) == "pending"
        assert http.get("/review").status_code == 200


def _chunked_post(web: Web, path: str, session: str, head: bytes) -> tuple[int, int]:
    """POST a chunked form body of up to 1 MiB, 4 KiB a chunk, stopping when the server
    answers. Returns (status, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=30)
    try:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Cookie: nf_session={session}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sent = 0
        chunks = [head + b"&note="] + [b"y" * 4096] * 256
        for chunk in chunks:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0.02)[0]:
                break
        else:
            sock.sendall(b"0\r\n\r\n")
        reply = b""
        while b"\r\n" not in reply:
            part = sock.recv(4096)
            if not part:
                break
            reply += part
        return int(reply.split(b" ", 2)[1]), sent
    finally:
        sock.close()


def test_oversize_upload_is_413_before_parsing(web: Web) -> None:
    item = _pending_item(web)
    big = _ls_file(web, item, pad=UPLOAD_CAP + 100 * 1024)
    with _signed_in(web, ADMIN) as http:
        page = http.get("/labelstudio")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        web.parsed.clear()
        r = http.post(
            "/labelstudio/import",
            data={"csrf_token": token[1]},
            files={"file": ("ls.json", big, "application/json")},
        )
        assert r.status_code == 413
    with _client(web) as anonymous:
        r = anonymous.post(
            "/labelstudio/import", files={"file": ("ls.json", big, "application/json")}
        )
        assert r.status_code == 413
    assert web.parsed == []
    assert _status(web, item) == "pending"


def test_upload_is_parsed_only_after_the_session_and_role_check(web: Web) -> None:
    item = _pending_item(web)
    upload = {"file": ("ls.json", _ls_file(web, item), "application/json")}
    with _client(web) as anonymous:
        r = anonymous.post("/labelstudio/import", files=upload)
        assert r.status_code == 401 and "Sign in first" in r.text
    with _signed_in(web, REVIEWER) as http:
        _, token = _claim(http)
        web.parsed.clear()
        r = http.post("/labelstudio/import", data={"csrf_token": token}, files=upload)
        assert r.status_code == 403 and "admin" in r.text
    assert web.parsed == []  # neither request reached the form parser
    assert _status(web, item) == "pending"

    with _signed_in(web, ADMIN) as http:  # and the admin's upload does work
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/labelstudio").text)
        assert token
        r = http.post("/labelstudio/import", data={"csrf_token": token[1]}, files=upload)
        assert r.status_code == 200 and "1 labels applied" in r.text
    assert web.parsed == ["/login", "/labelstudio/import"]
    assert _status(web, item) == "done"


def test_parallel_login_burst_gets_only_the_configured_attempts(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring.web import users

    add_user(web.engine, "mallory-target", PASSWORD, "reviewer")
    checked: list[str] = []
    real_verify = users.verify_password

    def counting_verify(password: str, stored: str) -> bool:
        checked.append(password)
        return real_verify(password, stored)

    monkeypatch.setattr(users, "verify_password", counting_verify)
    with _client(web) as http:
        token = _login_token(http)
        cookie = http.cookies["nf_login_csrf"]
    n = 40
    barrier = threading.Barrier(n)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def attempt() -> None:
        with httpx.Client(
            base_url=web.url, timeout=120, cookies={"nf_login_csrf": cookie}
        ) as client:
            barrier.wait()
            r = client.post(
                "/login",
                data={"username": "mallory-target", "password": "wrong!", "csrf_token": token},
            )
            with lock:
                answers.append((r.status_code, r.text))

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(answers) == n
    wrong = [a for a in answers if a[0] == 401 and "Wrong username or password." in a[1]]
    limited = [a for a in answers if a[0] == 429 and "Too many failed sign-ins" in a[1]]
    assert len(wrong) == ATTEMPTS and len(limited) == n - ATTEMPTS
    assert len(checked) == ATTEMPTS  # passwords actually verified

    with httpx.Client(base_url=web.url, cookies={"nf_login_csrf": cookie}) as http:
        r = http.post(  # even the right password now waits
            "/login",
            data={"username": "mallory-target", "password": PASSWORD, "csrf_token": token},
        )
        assert r.status_code == 429
    assert len(checked) == ATTEMPTS


def test_successful_sign_in_does_not_use_up_attempts(web: Web) -> None:
    for _ in range(2 * ATTEMPTS):  # each success gives its reserved attempt back
        with _signed_in(web, REVIEWER):
            pass
    with _client(web) as http:
        token = _login_token(http)
        for _ in range(ATTEMPTS):
            r = http.post(
                "/login", data={"username": REVIEWER, "password": "nope", "csrf_token": token}
            )
            assert r.status_code == 401
        r = http.post("/login", data={"username": REVIEWER, "password": "no", "csrf_token": token})
        assert r.status_code == 429


def test_psql_takes_sql_on_stdin_against_the_real_cluster(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.core.errors import StackError
    from pipeline.stack import postgres

    seen: list[tuple[list[str], object]] = []
    real_run_as = postgres.run_as

    def recording(user: str | None, argv: list[str], **kwargs: Any) -> Any:
        seen.append((list(argv), kwargs.get("input")))
        return real_run_as(user, argv, **kwargs)

    monkeypatch.setattr(postgres, "run_as", recording)
    assert postgres._psql(stack, "SELECT 1") == "1"
    secret = "s3cr3t-'quoted'-pw"
    escaped = secret.replace("'", "''")
    with pytest.raises(StackError) as err:  # the role does not exist: psql fails
        postgres._psql(
            stack,
            f"ALTER ROLE \"nf_no_such_role\" PASSWORD '{escaped}' BOGUS",
            secret=secret,
        )
    assert secret not in str(err.value) and escaped not in str(err.value)
    assert all(secret not in a and escaped not in a for argv, _ in seen for a in argv)
    assert escaped in str(seen[-1][1])  # the statement went on stdin
