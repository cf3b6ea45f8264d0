"""FastAPI dependencies shared by the routers (the deps module of full-stack-fastapi-template's
layout): the app's context, the signed-in user, the admin role and CSRF-checked forms.

Order matters: a route that needs a session takes its form through :data:`CsrfForm` or
:data:`AdminUpload`, never through ``Form()``/``File()`` parameters. FastAPI parses declared
body parameters before it runs any dependency; these dependencies check the session first
and only then read the body (which :class:`monitoring.web.limits.BodyLimit` has capped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from sqlalchemy import Engine
from starlette.datastructures import FormData, UploadFile

from monitoring.status import OutsideCache
from monitoring.web.metrics import WebMetrics
from monitoring.web.security import LoginLimiter, same_token
from monitoring.web.topics_page import DiscoveryJob
from monitoring.web.users import User, session_user
from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings

SESSION_COOKIE, LOGIN_CSRF_COOKIE = "nf_session", "nf_login_csrf"
MAX_FIELDS = 32  # no form of this app has more than a handful


class NeedLogin(NewsflowError):
    """No valid session: the app redirects to the login page."""


class Denied(NewsflowError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass(frozen=True)
class SignedIn:
    user: User
    csrf: str
    token: str


@dataclasses.dataclass(frozen=True)
class WebContext:
    """What the routes share; built once by ``create_app`` and kept in ``app.state.ctx``."""

    settings: Settings
    db: Engine
    env: Environment
    limiter: LoginLimiter  # failed sign-ins per (address, username)
    ip_limiter: LoginLimiter  # and per address across usernames
    rng: random.Random
    reports_root: Path
    max_upload_bytes: int
    metrics: WebMetrics  # served by `newsflow web` on web_metrics_port
    discovery: DiscoveryJob = dataclasses.field(default_factory=DiscoveryJob)  # /topics
    outside: OutsideCache | None = None  # /dashboard: services, lag, champion, cached briefly

    def page(
        self, name: str, code: int = 200, signed: SignedIn | None = None, **ctx: Any
    ) -> HTMLResponse:
        body = self.env.get_template(name).render(
            user=signed.user if signed else None, csrf=signed.csrf if signed else "", **ctx
        )
        return HTMLResponse(body, status_code=code)

    def cookie(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.settings.web_cookie_secure,
            path="/",
        )


def get_ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


Ctx = Annotated[WebContext, Depends(get_ctx)]


def signed_in(request: Request, ctx: Ctx) -> SignedIn:
    token = request.cookies.get(SESSION_COOKIE)
    found = session_user(ctx.db, token) if token else None
    if found is None:
        raise NeedLogin()
    user, csrf = found
    return SignedIn(user, csrf, token or "")


CurrentUser = Annotated[SignedIn, Depends(signed_in)]


async def admin(signed: CurrentUser) -> SignedIn:
    if not signed.user.is_admin:
        raise Denied(403, "This page is for on-call engineers (admin role).")
    return signed


AdminUser = Annotated[SignedIn, Depends(admin)]


def check_csrf(signed: SignedIn, form: FormData) -> None:
    token = form.get("csrf_token")
    if not isinstance(token, str) or not same_token(token, signed.csrf):
        raise Denied(403, "The form's CSRF token is missing or wrong; reload the page.")


async def open_form(request: Request) -> AsyncIterator[FormData]:
    """The form of an open route (sign-in): no files, size capped by BodyLimit."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    try:
        yield form
    finally:
        await form.close()


@contextlib.asynccontextmanager
async def _checked_form(
    request: Request, signed: SignedIn, *, max_files: int
) -> AsyncIterator[FormData]:
    form = await request.form(max_files=max_files, max_fields=MAX_FIELDS)
    try:
        check_csrf(signed, form)
        yield form
    finally:
        await form.close()


async def csrf_form(request: Request, signed: CurrentUser) -> AsyncIterator[FormData]:
    """A signed-in user's form, parsed after the session check, with its CSRF token checked."""
    async with _checked_form(request, signed, max_files=0) as form:
        yield form


async def admin_upload(request: Request, signed: AdminUser) -> AsyncIterator[FormData]:
    """An admin's one-file upload, parsed after the session and role checks."""
    async with _checked_form(request, signed, max_files=1) as form:
        yield form


OpenForm = Annotated[FormData, Depends(open_form)]
CsrfForm = Annotated[FormData, Depends(csrf_form)]
AdminUpload = Annotated[FormData, Depends(admin_upload)]


def text_field(form: FormData, name: str, *, max_length: int, default: str = "") -> str:
    """A text field of ``form``; 422 when it is a file or longer than ``max_length``."""
    value = form.get(name, default)
    if not isinstance(value, str):
        raise Denied(422, f"The form field {name!r} must be text.")
    if len(value) > max_length:
        raise Denied(422, f"The form field {name!r} is over {max_length} characters.")
    return value


def file_field(form: FormData, name: str) -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise Denied(422, "Choose a file to import.")
    return value


def safe_next(target: str | None) -> str:
    """Only a local path (no scheme, no //host) may follow a login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
