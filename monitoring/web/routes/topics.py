"""Emerging topics: the open candidates of the latest discovery and the onboarded topics.

Every signed-in user may look; naming (one candidate, several as one topic, or adding some to
a topic being onboarded), dismissing, splitting a topic and starting a discovery need the
admin role and a CSRF-checked form. A refused decision (bad name, candidate no longer open) is a
4xx page and changes nothing; a done one redirects back to the page with a notice.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from monitoring.topics import onboarding
from monitoring.topics import split as topic_split
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
    merged: int | None = None,
    added: int | None = None,
    split: str | None = None,
) -> HTMLResponse:
    notice = None
    if split is not None:
        notice = (
            f"Topic {split!r} is being split; {queued or 0} reviewed examples were queued "
            "for relabelling into its parts."
        )
    elif added is not None:
        name = topics_page.candidate_name(ctx.db, added)
        if name:
            notice = f"{merged or 1} candidate(s) added to the topic {name!r}"
            notice += f"; {queued or 0} more articles were queued for review."
    elif accepted is not None:
        name = topics_page.candidate_name(ctx.db, accepted)
        if name:
            who = f"{merged} candidates are" if merged else f"Candidate #{accepted} is"
            notice = f"{who} now the topic {name!r}"
            if queued is not None:
                notice += f"; {queued} articles were queued for review with it suggested"
            notice += "."
    elif dismissed is not None:
        notice = f"Candidate #{dismissed} was dismissed."
    elif discovery == "started":
        notice = "Discovery started in the background (about 30 s); reload to see it."
    elif discovery == "running":
        notice = "A discovery is running already."
    candidates = onboarding.candidates(ctx.db)
    return ctx.page(
        "topics.html",
        signed=signed,
        candidates=candidates,
        by_rank={c.rank: c.id for c in candidates},
        min_f1=ctx.settings.topic_min_f1,
        topics=topics_page.topic_rows(ctx.db, min_labels=ctx.settings.topic_min_labels),
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


@router.post("/topics/merge")
def merge(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    """The ticked candidates as one new topic (``name``), or added to a topic being
    onboarded (``topic``, with ``action=add``)."""
    values = form.getlist("candidate")
    try:
        ids = topics_page.candidate_ids([v if isinstance(v, str) else "" for v in values])
        if text_field(form, "action", max_length=16) == "add":
            topic = text_field(form, "topic", max_length=MAX_FIELD)
            queued = onboarding.add_to_topic(ctx.db, ids, topic, admin=signed.user.username)
            return _back(added=ids[0], queued=queued, merged=len(set(ids)))
        queued = onboarding.accept_many(
            ctx.db,
            ids,
            text_field(form, "name", max_length=MAX_FIELD),
            admin=signed.user.username,
            known_labels=topics_page.known_labels(ctx.db),
        )
    except TopicError as exc:
        return _refused(ctx, signed, exc)
    return _back(accepted=ids[0], queued=queued, merged=len(set(ids)))


@router.post("/topics/candidates/{candidate_id}/dismiss")
def dismiss(ctx: Ctx, signed: AdminUser, form: CsrfForm, candidate_id: int) -> Response:
    try:
        onboarding.dismiss(ctx.db, candidate_id, admin=signed.user.username)
    except TopicError as exc:
        return _refused(ctx, signed, exc)
    return _back(dismissed=candidate_id)


@router.post("/topics/split")
def split_topic(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    """Split a topic of the champion (``topic``) into the parts named (``part`` fields, the
    empty ones ignored): :func:`monitoring.topics.split.start_split`."""
    from monitoring.topics.service import champion_labels

    old = text_field(form, "topic", max_length=MAX_FIELD).strip()
    parts = [v for v in form.getlist("part") if isinstance(v, str) and v.strip()]
    try:
        if any(len(p) > MAX_FIELD for p in parts):
            raise TopicError(f"a part's name is over {MAX_FIELD} characters")
        topic_split.check_parts(parts, old)  # before the registry is asked
        try:
            labels = champion_labels(ctx.settings)[1]
        except Exception as exc:  # the registry is down: nothing was changed
            why = f"the model registry could not be read ({type(exc).__name__}); try again"
            return ctx.page("error.html", 503, signed=signed, message=why, back="/topics")
        started = topic_split.start_split(
            ctx.db, old, parts, admin=signed.user.username, champion_labels=labels
        )
    except TopicError as exc:
        return _refused(ctx, signed, exc)
    return _back(split=started.old, queued=started.queued)


@router.post("/topics/discover")
def discover(ctx: Ctx, signed: AdminUser, form: CsrfForm) -> Response:
    started = ctx.discovery.start(ctx.settings, ctx.db)
    return _back(discovery="started" if started else "running")
