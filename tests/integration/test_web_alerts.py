"""The on-call alerts page against real Postgres (test_web_hardening's app in a thread): an
admin sees the alerts and silences one until a time and lifts it; a bad time changes
nothing; a reviewer gets 403 on the page and on the form."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest

from monitoring.alerts import DRIFT_CONFIDENCE, AlertBook, Condition, DbAlertStore
from pipeline.core.db import alerts as alerts_db
from tests.integration import test_web_hardening as hardening

pytestmark = pytest.mark.integration

web = hardening.web
Web = hardening.Web


def _token(http: httpx.Client) -> str:
    page = http.get("/alerts")
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


def test_admin_silences_and_lifts_an_alert_and_a_reviewer_cannot(web: Web) -> None:
    AlertBook(DbAlertStore(web.engine)).observe(
        Condition(DRIFT_CONFIDENCE, True, "critical", "PSI <b>0.31</b>")
    )
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    with hardening._signed_in(web, hardening.REVIEWER) as http:
        assert http.get("/alerts").status_code == 403
        found = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/review").text)
        assert found
        form = {"csrf_token": found[1], "key": DRIFT_CONFIDENCE, "until": "2099-01-01T00:00"}
        assert http.post("/alerts/silence", data=form).status_code == 403
    state = alerts_db.get_alert(web.engine, key=DRIFT_CONFIDENCE)
    assert state is not None and state.silenced_until is None

    with hardening._signed_in(web, hardening.ADMIN) as http:
        page = http.get("/alerts")
        assert 'data-alert="drift:confidence"' in page.text
        assert "PSI &lt;b&gt;0.31&lt;/b&gt;" in page.text  # escaped
        token = _token(http)
        for bad in ("2001-01-01T00:00", "2099-01-01T00:00", "tomorrow"):
            r = http.post(
                "/alerts/silence", data={"csrf_token": token, "key": DRIFT_CONFIDENCE, "until": bad}
            )
            assert r.status_code == 422, (bad, r.text[:300])
        missing = {"key": DRIFT_CONFIDENCE, "until": until.strftime("%Y-%m-%dT%H:%M")}
        assert http.post("/alerts/silence", data=missing).status_code == 403  # no CSRF token
        r = http.post("/alerts/silence", data={"csrf_token": token, **missing})
        assert r.status_code == 303 and r.headers["location"].startswith("/alerts?silenced=")
        state = alerts_db.get_alert(web.engine, key=DRIFT_CONFIDENCE)
        assert state is not None and (state.silenced_until, state.silenced_by) == (
            until,
            hardening.ADMIN,
        )
        assert "Lift" in http.get("/alerts").text
        r = http.post("/alerts/lift", data={"csrf_token": token, "key": DRIFT_CONFIDENCE})
        assert r.status_code == 303
    state = alerts_db.get_alert(web.engine, key=DRIFT_CONFIDENCE)
    assert state is not None and state.silenced_until is None
