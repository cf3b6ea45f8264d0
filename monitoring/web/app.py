"""`newsflow web`: the FastAPI app. Pages are rendered on the server with Jinja2
(autoescaping on: article text is untrusted and is never rendered as HTML).

Security: `/healthz` and `/login` are open, everything else needs a session cookie
(HttpOnly, SameSite=Lax, Secure when configured); each session has a CSRF token that every
POST must carry; failed logins are rate limited; on-call pages need the admin role; responses
carry a strict Content-Security-Policy (scripts only from this origin, no inline script).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine, text

from monitoring.web import charts, labelstudio, oncall, review_queue
from monitoring.web.security import LoginLimiter, new_token, same_token
from monitoring.web.users import User, authenticate, end_session, session_user, start_session
from pipeline.core.settings import Settings

HERE = Path(__file__).parent
SESSION_COOKIE, LOGIN_CSRF_COOKIE = "nf_session", "nf_login_csrf"
MAX_IMPORT_BYTES = 20 * 1024 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Evidently's report is a self-contained page with inline scripts: it runs sandboxed (an
# opaque origin: no cookies, no access to this app).
REPORT_CSP = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:"


class NeedLogin(Exception):
    pass


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass(frozen=True)
class SignedIn:
    user: User
    csrf: str
    token: str


def _safe_next(target: str | None) -> str:
    """Only a local path (no scheme, no //host) may follow a login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    from pipeline.core.db.engine import make_engine

    db = engine or make_engine(settings, pool_size=8, max_overflow=8)
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
    # Failed sign-ins: per (address, username), and per address across usernames.
    limiter = LoginLimiter(settings.web_login_attempts, settings.web_login_window_s)
    ip_limiter = LoginLimiter(4 * settings.web_login_attempts, settings.web_login_window_s)
    rng = random.Random()
    reports_root = settings.reports_path().resolve()

    app = FastAPI(title="newsflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(
        name: str, code: int = 200, signed: SignedIn | None = None, **ctx: Any
    ) -> HTMLResponse:
        body = env.get_template(name).render(
            user=signed.user if signed else None, csrf=signed.csrf if signed else "", **ctx
        )
        return HTMLResponse(body, status_code=code)

    def signed_in(request: Request, *, admin: bool = False) -> SignedIn:
        token = request.cookies.get(SESSION_COOKIE)
        found = session_user(db, token) if token else None
        if found is None:
            raise NeedLogin()
        user, csrf = found
        if admin and not user.is_admin:
            raise Denied(403, "This page is for on-call engineers (admin role).")
        return SignedIn(user, csrf, token or "")

    def check_csrf(signed: SignedIn, token: str) -> None:
        if not same_token(token, signed.csrf):
            raise Denied(403, "The form's CSRF token is missing or wrong; reload the page.")

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
            return page("error.html", 401, message="Sign in first.")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> Response:
        return page("error.html", exc.status, message=exc.message)

    @app.exception_handler(review_queue.ReviewError)
    async def review_conflict(request: Request, exc: review_queue.ReviewError) -> Response:
        return page("error.html", 409, message=str(exc), back="/review")

    # Open routes ----------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            with db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "degraded", "database": False}, status_code=503)
        return JSONResponse({"status": "ok", "database": True})

    @app.get("/login")
    def login_form(next: str = "/") -> HTMLResponse:
        token = new_token()
        response = page("login.html", login_csrf=token, next=_safe_next(next))
        _cookie(response, LOGIN_CSRF_COOKIE, token, settings, max_age=3600)
        return response

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf_token: Annotated[str, Form(max_length=128)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            raise Denied(403, "The login form expired or its CSRF token is wrong; reload it.")
        host = request.client.host if request.client else "?"
        key = f"{host}|{username.lower()}"
        wait = max(limiter.blocked(key), ip_limiter.blocked(host))
        if wait > 0:
            limited = page(
                "login.html",
                429,
                login_csrf=csrf_token,
                next=_safe_next(next),
                error=f"Too many failed sign-ins. Try again in {int(wait) + 1} s.",
            )
            limited.headers["Retry-After"] = str(int(wait) + 1)
            return limited
        user = authenticate(db, username, password) if username and password else None
        if user is None:
            limiter.failed(key)
            ip_limiter.failed(host)
            return page(
                "login.html",
                401,
                login_csrf=csrf_token,
                next=_safe_next(next),
                error="Wrong username or password.",
            )
        limiter.succeeded(key)
        token, _ = start_session(db, user, settings.web_session_hours)
        response = RedirectResponse(_safe_next(next), status_code=303)
        _cookie(
            response,
            SESSION_COOKIE,
            token,
            settings,
            max_age=int(settings.web_session_hours * 3600),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    # Signed-in routes -----------------------------------------------------------------
    @app.post("/logout")
    def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        signed = signed_in(request)
        check_csrf(signed, csrf_token)
        end_session(db, signed.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    def home(request: Request) -> Response:
        signed = signed_in(request)
        return RedirectResponse("/dashboard" if signed.user.is_admin else "/review", 303)

    @app.get("/review")
    def review_page(request: Request) -> HTMLResponse:
        signed = signed_in(request)
        task = review_queue.claim_next(
            db, signed.user.username, claim_minutes=settings.review_claim_minutes
        )
        prog = review_queue.progress(db, signed.user.username)
        keys = [(str(i + 1), t) for i, t in enumerate(task.labels[:9])] if task else []
        return page(
            "review.html",
            signed=signed,
            task=task,
            progress=prog,
            keys=keys,
            none_label=review_queue.NONE_LABEL,
        )

    @app.post("/review/{item_id}/label")
    def review_label(
        request: Request,
        item_id: int,
        label: Annotated[str, Form(max_length=128)] = "",
        note: Annotated[str, Form(max_length=500)] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        signed = signed_in(request)
        check_csrf(signed, csrf_token)
        if not label:
            raise Denied(422, "Choose a topic (or 'none of these').")
        review_queue.submit_label(
            db,
            signed.user.username,
            item_id,
            label,
            note=note.strip() or None,
            second_share=settings.review_second_share,
            rng=rng,
        )
        return RedirectResponse("/review", status_code=303)

    @app.post("/review/{item_id}/skip")
    def review_skip(
        request: Request, item_id: int, csrf_token: Annotated[str, Form()] = ""
    ) -> Response:
        signed = signed_in(request)
        check_csrf(signed, csrf_token)
        review_queue.skip(db, signed.user.username, item_id)
        return RedirectResponse("/review", status_code=303)

    # On-call (admin) routes -------------------------------------------------------------
    @app.get("/dashboard")
    def dashboard(request: Request) -> HTMLResponse:
        from monitoring.status import gather

        signed = signed_in(request, admin=True)
        status = gather(settings, db)
        runs = list(reversed(oncall.drift_runs(db, limit=50)))
        return page(
            "dashboard.html",
            signed=signed,
            status=status,
            last_run=runs[-1] if runs else None,
            psi_chart=_psi_chart(runs, settings),
            agreement=review_queue.agreement(db),
        )

    @app.get("/drift")
    def drift_list(request: Request) -> HTMLResponse:
        signed = signed_in(request, admin=True)
        runs = oncall.drift_runs(db, limit=200)
        ordered = list(reversed(runs))
        accuracy = charts.line_chart(
            [
                ("estimated (label-free)", "#2a6fdb", [r["estimated_accuracy"] for r in ordered]),
                ("reviewed", "#1b9e4b", [r["reviewed_accuracy"] for r in ordered]),
            ],
            x_labels=[f"#{r['id']}" for r in ordered],
            title="Accuracy: label-free estimate and reviewed",
            lo=0.0,
            hi=1.0,
        )
        return page(
            "drift_list.html",
            signed=signed,
            runs=runs,
            psi_chart=_psi_chart(ordered, settings),
            accuracy_chart=accuracy,
        )

    @app.get("/drift/{run_id}")
    def drift_detail(request: Request, run_id: int) -> HTMLResponse:
        signed = signed_in(request, admin=True)
        run = oncall.drift_run(db, run_id)
        if run is None:
            raise Denied(404, f"No drift run {run_id}.")
        hist = (run.get("details") or {}).get("histogram")
        chart = None
        if hist:
            edges = [float(e) for e in hist["edges"]]
            names = [f"≤{e:.2f}" for e in edges] + [f">{edges[-1]:.2f}" if edges else "all"]
            chart = charts.bar_pairs(
                names[: len(hist["reference"])],
                ("reference", "#888888", hist["reference"]),
                ("current window", "#d9480f", hist["current"]),
                title="Confidence histogram: share per bin",
            )
        return page(
            "drift_detail.html",
            signed=signed,
            run=run,
            hist_chart=chart,
            has_report=_report_file(run, reports_root) is not None,
        )

    @app.get("/drift/{run_id}/report")
    def drift_report(request: Request, run_id: int) -> Response:
        signed_in(request, admin=True)
        run = oncall.drift_run(db, run_id)
        path = _report_file(run, reports_root) if run else None
        if path is None:
            raise Denied(404, f"Drift run {run_id} has no report file.")
        response = FileResponse(path, media_type="text/html")
        response.headers["Content-Security-Policy"] = REPORT_CSP
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return response

    @app.get("/models")
    def models(request: Request) -> HTMLResponse:
        signed = signed_in(request, admin=True)
        versions: list[Any] = []
        registry_error = None
        try:
            from pipeline.core import registry

            versions = registry.list_versions(settings)
        except Exception as exc:  # the page still shows Postgres' history
            registry_error = str(exc)
        return page(
            "models.html",
            signed=signed,
            versions=versions,
            registry_error=registry_error,
            events=oncall.model_events(db),
            serving=oncall.serving_counts(db),
        )

    @app.get("/labelstudio")
    def labelstudio_page(request: Request) -> HTMLResponse:
        signed = signed_in(request, admin=True)
        return page("labelstudio.html", signed=signed, report=None)

    @app.get("/labelstudio/export.json")
    def labelstudio_export(request: Request, status: str = "pending") -> Response:
        signed_in(request, admin=True)
        if status not in {"pending", "done"}:
            raise Denied(422, "status must be 'pending' or 'done'")
        body = json.dumps(labelstudio.export_tasks(db, status=status), ensure_ascii=False)
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="newsflow-tasks.json"'},
        )

    @app.post("/labelstudio/import")
    def labelstudio_import(
        request: Request,
        file: Annotated[UploadFile, File()],
        csrf_token: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        signed = signed_in(request, admin=True)
        check_csrf(signed, csrf_token)
        raw = file.file.read(MAX_IMPORT_BYTES + 1)
        if len(raw) > MAX_IMPORT_BYTES:
            raise Denied(413, f"The file is over {MAX_IMPORT_BYTES // 2**20} MiB.")
        try:
            tasks = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Denied(422, f"Not a JSON file: {exc}") from None
        report = labelstudio.import_annotations(db, tasks)
        return page("labelstudio.html", signed=signed, report=report)

    return app


def _cookie(response: Response, name: str, value: str, settings: Settings, *, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=settings.web_cookie_secure,
        path="/",
    )


def _report_file(run: dict[str, Any] | None, root: Path) -> Path | None:
    """The run's report, only when it lies inside the reports folder."""
    raw = run.get("report_path") if run else None
    if not raw:
        return None
    path = Path(raw).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _psi_chart(runs: list[dict[str, Any]], settings: Settings) -> str:
    return charts.line_chart(
        [
            ("PSI confidence", "#d9480f", [r["psi_confidence"] for r in runs]),
            ("PSI topics", "#7048e8", [r["psi_topics"] for r in runs]),
        ],
        x_labels=[f"#{r['id']}" for r in runs],
        title="PSI per drift run",
        thresholds=[("warn", settings.drift_warn), ("drift", settings.drift_threshold)],
        lo=0.0,
    )
