"""Server time of on-call and review pages, the app in process (``TestClient``): signs in
as a new admin and GETs each path, reading the ``Server-Timing`` header the app sets.
Used by ``newsflow db bench-retention`` on its scratch database."""

from __future__ import annotations

import re
import statistics
import uuid
from collections.abc import Sequence

from sqlalchemy import Engine

from pipeline.core.settings import Settings

PAGES = ("/", "/dashboard", "/drift", "/models", "/review")


def _summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "n": float(len(s)),
        "p50": s[len(s) // 2],
        "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
        "max": s[-1],
        "mean": statistics.fmean(s),
    }


def time_pages(
    settings: Settings, engine: Engine, *, paths: Sequence[str] = PAGES, repeats: int = 20
) -> dict[str, dict[str, float]]:
    """Per path: server ms (p50, p95, max) over ``repeats`` GETs after 3 warm-up GETs.
    ``/`` is the redirect itself (not followed)."""
    from fastapi.testclient import TestClient

    from monitoring.web.app import create_app
    from monitoring.web.users import add_user

    password = uuid.uuid4().hex
    name = f"bench-{uuid.uuid4().hex[:8]}"
    add_user(engine, name, password, "admin")
    out: dict[str, dict[str, float]] = {}
    with TestClient(create_app(settings, engine=engine)) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        if token is None:
            raise RuntimeError("the login page has no CSRF token")
        signed = http.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token[1]},
            follow_redirects=False,
        )
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: HTTP {signed.status_code}")
        for path in paths:
            times = []
            for i in range(repeats + 3):
                page = http.get(path, follow_redirects=False)
                if page.status_code >= 400:
                    raise RuntimeError(f"{path} answered HTTP {page.status_code}")
                m = re.search(r"dur=([0-9.]+)", page.headers.get("server-timing", ""))
                if m is None:
                    raise RuntimeError(f"{path}: no Server-Timing header")
                if i >= 3:
                    times.append(float(m[1]))
            out[path] = _summary(times)
    return out
