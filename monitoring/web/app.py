"""`newsflow web`: the FastAPI app. Pages are rendered on the server with Jinja2
(autoescaping on: article text is untrusted and is never rendered as HTML).

Security: `/healthz` and `/login` are open, everything else needs a session cookie
(HttpOnly, SameSite=Lax, Secure when configured); each session has a CSRF token that every
POST must carry; failed logins are rate limited; on-call pages need the admin role (the
Emerging topics page may be viewed by reviewers, its forms are admin-only); responses
carry a strict Content-Security-Policy (scripts only from this origin, no inline script).
Request bodies are capped before they are parsed (64 KiB for forms, 20 MiB for the Label
Studio upload), and routes that need a session check it before they read the body.

Layout: this module builds the app (context, middleware, error pages); the routes live in
``routes/`` (one router per area) and share the dependencies in ``deps``.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine

from monitoring.status import OutsideCache
from monitoring.web import review_queue
from monitoring.web.deps import Denied, NeedLogin, WebContext
from monitoring.web.limits import MAX_FORM_BYTES, BodyLimit
from monitoring.web.metrics import WebMetrics, build_web_metrics, queue_budget
from monitoring.web.routes import alerts, auth, health, labelstudio, oncall, review, topics
from monitoring.web.security import LoginLimiter
from pipeline.core.settings import Settings

HERE = Path(__file__).parent
MAX_IMPORT_BYTES = 20 * 1024 * 1024  # the Label Studio file; its request may add 64 KiB
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    max_form_bytes: int = MAX_FORM_BYTES,
    max_upload_bytes: int = MAX_IMPORT_BYTES,
    metrics: WebMetrics | None = None,
) -> FastAPI:
    """The app; ``metrics``: its Prometheus metrics (default: a fresh registry counting the
    queue in this app's database), served apart by ``metrics.serve_web_metrics``."""
    from pipeline.core.db import reviews
    from pipeline.core.db.engine import make_engine

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html", "xml"], default=True),
    )
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.1f}%"
    env.filters["num"] = lambda v, d=3: "-" if v is None else f"{float(v):.{d}f}"
    env.filters["ms"] = lambda v: dt.datetime.fromtimestamp(v / 1000, dt.UTC).strftime(
        "%Y-%m-%d %H:%M"
    )
    env.filters["when"] = lambda v: "-" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    db = engine or make_engine(settings, pool_size=8, max_overflow=8)
    ctx = WebContext(
        settings=settings,
        db=db,
        env=env,
        limiter=LoginLimiter(settings.web_login_attempts, settings.web_login_window_s),
        ip_limiter=LoginLimiter(4 * settings.web_login_attempts, settings.web_login_window_s),
        rng=random.Random(),
        reports_root=settings.reports_path().resolve(),
        max_upload_bytes=max_upload_bytes,
        metrics=metrics
        or build_web_metrics(
            review_budget=queue_budget(settings),
            count_open=lambda: reviews.pending_review_count(db),
        ),
        outside=OutsideCache(settings),
    )

    app = FastAPI(title="newsflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    routers = (health, auth, review, oncall, alerts, labelstudio, topics)
    for module in routers:
        app.include_router(module.router)

    # Inner: cap bodies before any route parses them. Outer (added last): headers, so the
    # 413 carries them too.
    app.add_middleware(
        BodyLimit,
        default=max_form_bytes,
        per_path={"/labelstudio/import": max_upload_bytes + 64 * 1024},
        refuse=lambda code, message: ctx.page("error.html", code, message=message),
    )

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={ms:.2f}"
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path != "/healthz" and not request.url.path.startswith("/static"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(NeedLogin)
    async def to_login(request: Request, _: NeedLogin) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            return ctx.page("error.html", 401, message="Sign in first.")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        return ctx.page("error.html", exc.status, message=exc.message)

    @app.exception_handler(review_queue.UnknownLabel)
    async def unknown_label(request: Request, exc: review_queue.UnknownLabel) -> Response:
        return ctx.page("error.html", 422, message=str(exc), back="/review")

    @app.exception_handler(review_queue.ReviewError)
    async def review_conflict(request: Request, exc: review_queue.ReviewError) -> Response:
        return ctx.page("error.html", 409, message=str(exc), back="/review")

    return app
