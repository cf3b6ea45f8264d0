"""`newsflow web-bench`: review-page server time with a large queue.

In a database of its own (created, migrated, dropped afterwards) it queues ``items`` review
items, serves the real app with uvicorn on loopback, signs in and then works the queue like
a reviewer: GET /review (claims the next item) and POST its label, ``requests`` times. The
server time of each response comes from its ``Server-Timing`` header.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine

from pipeline.core.db.scratch import create_database, drop_database
from pipeline.core.settings import Settings
from pipeline.stack.processes import free_port


@dataclasses.dataclass
class WebBenchResult:
    items: int
    requests: int
    seed_seconds: float
    review_get_ms: dict[str, float]
    label_post_ms: dict[str, float]
    client_get_ms: dict[str, float]
    target_p95_ms: float = 100.0

    @property
    def ok(self) -> bool:
        return self.review_get_ms["p95"] <= self.target_p95_ms

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def _summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))]

    return {
        "n": float(len(s)),
        "mean": statistics.fmean(s),
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "max": s[-1],
    }


def _server_ms(headers: Any) -> float:
    m = re.search(r"dur=([0-9.]+)", headers.get("server-timing", ""))
    if not m:
        raise RuntimeError("response has no Server-Timing header")
    return float(m.group(1))


def run_web_bench(
    settings: Settings,
    *,
    items: int = 100_000,
    requests: int = 300,
    keep: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> WebBenchResult:
    import httpx
    import uvicorn

    from monitoring.web.app import create_app
    from monitoring.web.seed import seed_review_items
    from monitoring.web.users import add_user
    from pipeline.core.db.engine import make_engine
    from pipeline.core.db.migrate import upgrade

    name = f"newsflow_webbench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(settings.database_url("postgres"), isolation_level="AUTOCOMMIT")
    create_database(admin, name)
    bench_settings = settings.model_copy(update={"pg_database": name})
    engine = make_engine(bench_settings, pool_size=8)
    server: uvicorn.Server | None = None
    try:
        upgrade(bench_settings.database_url())
        progress(f"queueing {items:,} review items")
        t0 = time.perf_counter()
        seed_review_items(engine, items, prefix="bench")
        seed_s = time.perf_counter() - t0
        password = uuid.uuid4().hex
        add_user(engine, "bench-reviewer", password, "reviewer")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(bench_settings, engine=engine),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        gets: list[float] = []
        posts: list[float] = []
        client_gets: list[float] = []
        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as http:
            form = http.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf, "login form without CSRF token"
            r = http.post(
                "/login",
                data={"username": "bench-reviewer", "password": password, "csrf_token": csrf[1]},
            )
            if r.status_code != 303:
                raise RuntimeError(f"sign-in failed: HTTP {r.status_code}")
            progress(f"working the queue: {requests} review pages")
            for i in range(requests + 10):
                c0 = time.perf_counter()
                page = http.get("/review")
                client_ms = (time.perf_counter() - c0) * 1000
                if page.status_code != 200:
                    raise RuntimeError(f"/review answered HTTP {page.status_code}")
                item = re.search(r'action="/review/(\d+)/label"', page.text)
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                label = re.search(r'name="label" value="([^"]+)"', page.text)
                if not (item and token and label):
                    raise RuntimeError("the review page shows no item")
                done = http.post(
                    f"/review/{item[1]}/label",
                    data={"label": label[1], "csrf_token": token[1]},
                )
                if done.status_code != 303:
                    raise RuntimeError(f"labelling answered HTTP {done.status_code}")
                if i >= 10:  # the first requests warm caches and the pool
                    gets.append(_server_ms(page.headers))
                    posts.append(_server_ms(done.headers))
                    client_gets.append(client_ms)
        return WebBenchResult(
            items=items,
            requests=requests,
            seed_seconds=round(seed_s, 2),
            review_get_ms=_summary(gets),
            label_post_ms=_summary(posts),
            client_get_ms=_summary(client_gets),
        )
    finally:
        if server is not None:
            server.should_exit = True
            time.sleep(0.3)
        engine.dispose()
        if not keep:
            drop_database(admin, name)
        admin.dispose()
