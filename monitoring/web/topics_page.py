"""What the "Emerging topics" page needs beyond :mod:`monitoring.topics.onboarding`: the
labels models already know (names a new topic may not take), the onboarded topics with their
progress (:mod:`monitoring.topics.progress`), the candidate ids a merge form sent, and
discovery run in a background thread (it embeds with MiniLM: ~30 s)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from monitoring.topics import onboarding, progress
from monitoring.topics.progress import TopicProgress
from pipeline.core.db import topics as topics_db
from pipeline.core.settings import Settings

log = logging.getLogger(__name__)


def known_labels(engine: Engine) -> list[str]:
    """Every label of every model version that served (``model_labels``, written by the
    sink). Read from Postgres rather than the registry: the request stays fast, and a name
    any model has used, not only the champion's, is refused."""
    return topics_db.select_known_labels(engine)


def topic_rows(engine: Engine, *, min_labels: int) -> list[TopicProgress]:
    """Topics people added, newest first, with their labels, next step and gate."""
    return progress.topic_rows(engine, min_labels=min_labels)


def candidate_ids(values: Sequence[str]) -> list[int]:
    """The ticked candidates of a merge form (``candidate`` fields) as ids; TopicError when
    one is not a number."""
    out = []
    for v in values:
        if not v.strip().isdigit() or len(v.strip()) > 18:
            raise onboarding.TopicError(f"{v[:40]!r} is not a candidate id")
        out.append(int(v.strip()))
    return out


def candidate_name(engine: Engine, candidate_id: int) -> str | None:
    """The name a candidate was accepted as (for the notice after a redirect)."""
    return topics_db.select_candidate_name(engine, candidate_id=candidate_id)


class DiscoveryJob:
    """At most one discovery at a time, in a daemon thread; the page shows its state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.found: int | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self, settings: Settings, engine: Engine) -> bool:
        """Start a discovery; False when one is running already."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.started_at, self.finished_at = dt.datetime.now(dt.UTC), None
            self.found, self.error = None, None
            self._thread = threading.Thread(
                target=self._run, args=(settings, engine), name="topic-discovery", daemon=True
            )
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, settings: Settings, engine: Engine) -> None:
        from monitoring.topics import service  # torch and MiniLM load here, not at import

        found: int | None = None
        error: str | None = None
        try:
            found = len(service.run_discovery(settings, engine))
        except Exception as exc:  # shown on the page; the app keeps serving
            log.exception("topic discovery failed")
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.found, self.error = found, error
            self.finished_at = dt.datetime.now(dt.UTC)

    def state(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "found": self.found,
            "error": self.error,
        }
