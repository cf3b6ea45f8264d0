"""The reviewer's pages: the queue, labelling and skipping."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from monitoring.web import review_queue
from monitoring.web.deps import CsrfForm, Ctx, CurrentUser, Denied, text_field

router = APIRouter()


@router.get("/")
def home(signed: CurrentUser) -> Response:
    return RedirectResponse("/dashboard" if signed.user.is_admin else "/review", 303)


@router.get("/review")
def review_page(ctx: Ctx, signed: CurrentUser) -> HTMLResponse:
    task = review_queue.claim_next(
        ctx.db, signed.user.username, claim_minutes=ctx.settings.review_claim_minutes
    )
    prog = review_queue.progress(ctx.db, signed.user.username)
    keys = [(str(i + 1), t) for i, t in enumerate(task.keyed)] if task else []
    return ctx.page(
        "review.html",
        signed=signed,
        task=task,
        progress=prog,
        keys=keys,
        none_label=review_queue.NONE_LABEL,
    )


@router.post("/review/{item_id}/label")
def review_label(ctx: Ctx, signed: CurrentUser, form: CsrfForm, item_id: int) -> Response:
    label = text_field(form, "label", max_length=128)
    note = text_field(form, "note", max_length=500)
    if not label:
        raise Denied(422, "Choose a topic (or 'none of these').")
    review_queue.submit_label(
        ctx.db,
        signed.user.username,
        item_id,
        label,
        note=note.strip() or None,
        second_share=ctx.settings.review_second_share,
        rng=ctx.rng,
    )
    ctx.metrics.reviews.inc()
    return RedirectResponse("/review", status_code=303)


@router.post("/review/{item_id}/skip")
def review_skip(ctx: Ctx, signed: CurrentUser, form: CsrfForm, item_id: int) -> Response:
    review_queue.skip(ctx.db, signed.user.username, item_id)
    return RedirectResponse("/review", status_code=303)
