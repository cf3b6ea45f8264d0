"""Emerging topics: the open candidates of the latest discovery and the onboarded topics.

Every signed-in user may look; naming, dismissing and starting a discovery need the admin
role and a CSRF-checked form. A refused decision (bad name, candidate no longer open) is a
4xx page and changes nothing; a done one redirects back to the page with a notice.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from monitoring.topics import onboarding
from monitoring.topics.onboarding import CandidateGone, TopicError
from monitoring.web import topics_page
from monitoring.web.deps import AdminUser, CsrfForm, Ctx, CurrentUser, SignedIn, text_field

router = APIRouter()
MAX_FIELD = 512  # the name field as sent; check_name allows 64 characters once trimmed


def _back(**notice: str | int) -> Response:
    return RedirectResponse("/topics" + (f"?{urlencode(notice)}" if notice else ""), 303)


def _refused(ctx: Ctx, signed: SignedIn, exc: TopicError) -> HTMLResponse:
    code = 409 if isinstance(exc, CandidateGone) else 422
    return ctx.page("error.html", code, signed=signed, message=str(exc), back="/topics")


@router.get("/topics")
def topics(
    ctx: Ctx,
    signed: CurrentUser,
    accepted: int | None = None,
    queued: int | None = None,
    dismissed: int | None = None,
    discovery: str | None = None,
) -> HTMLResponse:
    notice = None
    if accepted is not None:
        name = topics_page.candidate_name(ctx.db, accepted)
        if name:
            notice = f"Candidate #{accepted} is now the topic {name!r}"
            if queued is not None:
                notice += f"; {queued} articles were queued for review with it suggested"
            notice += "."
    elif dismissed is not None:
        notice = f"Candidate #{dismissed} was dismissed."
    elif discovery == "started":
        notice = "Discovery started in the background (about 30 s); reload to see it."
    elif discovery == "running":
        notice = "A discovery is running already."
    return ctx.page(
        "topics.html",
        signed=signed,
        candidates=onboarding.candidates(ctx.db),
        topics=topics_page.topic_rows(ctx.db),
        min_labels=ctx.settings.topic_min_labels,
        max_name=onboarding.MAX_NAME,
        job=ctx.discovery.state(),
        notice=notice,
    )


@router.post("/topics/candidates/{candidate_id}/accept")
def accept(ctx: Ctx, signed: AdminUser, form: CsrfForm, candidate_id: int) -> Response:
    name = text_field(form, "name", max_length=MAX_FIELD)
    try:
        queued = onboarding.accept(
            ctx.db,
            candidate_id,
            name,
            admin=signed.user.username,
            known_labels=topics_page.known_labels(ctx.db),
        )
    except TopicError as exc:
        return _refused(ctx, signed, exc)
    return _back(accepted=candidate_id, queued=queued)


@router.post("/topics/candidates/{candidate_id}/dismiss")
def dismiss(ctx: Ctx, signed: AdminUser, form: CsrfForm, candidate_id: int) -> Response:
    try:
        onboarding.dismiss(ctx.db, candidate_id, admin=signed.user.username)
    except TopicError as exc:
        return _refused(ctx, signed, exc)
    return _back(dismissed=candidate_id)


@router.post("/topics/discover")
def discover(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    started = ctx.discovery.start(ctx.settings, ctx.db)
    return _back(discovery="started" if started else "running")
