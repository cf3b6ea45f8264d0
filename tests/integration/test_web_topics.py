"""The "Emerging topics" page against real Postgres: the app served by uvicorn in a thread
(test_web_hardening's fixture) and, once, `newsflow web` in headless Chromium. Candidates are
stored with save_discovery, so no MiniLM is needed."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from monitoring.topics.discovery import Candidate
from monitoring.topics.onboarding import save_discovery
from pipeline.core.settings import Settings
from tests.integration import test_web_browser as browser_tests
from tests.integration import test_web_hardening as hardening

pytestmark = pytest.mark.integration

web = hardening.web  # seeded review items (AG News labels in model_labels), rita and oscar
Web = hardening.Web
REVIEWER, ADMIN = hardening.REVIEWER, hardening.ADMIN
TITLE_PAYLOAD = "Launch <script>window.__pwned = 1</script>"


def _candidate(members: list[str], terms: list[str], *, size: int, separation: float) -> Candidate:
    return Candidate(
        members=members,
        size=size,
        separation=separation,
        nearest_topic="Sci/Tech",
        cohesion=0.71,
        none_of_these=2,
        terms=terms,
        examples=[TITLE_PAYLOAD, "Probe reaches orbit"],
    )


def _discover(engine: Engine) -> list[int]:
    """Two ranked candidates over the seeded articles; earlier open ones are superseded."""
    return save_discovery(
        engine,
        [
            _candidate(["seed-1", "seed-2", "seed-3"], ["rocket", "orbit"], size=3, separation=0.6),
            _candidate(["seed-4", "seed-5"], ["vaccine", "trial"], size=2, separation=0.4),
        ],
        model_version="seed-1",
    )


def _token(http: httpx.Client) -> str:
    page = http.get("/topics")
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


def _state(engine: Engine) -> tuple[list[tuple[str, str, str]], list[tuple[int, str]], int]:
    """(topics, candidates' (id, status), onboarding review items): what a refusal must keep."""
    with engine.connect() as conn:
        topics = [
            (str(r[0]), str(r[1]), str(r[2]))
            for r in conn.execute(text("SELECT name, status, created_by FROM topics ORDER BY 1"))
        ]
        cands = [
            (int(r[0]), str(r[1]))
            for r in conn.execute(text("SELECT id, status FROM topic_candidates ORDER BY id"))
        ]
        queued = conn.execute(
            text("SELECT count(*) FROM review_items WHERE suggested_label IS NOT NULL")
        ).scalar_one()
    return topics, cands, int(queued)


def test_page_lists_ranked_candidates_and_forms_only_for_admins(web: Web) -> None:
    first, second = _discover(web.engine)
    with hardening._signed_in(web, ADMIN) as http:
        page = http.get("/topics")
    assert page.status_code == 200
    body = page.text
    assert 'href="/topics"' in body  # in the navigation
    assert body.index(f'id="candidate-{first}"') < body.index(f'id="candidate-{second}"')
    assert "rocket, orbit" in body and "vaccine, trial" in body
    assert TITLE_PAYLOAD not in body and "Launch &lt;script&gt;" in body  # escaped
    assert f'action="/topics/candidates/{first}/accept"' in body
    assert f'action="/topics/candidates/{second}/dismiss"' in body
    assert 'maxlength="64"' in body

    with hardening._signed_in(web, REVIEWER) as http:
        page = http.get("/topics")
    assert page.status_code == 200
    assert f'id="candidate-{first}"' in page.text and "rocket, orbit" in page.text
    assert "/accept" not in page.text and "/dismiss" not in page.text
    assert 'action="/topics/discover"' not in page.text


def test_admin_names_a_candidate(web: Web, db: Settings) -> None:
    first, second = _discover(web.engine)
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        r = http.post(
            f"/topics/candidates/{first}/accept", data={"name": "  Space  ", "csrf_token": token}
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"].startswith(f"/topics?accepted={first}&queued=3")
        page = http.get(r.headers["location"])
    assert "is now the topic &#39;Space&#39;; 3 articles were queued" in page.text
    assert f'id="candidate-{first}"' not in page.text  # no longer open
    assert f'id="candidate-{second}"' in page.text
    assert re.search(r'data-topic="Space">.*?0 / ' + str(db.topic_min_labels), page.text)

    with web.engine.connect() as conn:
        topic = conn.execute(
            text("SELECT name, status, created_by, candidate_id FROM topics")
        ).one()
        items = conn.execute(
            text(
                "SELECT article_id, status, reason, suggested_label FROM review_items "
                "WHERE suggested_label IS NOT NULL ORDER BY article_id"
            )
        ).all()
        cand = conn.execute(
            text("SELECT status, name, decided_by FROM topic_candidates WHERE id = :i"),
            {"i": first},
        ).one()
    assert tuple(topic) == ("Space", "onboarding", ADMIN, first)
    assert [tuple(i) for i in items] == [
        (f"seed-{n}", "pending", "onboarding", "Space") for n in (1, 2, 3)
    ]
    assert tuple(cand) == ("accepted", "Space", ADMIN)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("x" * 65, "at most 64 characters"),
        ("bad\x07name", "control or invisible"),
        ("World", "exists already"),  # a label of the serving model
        ("__none__", "reserved"),
        ("sPaCe", "exists already"),  # an onboarded topic, whatever the case
    ],
)
def test_bad_names_are_422_and_change_nothing(web: Web, name: str, message: str) -> None:
    space, other = _discover(web.engine)
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        ok = http.post(
            f"/topics/candidates/{space}/accept", data={"name": "Space", "csrf_token": token}
        )
        assert ok.status_code == 303
        before = _state(web.engine)
        r = http.post(
            f"/topics/candidates/{other}/accept", data={"name": name, "csrf_token": token}
        )
    assert r.status_code == 422, r.text
    assert message in r.text and 'href="/topics"' in r.text
    assert _state(web.engine) == before


def test_deciding_a_candidate_that_is_no_longer_open_is_409(web: Web) -> None:
    old, _ = _discover(web.engine)
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        dismissed = http.post(f"/topics/candidates/{old}/dismiss", data={"csrf_token": token})
        assert dismissed.status_code == 303
        assert dismissed.headers["location"] == f"/topics?dismissed={old}"
        again = http.post(
            f"/topics/candidates/{old}/accept", data={"name": "X", "csrf_token": token}
        )
        assert again.status_code == 409 and "it was dismissed" in again.text

        _, stale = _discover(web.engine)  # a candidate of the first discovery
        newer = _discover(web.engine)  # supersedes it
        before = _state(web.engine)
        r = http.post(
            f"/topics/candidates/{stale}/accept", data={"name": "Health", "csrf_token": token}
        )
        assert r.status_code == 409, r.text
        assert "a newer discovery replaced it" in r.text
        gone = http.post(f"/topics/candidates/{stale}/dismiss", data={"csrf_token": token})
        assert gone.status_code == 409
        missing = http.post(
            f"/topics/candidates/{10**9}/accept", data={"name": "Y", "csrf_token": token}
        )
        assert missing.status_code == 409 and "does not exist" in missing.text
    assert _state(web.engine) == before
    assert all(s == "open" for i, s in before[1] if i in newer)


def test_reviewer_cannot_decide(web: Web) -> None:
    first, _ = _discover(web.engine)
    before = _state(web.engine)
    with hardening._signed_in(web, REVIEWER) as http:
        token = _token(http)  # the reviewer's own, valid token
        for path, data in [
            (f"/topics/candidates/{first}/accept", {"name": "Space", "csrf_token": token}),
            (f"/topics/candidates/{first}/dismiss", {"csrf_token": token}),
            ("/topics/discover", {"csrf_token": token}),
        ]:
            r = http.post(path, data=data)
            assert r.status_code == 403, path
            assert "admin role" in r.text
    assert _state(web.engine) == before


def test_missing_or_wrong_csrf_token_is_403(web: Web) -> None:
    first, _ = _discover(web.engine)
    before = _state(web.engine)
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        for form in ({"name": "Space"}, {"name": "Space", "csrf_token": token[::-1]}):
            r = http.post(f"/topics/candidates/{first}/accept", data=form)
            assert r.status_code == 403 and "CSRF" in r.text
        r = http.post(f"/topics/candidates/{first}/dismiss", data={})
        assert r.status_code == 403 and "CSRF" in r.text
    with hardening._client(web) as anonymous:
        r = anonymous.post(f"/topics/candidates/{first}/accept", data={"name": "Space"})
        assert r.status_code == 401
        assert anonymous.get("/topics").status_code == 303  # to the login page
    assert _state(web.engine) == before


def test_discovery_runs_in_the_background(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring.topics import onboarding, service

    calls: list[str] = []

    def fake_discovery(settings: Settings, engine: Engine) -> list[onboarding.StoredCandidate]:
        calls.append(settings.pg_database)
        time.sleep(0.5)
        _discover(engine)
        return onboarding.candidates(engine)

    monkeypatch.setattr(service, "run_discovery", fake_discovery)
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        r = http.post("/topics/discover", data={"csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/topics?discovery=started"
        busy = http.post("/topics/discover", data={"csrf_token": token})
        assert busy.headers["location"] == "/topics?discovery=running"
        deadline = time.monotonic() + 30
        while "2 candidates" not in (page := http.get("/topics")).text:
            assert time.monotonic() < deadline, page.text[:2000]
            time.sleep(0.2)
    assert len(calls) == 1
    assert "rocket, orbit" in page.text


# --- in the browser -------------------------------------------------------------------


def _seed_for_browser(settings: Settings, engine: Engine) -> int:
    from monitoring.web.seed import seed_review_items

    seed_review_items(engine, 8)
    _discover(engine)
    return 0


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    browser_tests.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_tests.CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_admin_names_a_candidate_with_the_keyboard(
    stack: Settings, tmp_path: Path, chromium: object
) -> None:
    with browser_tests._serve(stack, tmp_path, _seed_for_browser) as served:
        context, page = browser_tests._login(chromium, served, ADMIN)
        page.click("a[href='/topics']")
        page.wait_for_load_state()
        first = page.locator("article.candidate").first
        cid = first.get_attribute("data-candidate")
        assert page.evaluate("document.activeElement.id") == f"name-{cid}"  # autofocus
        page.keyboard.type("Spaceflight")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "is now the topic 'Spaceflight'" in page.inner_text("#notice")
        assert page.locator(f"#candidate-{cid}").count() == 0
        assert page.locator('tr[data-topic="Spaceflight"] .status').inner_text() == "onboarding"
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=str(browser_tests.ARTIFACTS / "topics.png"), full_page=True)
        context.close()
        with served.engine.connect() as conn:  # type: ignore[attr-defined]
            queued = conn.execute(
                text("SELECT count(*) FROM review_items WHERE suggested_label = 'Spaceflight'")
            ).scalar_one()
        assert queued == 3


def test_admin_names_near_candidates_as_one_topic_on_the_page(web: Web) -> None:
    first, second = save_discovery(
        web.engine,
        [
            dataclasses.replace(
                _candidate(["seed-1", "seed-2", "seed-3"], ["film"], size=3, separation=0.6),
                near=[(2, 0.74)],
            ),
            dataclasses.replace(
                _candidate(["seed-4", "seed-5"], ["music"], size=2, separation=0.4),
                near=[(1, 0.74)],
            ),
        ],
        model_version="seed-1",
    )
    with hardening._signed_in(web, REVIEWER) as http:
        page = http.get("/topics").text
        assert 'id="merge-form"' not in page and 'name="candidate"' not in page
        assert f'id="near-{first}"' in page  # everyone sees which candidates are near
    with hardening._signed_in(web, ADMIN) as http:
        token = _token(http)
        page = http.get("/topics").text
        assert re.search(
            rf'id="near-{first}">Near <a href="#candidate-{second}">#2</a> \(0.74\)', page
        )
        assert f'value="{first}" form="merge-form"' in page and 'action="/topics/merge"' in page

        r = http.post(
            "/topics/merge",
            data={
                "candidate": [str(first), str(second)],
                "name": "Arts",
                "action": "new",
                "csrf_token": token,
            },
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/topics?accepted={first}&queued=5&merged=2"
        page = http.get(r.headers["location"]).text
        assert "2 candidates are now the topic &#39;Arts&#39;; 5 articles were queued" in page
        assert re.search(rf'data-topic="Arts">.*?#{first}, #{second} \(5 articles\)', page)

        # a later discovery: one of its candidates is added; mixing discoveries is refused
        (newer,) = save_discovery(
            web.engine,
            [_candidate(["seed-6"], ["tv"], size=1, separation=0.5)],
            model_version="seed-1",
        )
        assert 'option value="Arts"' in http.get("/topics").text  # it can take candidates
        before = _state(web.engine)
        mixed = http.post(
            "/topics/merge",
            data={
                "candidate": [str(newer), str(first)],
                "name": "Mixed",
                "action": "new",
                "csrf_token": token,
            },
        )
        assert mixed.status_code == 422 and "different discoveries" in mixed.text
        bad = http.post(
            "/topics/merge",
            data={"candidate": ["1; DROP"], "name": "X", "action": "new", "csrf_token": token},
        )
        assert bad.status_code == 422 and "is not a candidate id" in bad.text
        assert _state(web.engine) == before
        added = http.post(
            "/topics/merge",
            data={"candidate": [str(newer)], "topic": "Arts", "action": "add", "csrf_token": token},
        )
        assert added.status_code == 303, added.text
        page = http.get(added.headers["location"]).text
        assert "1 candidate(s) added to the topic &#39;Arts&#39;; 1 more articles" in page
    with hardening._signed_in(web, REVIEWER) as http:
        r = http.post(
            "/topics/merge",
            data={
                "candidate": [str(newer)],
                "name": "Y",
                "action": "new",
                "csrf_token": _token(http),
            },
        )
        assert r.status_code == 403
