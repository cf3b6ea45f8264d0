"""Sign-in (open, CSRF-protected by a cookie, rate limited) and sign-out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from monitoring.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfForm,
    Ctx,
    CurrentUser,
    Denied,
    OpenForm,
    safe_next,
    text_field,
)
from monitoring.web.security import new_token, same_token
from monitoring.web.users import authenticate, end_session, start_session

router = APIRouter()


@router.get("/login")
def login_form(ctx: Ctx, next: str = "/") -> HTMLResponse:
    token = new_token()
    response = ctx.page("login.html", login_csrf=token, next=safe_next(next))
    ctx.cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/login")
def login(request: Request, ctx: Ctx, form: OpenForm) -> Response:
    username = text_field(form, "username", max_length=64)
    password = text_field(form, "password", max_length=1024)
    csrf_token = text_field(form, "csrf_token", max_length=128)
    target = safe_next(text_field(form, "next", max_length=2048, default="/"))
    if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise Denied(403, "The login form expired or its CSRF token is wrong; reload it.")
    host = request.client.host if request.client else "?"
    key = f"{host}|{username.lower()}"
    # Reserve the attempt before the (slow) password check: check and record are one step.
    wait = ctx.limiter.reserve(key)
    if wait == 0:
        wait = ctx.ip_limiter.reserve(host)
        if wait > 0:
            ctx.limiter.release(key)
    if wait > 0:
        limited = ctx.page(
            "login.html",
            429,
            login_csrf=csrf_token,
            next=target,
            error=f"Too many failed sign-ins. Try again in {int(wait) + 1} s.",
        )
        limited.headers["Retry-After"] = str(int(wait) + 1)
        return limited
    try:
        user = authenticate(ctx.db, username, password) if username and password else None
    except BaseException:  # not a failed sign-in: give the attempt back
        ctx.limiter.release(key)
        ctx.ip_limiter.release(host)
        raise
    if user is None:  # the reserved attempts stand as failures
        ctx.metrics.login_failures.inc()
        return ctx.page(
            "login.html",
            401,
            login_csrf=csrf_token,
            next=target,
            error="Wrong username or password.",
        )
    ctx.limiter.succeeded(key)
    ctx.ip_limiter.release(host)
    token, _ = start_session(ctx.db, user, ctx.settings.web_session_hours)
    response = RedirectResponse(target, status_code=303)
    ctx.cookie(response, SESSION_COOKIE, token, max_age=int(ctx.settings.web_session_hours * 3600))
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(ctx: Ctx, signed: CurrentUser, form: CsrfForm) -> Response:
    end_session(ctx.db, signed.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
