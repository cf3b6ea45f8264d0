"""Label Studio interchange pages (admin role): export tasks, import annotations."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from monitoring.web import labelstudio
from monitoring.web.deps import AdminUpload, AdminUser, Ctx, Denied, file_field

router = APIRouter()


@router.get("/labelstudio")
def labelstudio_page(ctx: Ctx, signed: AdminUser) -> HTMLResponse:
    return ctx.page("labelstudio.html", signed=signed, report=None)


@router.get("/labelstudio/export.json")
def labelstudio_export(ctx: Ctx, signed: AdminUser, status: str = "pending") -> Response:
    if status not in {"pending", "done"}:
        raise Denied(422, "status must be 'pending' or 'done'")
    body = json.dumps(labelstudio.export_tasks(ctx.db, status=status), ensure_ascii=False)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="newsflow-tasks.json"'},
    )


@router.post("/labelstudio/import")
def labelstudio_import(ctx: Ctx, signed: AdminUser, form: AdminUpload) -> HTMLResponse:
    cap = ctx.max_upload_bytes
    raw = file_field(form, "file").file.read(cap + 1)
    if len(raw) > cap:
        raise Denied(413, f"The file is over {cap / 2**20:g} MiB.")
    try:
        tasks = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Denied(422, f"Not a JSON file: {exc}") from None
    report = labelstudio.import_annotations(ctx.db, tasks)
    return ctx.page("labelstudio.html", signed=signed, report=report)
