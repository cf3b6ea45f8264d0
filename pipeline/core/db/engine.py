"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from pipeline.core.errors import DatabaseError
from pipeline.core.settings import Settings


def make_engine(settings: Settings, *, database: str | None = None, **kwargs: object) -> Engine:
    return create_engine(
        settings.database_url(database),
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
        **kwargs,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def wait_for_database(engine: Engine, *, timeout_s: float = 30.0) -> None:
    """Block until ``SELECT 1`` succeeds, retrying with backoff; raise DatabaseError after
    ``timeout_s``."""

    @retry(
        retry=retry_if_exception_type(Exception),
        stop=stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        reraise=True,
    )
    def _ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        _ping()
    except Exception as exc:
        raise DatabaseError(
            f"database at {engine.url.render_as_string(hide_password=True)} "
            f"did not answer within {timeout_s:.0f}s: {exc}"
        ) from exc
