"""The retention job: day partitions ahead, the database prune (pipeline/core/db/retention.py)
and the drift reports folder capped by count and age. The scheduler runs it daily;
``newsflow db prune`` runs it by hand.

Only the drift job's own reports (``drift-*.html`` files directly in the reports folder) are
ever deleted; a drift run whose report is gone shows "no report file" on its page.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pipeline.core.db.partitions import create_partitions_ahead
from pipeline.core.db.retention import PruneBusyError, PruneSummary, prune
from pipeline.core.settings import Settings

log = logging.getLogger("newsflow.retention")
REPORT_NAME = re.compile(r"drift-[^/\\]*\.html")


@dataclasses.dataclass(frozen=True)
class ReportsPruned:
    folder: str
    kept: int
    deleted: int
    bytes_freed: int


@dataclasses.dataclass(frozen=True)
class RetentionReport:
    """What one retention run did (or, dry, would do)."""

    partitions_created: tuple[str, ...]
    database: PruneSummary
    reports: ReportsPruned

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions_created": list(self.partitions_created),
            "database": self.database.to_json(),
            "reports": dataclasses.asdict(self.reports),
        }

    def lines(self) -> list[str]:
        verb = "would delete" if self.database.dry_run else "deleted"
        created = ", ".join(self.partitions_created) or "none needed"
        return [
            f"partitions ahead: {created}",
            *self.database.lines(),
            f"reports in {self.reports.folder}: {verb} {self.reports.deleted}, "
            f"kept {self.reports.kept} ({self.reports.bytes_freed / 1e6:,.1f} MB)",
        ]


def prune_reports(
    folder: Path, *, keep: int, max_days: float, now: datetime | None = None, dry_run: bool = False
) -> ReportsPruned:
    """Delete the drift reports beyond the newest ``keep`` or older than ``max_days``
    (by modification time). Other files, links and folders are left alone."""
    if keep < 1 or max_days <= 0:
        raise ValueError(f"keep >= 1 and max_days > 0 needed, got {keep} and {max_days}")
    if not folder.is_dir():
        return ReportsPruned(str(folder), 0, 0, 0)
    oldest = (now or datetime.now(UTC)).timestamp() - max_days * 86400
    reports = []
    for path in folder.iterdir():
        if REPORT_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            stat = path.stat()
            reports.append((stat.st_mtime, stat.st_size, path))
    reports.sort(key=lambda r: (r[0], r[2].name), reverse=True)
    deleted = freed = 0
    for i, (mtime, size, path) in enumerate(reports):
        if i < keep and mtime >= oldest:
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        deleted += 1
        freed += size
    return ReportsPruned(str(folder), len(reports) - deleted, deleted, freed)


def run_retention(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    wait_s: float = 0.0,
) -> RetentionReport:
    """The database prune, the partitions ahead, then the reports folder. A second run
    while one is going raises :class:`~pipeline.core.db.retention.PruneBusyError` having
    done nothing; a prune that fails otherwise still gets the partitions ahead created."""

    def ahead() -> list[str]:
        if dry_run:
            return []
        return create_partitions_ahead(engine, ahead=settings.partitions_ahead_days, now=now)

    try:
        summary = prune(
            engine, retention_days=settings.retention_days, now=now, dry_run=dry_run, wait_s=wait_s
        )
    except PruneBusyError:
        raise
    except Exception:
        ahead()  # tomorrow's rows must find their partition whatever failed here
        raise
    created = ahead()
    reports = prune_reports(
        settings.reports_path(),
        keep=settings.reports_keep,
        max_days=settings.reports_max_days,
        now=now,
        dry_run=dry_run,
    )
    return RetentionReport(tuple(created), summary, reports)


def retention_job(settings: Settings, engine: Engine, *, now: datetime | None = None) -> None:
    """The scheduler's daily job: never raises (the scheduler keeps running). ``now``: a
    replay's simulated time (default: the wall clock)."""
    t0 = time.monotonic()
    try:
        report = run_retention(settings, engine, now=now)
    except PruneBusyError as exc:
        log.info("retention skipped: %s", exc)
        return
    except Exception:
        log.exception("retention job failed")
        return
    for line in report.lines():
        log.info("retention: %s", line.strip())
    log.info("retention job done in %.1f s", time.monotonic() - t0)
