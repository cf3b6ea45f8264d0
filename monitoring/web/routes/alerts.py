"""newsflow's own alerts (admin role): each condition's state, what was sent and what is
still pending, and a CSRF-checked form to silence a condition until a time or lift it."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from monitoring.alerts import MAX_SILENCE, SilenceError, book_for, parse_until, utc_now
from monitoring.web.deps import AdminUser, CsrfForm, Ctx, SignedIn, text_field
from pipeline.core.db import alerts as alerts_db

router = APIRouter()
MAX_FIELD = 64


def _back(**notice: str) -> Response:
    return RedirectResponse("/alerts?" + urlencode(notice), 303)


def _refused(ctx: Ctx, signed: SignedIn, exc: SilenceError) -> HTMLResponse:
    return ctx.page("error.html", 422, signed=signed, message=str(exc), back="/alerts")


@router.get("/alerts")
def alerts_page(
    ctx: Ctx, signed: AdminUser, silenced: str | None = None, lifted: str | None = None
) -> HTMLResponse:
    notice = None
    if silenced:
        notice = f"Alert {silenced} is silenced."
    elif lifted:
        notice = f"The silence of alert {lifted} is lifted."
    return ctx.page(
        "alerts.html",
        signed=signed,
        alerts=alerts_db.list_alerts(ctx.db),
        now=utc_now(),
        max_days=MAX_SILENCE.days,
        webhook=ctx.settings.alert_webhook_url is not None,
        notice=notice,
    )


@router.post("/alerts/silence")
def silence(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    key = text_field(form, "key", max_length=MAX_FIELD)
    try:
        until = parse_until(text_field(form, "until", max_length=MAX_FIELD))
        book_for(ctx.settings, ctx.db).silence(key, until, signed.user.username)
    except SilenceError as exc:
        return _refused(ctx, signed, exc)
    return _back(silenced=key)


@router.post("/alerts/lift")
def lift(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    key = text_field(form, "key", max_length=MAX_FIELD)
    try:
        book_for(ctx.settings, ctx.db).lift(key, signed.user.username)
    except SilenceError as exc:
        return _refused(ctx, signed, exc)
    return _back(lifted=key)
