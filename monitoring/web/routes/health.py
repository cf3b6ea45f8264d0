"""`/healthz`: open, for probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from monitoring.web.deps import Ctx

router = APIRouter()


@router.get("/healthz")
def healthz(ctx: Ctx) -> JSONResponse:
    try:
        with ctx.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "degraded", "database": False}, status_code=503)
    return JSONResponse({"status": "ok", "database": True})
