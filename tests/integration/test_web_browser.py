"""The web app in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright),
served by `newsflow web` as a child process against a real Postgres database.

Screenshots are kept under test-artifacts/browser/ (NEWSFLOW_TEST_ARTIFACTS overrides)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from monitoring.web.seed import NEWSGROUPS_LABELS, seed_review_items, shuffle_probabilities
from monitoring.web.users import add_user
from pipeline.core.db.scratch import drop_database
from pipeline.core.settings import Settings
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("NEWSFLOW_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("NEWSFLOW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
PAYLOAD = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
REVIEWER, ADMIN, PASSWORD = "rita", "oscar", "correct horse battery"
NG_MODEL = "ng20-1"


@dataclass(frozen=True)
class Web:
    url: str
    settings: Settings
    engine: object
    drift_run: int


def _wait_healthy(url: str, proc, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"newsflow web exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"newsflow web did not become healthy: {log.read_text()[-2000:]}")


def _drift_run_with_report(settings: Settings, engine) -> int:  # type: ignore[no-untyped-def]
    """A real drift run: compare() on a shifted window, a real Evidently report, record()."""
    import random

    from monitoring.drift import Window, compare, evidently_report, record
    from pipeline.core.model_folder import ModelMetadata, ReferenceDistribution

    rng = random.Random(3)
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    meta = ModelMetadata(
        version="seed-1",
        labels=labels,
        reference=ReferenceDistribution(
            confidences=[min(1.0, 0.6 + 0.4 * rng.random()) for _ in range(600)],
            topic_mix={t: 0.25 for t in labels},
        ),
    )
    window = Window(
        [0.3 + 0.4 * rng.random() for _ in range(600)], [rng.choice(labels[:2]) for _ in range(600)]
    )
    result = compare(meta, window, bins=10, warn=0.1, drift=0.25, min_window=100)
    path = settings.reports_path() / "drift-browser-test.html"
    result.psi_evidently = evidently_report(meta, window, path)
    result.report_path = str(path)
    return record(engine, result, dt.datetime.now(dt.UTC))


@contextlib.contextmanager
def _serve(stack: Settings, home: Path, seed: Callable[[Settings, Engine], int]) -> Iterator[Web]:
    """`newsflow web` as a child process on a database of its own, filled by ``seed``
    (which returns the drift run to show, or 0)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium")
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.migrate import upgrade
    from pipeline.worker_process import start_command, stop_process

    name = f"nf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(stack.database_url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    port = free_port()
    settings = stack.model_copy(
        update={
            "pg_database": name,
            "home": home,
            "web_port": port,
            "review_second_share": 0.0,
            "web_login_attempts": 3,
        }
    )
    upgrade(settings.database_url())
    engine = make_engine(settings)
    run_id = seed(settings, engine)
    add_user(engine, REVIEWER, PASSWORD, "reviewer")
    add_user(engine, ADMIN, PASSWORD, "admin")
    log = home / "web.log"
    proc = start_command(settings, ["web", "--port", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield Web(url, settings, engine, run_id)
    finally:
        stop_process(proc)
        engine.dispose()
        drop_database(admin, name)
        admin.dispose()


def _seed_news(settings: Settings, engine: Engine) -> int:
    seed_review_items(engine, 12)
    with engine.begin() as conn:  # the article with a script payload is reviewed first
        conn.execute(
            text("UPDATE articles SET title = :t, body = :b WHERE id = 'seed-1'"),
            {"t": f"Headline {PAYLOAD}", "b": f"Body {PAYLOAD} end"},
        )
        conn.execute(text("UPDATE review_items SET priority = -1 WHERE article_id = 'seed-1'"))
    return _drift_run_with_report(settings, engine)


def _seed_newsgroups(settings: Settings, engine: Engine) -> int:
    seed_review_items(engine, 6, prefix="ng", model_version=NG_MODEL, labels=NEWSGROUPS_LABELS)
    shuffle_probabilities(engine, model_version=NG_MODEL, seed=11)
    return 0


@pytest.fixture(scope="module")
def web(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The app on a 4-topic model's queue (AG News labels), with one drift run."""
    with _serve(stack, tmp_path_factory.mktemp("web-home"), _seed_news) as served:
        yield served


@pytest.fixture(scope="module")
def web_ng(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The app on a 20-topic model's queue (20 Newsgroups labels)."""
    with _serve(stack, tmp_path_factory.mktemp("web-ng-home"), _seed_newsgroups) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _login(browser, web: Web, user: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{web.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def test_anonymous_request_goes_to_login(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{web.url}/drift")
    assert page.url.startswith(f"{web.url}/login?next=")
    assert page.locator("input[name=password]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    page.close()


def test_script_payload_is_shown_as_text(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    dialogs: list[str] = []
    context, page = _login(browser, web, REVIEWER)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{web.url}/review")
    assert PAYLOAD in page.inner_text("#body")  # the markup is visible as text
    assert PAYLOAD in page.inner_text("#title")
    assert page.locator("#body script, #body img").count() == 0
    assert page.evaluate("window.__pwned") is None and not dialogs
    csp = page.request.get(f"{web.url}/review").headers["content-security-policy"]
    assert "script-src 'self'" in csp
    page.screenshot(path=str(ARTIFACTS / "review-payload.png"), full_page=True)
    context.close()


def test_label_five_items_by_keyboard(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web, REVIEWER)
    assert page.url == f"{web.url}/review"
    seen: list[tuple[int, str]] = []
    for key in ["1", "2", "1", "3", "0"]:
        item = int(page.get_attribute("#task", "data-item") or 0)
        label = page.get_attribute(f'button[data-key="{key}"]', "value") or ""
        with page.expect_navigation():
            page.keyboard.press(key)
        seen.append((item, label))
    assert len({i for i, _ in seen}) == 5
    page.screenshot(path=str(ARTIFACTS / "review-after-5.png"), full_page=True)
    assert page.inner_text("#done-today") == "5"
    with web.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            text(
                "SELECT id, label FROM review_items WHERE reviewer = :u AND status = 'done' "
                "ORDER BY labelled_at"
            ),
            {"u": REVIEWER},
        ).all()
    assert [(int(r[0]), r[1]) for r in rows] == seen
    assert seen[-1][1] == "__none__"
    context.close()


def test_post_without_csrf_token_is_refused(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web, REVIEWER)
    page.goto(f"{web.url}/review")
    item = page.get_attribute("#task", "data-item")
    for form in ({"label": "World"}, {"label": "World", "csrf_token": "forged"}):
        r = page.request.post(f"{web.url}/review/{item}/label", form=form, max_redirects=0)
        assert r.status == 403 and "CSRF" in r.text()
    with web.engine.connect() as conn:  # type: ignore[attr-defined]
        status = conn.execute(
            text("SELECT status FROM review_items WHERE id = :i"), {"i": int(item or 0)}
        ).scalar_one()
    assert status == "pending"
    context.close()


def test_reviewer_cannot_open_admin_pages(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web, REVIEWER)
    for path in ("/dashboard", "/drift", "/models", "/labelstudio", "/labelstudio/export.json"):
        response = page.goto(f"{web.url}{path}")
        assert response is not None and response.status == 403, path
    page.screenshot(path=str(ARTIFACTS / "reviewer-denied.png"))
    context.close()


def test_admin_opens_a_drift_report(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    run_id = web.drift_run
    context, page = _login(browser, web, ADMIN)
    assert page.url == f"{web.url}/dashboard"
    assert page.inner_text("#last-drift") == "drift"
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.goto(f"{web.url}/drift")
    page.click(f"a[href='/drift/{run_id}']")
    page.wait_for_load_state()
    assert page.inner_text("#level") == "drift"
    assert page.locator("svg.chart rect").count() >= 10  # reference vs current histogram
    page.screenshot(path=str(ARTIFACTS / "drift-run.png"), full_page=True)
    with page.expect_navigation():
        page.click("#report-link")
    assert page.url.endswith(f"/drift/{run_id}/report")
    page.wait_for_load_state("networkidle")
    assert "confidence" in page.content()
    page.screenshot(path=str(ARTIFACTS / "evidently-report.png"), full_page=True)
    page.goto(f"{web.url}/models")
    assert page.locator("#events").count() == 1
    context.close()


def test_login_is_rate_limited(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    add_user(web.engine, "mallory-target", PASSWORD, "reviewer")  # type: ignore[arg-type]
    statuses = []
    for _ in range(4):
        context, page = _login(browser, web, "mallory-target", "not the password")
        statuses.append(page.inner_text("#error"))
        context.close()
    assert statuses[:3] == ["Wrong username or password."] * 3
    assert statuses[3].startswith("Too many failed sign-ins")
    context, page = _login(browser, web, "mallory-target")  # even the right password waits
    assert "Too many" in page.inner_text("#error")
    context.close()


def test_label_studio_export_and_import_pages(web: Web, browser) -> None:  # type: ignore[no-untyped-def]
    import json

    context, page = _login(browser, web, ADMIN)
    exported = page.request.get(f"{web.url}/labelstudio/export.json")
    assert exported.status == 200
    tasks = json.loads(exported.body())
    assert tasks and all("review_item_id" in t["data"] for t in tasks)
    task = tasks[-1]
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
            "completed_by": 42,
        }
    ]
    page.goto(f"{web.url}/labelstudio")
    page.set_input_files(
        "input[name=file]",
        files=[
            {
                "name": "ls.json",
                "mimeType": "application/json",
                "buffer": json.dumps([task, {"id": 10**9, "data": {}}]).encode(),
            }
        ],
    )
    with page.expect_navigation():
        page.click("form[action='/labelstudio/import'] button")
    assert page.inner_text("#applied") == "1 labels applied, 1 tasks rejected."
    page.screenshot(path=str(ARTIFACTS / "labelstudio-import.png"), full_page=True)
    with web.engine.connect() as conn:  # type: ignore[attr-defined]
        label, reviewer = conn.execute(
            text("SELECT label, reviewer FROM review_items WHERE id = :i"), {"i": task["id"]}
        ).one()
    assert (label, reviewer) == ("Business", "labelstudio:42")
    bad = page.request.post(
        f"{web.url}/labelstudio/import",
        multipart={
            "file": {"name": "x.json", "mimeType": "application/json", "buffer": b"{not json"}
        },
        max_redirects=0,
    )
    assert bad.status == 403  # no CSRF token: refused before the file is read
    context.close()


def _ranking(web: Web, item: int) -> tuple[list[str], list[str]]:
    """The item's model labels in the model's order, and ranked by the item's probabilities."""
    with web.engine.connect() as conn:  # type: ignore[attr-defined]
        labels, probs = conn.execute(
            text(
                "SELECT m.labels, p.probabilities FROM review_items r "
                "JOIN predictions p ON p.id = r.prediction_id "
                "JOIN model_labels m ON m.model_version = p.model_version WHERE r.id = :i"
            ),
            {"i": item},
        ).one()
    order = sorted(range(len(labels)), key=lambda i: -probs[i])
    return list(labels), [labels[i] for i in order]


def _stored(web: Web, item: int) -> tuple[str, str | None, str | None, str | None]:
    with web.engine.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            text("SELECT status, label, reviewer, note FROM review_items WHERE id = :i"),
            {"i": item},
        ).one()
    return row[0], row[1], row[2], row[3]


def _current(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("#task", "data-item") or 0)


def _shown_options(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        o.get_attribute("data-label") or ""
        for o in page.locator("#topic-options [role=option]:not([hidden])").all()
    ]


def test_20_topics_label_by_type_ahead_with_the_keyboard_only(web_ng: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web_ng, REVIEWER)
    item = _current(page)
    labels, ranked = _ranking(web_ng, item)
    assert len(labels) == 20
    keyed = [b.get_attribute("value") for b in page.locator(".labels button[data-key]").all()]
    assert keyed == [*ranked[:9], "__none__"]  # the top 9, most probable first; 0 = none
    others = [t for t in labels if t not in ranked[:9]]
    assert _shown_options(page) == others and page.is_hidden("#topic-options")

    # The last topic without a key in the largest group of such topics: typing the group's
    # name leaves several matches, and the arrows are needed to reach it.
    def group(t: str) -> str:
        return t.split(".")[0]

    biggest = max(others, key=lambda t: sum(group(o) == group(t) for o in others))
    target = [t for t in others if group(t) == group(biggest)][-1]
    fragment = group(target)

    page.keyboard.press("/")  # jumps to the type-ahead
    assert page.evaluate("document.activeElement.id") == "topic-search"
    page.keyboard.type("1s0")  # typed, not shortcuts
    page.wait_for_timeout(300)
    assert _current(page) == item and _stored(web_ng, item)[0] == "pending"
    assert _shown_options(page) == []
    for _ in "1s0":
        page.keyboard.press("Backspace")
    page.keyboard.type(fragment)
    shown = _shown_options(page)
    assert len(shown) >= 2 and all(fragment in t for t in shown) and shown[-1] == target
    assert page.get_attribute("#topic-search", "aria-expanded") == "true"
    for _ in range(shown.index(target)):
        page.keyboard.press("ArrowDown")
    active = page.get_attribute("#topic-search", "aria-activedescendant") or ""
    assert page.get_attribute(f"#{active}", "data-label") == target
    assert page.get_attribute(f"#{active}", "aria-selected") == "true"
    page.screenshot(path=str(ARTIFACTS / "review-20-topics-typeahead.png"), full_page=True)
    page.keyboard.press("Enter")  # picks
    assert page.input_value("#topic-search") == target and page.is_hidden("#topic-options")
    assert page.get_attribute("#topic-submit", "value") == target
    assert _stored(web_ng, item)[0] == "pending"
    with page.expect_navigation():
        page.keyboard.press("Enter")  # labels
    assert _current(page) != item
    assert _stored(web_ng, item) == ("done", target, REVIEWER, None)
    context.close()


def test_20_topics_label_by_number_key(web_ng: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web_ng, REVIEWER)
    item = _current(page)
    _, ranked = _ranking(web_ng, item)
    assert page.get_attribute('button[data-key="4"]', "value") == ranked[3]
    assert page.locator('button[data-key="9"]').count() == 1
    with page.expect_navigation():
        page.keyboard.press("4")
    assert _stored(web_ng, item) == ("done", ranked[3], REVIEWER, None)
    context.close()


def test_20_topics_tab_picks_and_the_note_keeps_keys_quiet(web_ng: Web, browser) -> None:  # type: ignore[no-untyped-def]
    context, page = _login(browser, web_ng, REVIEWER)
    item = _current(page)
    page.keyboard.press("/")
    page.keyboard.type("o")
    first = _shown_options(page)[0]
    page.keyboard.press("Tab")  # picks the highlighted topic and moves to its button
    assert page.evaluate("document.activeElement.id") == "topic-submit"
    assert page.get_attribute("#topic-submit", "value") == first
    page.keyboard.press("Tab")  # on to the note
    assert page.evaluate("document.activeElement.id") == "note"
    page.keyboard.type("0 s 1 new topic: gardening")
    page.keyboard.press("Enter")  # does not submit the form (no accidental label)
    page.wait_for_timeout(300)
    assert _current(page) == item and _stored(web_ng, item)[0] == "pending"
    page.keyboard.press("Escape")  # leaves the note; the keys work again
    with page.expect_navigation():
        page.keyboard.press("0")
    assert _stored(web_ng, item) == ("done", "__none__", REVIEWER, "0 s 1 new topic: gardening")
    context.close()
