"""Retention's rules without a database: the settings it refuses, the cut-off days and the
reports folder's cap."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring.retention import prune_reports
from pipeline.core.db.retention import cutoffs
from pipeline.core.errors import SettingsError
from pipeline.core.settings import load_settings

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)


def test_retention_shorter_than_review_expiry_or_drift_window_is_refused() -> None:
    with pytest.raises(
        SettingsError,
        match="NEWSFLOW_RETENTION_DAYS \\(1\\) is shorter than "
        "NEWSFLOW_REVIEW_EXPIRE_HOURS \\(48 h\\)",
    ):
        load_settings(retention_days=1, review_expire_hours=48)
    with pytest.raises(SettingsError, match="NEWSFLOW_DRIFT_WINDOW_MINUTES"):
        load_settings(retention_days=2, drift_window_minutes=3 * 24 * 60)
    with pytest.raises(SettingsError, match="NEWSFLOW_RETENTION_DAYS: Input should be greater"):
        load_settings(retention_days=0)
    ok = load_settings(retention_days=2, review_expire_hours=48, drift_window_minutes=2880)
    assert ok.retention_days == 2


def test_cutoffs_are_utc_midnights_and_articles_keep_a_day_more() -> None:
    predictions, articles = cutoffs(NOW, 30)
    assert predictions == datetime(2026, 11, 7, tzinfo=UTC)
    assert articles == predictions - timedelta(days=1)
    with pytest.raises(ValueError, match="at least 1 day"):
        cutoffs(NOW, 0)


def _report(folder: Path, name: str, age_days: float) -> Path:
    path = folder / name
    path.write_text("<html></html>")
    t = (NOW - timedelta(days=age_days)).timestamp()
    os.utime(path, (t, t))
    return path


def test_reports_are_capped_by_count_and_age(tmp_path: Path) -> None:
    fresh = [_report(tmp_path, f"drift-2026120{i}T000000-v1.html", i * 0.1) for i in range(5)]
    old = _report(tmp_path, "drift-20261001T000000-v1.html", 40)
    other = _report(tmp_path, "notes.html", 400)  # not a drift report: never touched
    (tmp_path / "drift-dir.html").mkdir()
    dry = prune_reports(tmp_path, keep=3, max_days=30, now=NOW, dry_run=True)
    assert (dry.deleted, dry.kept) == (3, 3) and all(p.exists() for p in [*fresh, old])
    done = prune_reports(tmp_path, keep=3, max_days=30, now=NOW)
    assert (done.deleted, done.kept) == (3, 3) and done.bytes_freed == 3 * len("<html></html>")
    assert [p.exists() for p in fresh] == [True, True, True, False, False]  # newest three
    assert not old.exists() and other.exists()
    assert prune_reports(tmp_path / "missing", keep=1, max_days=1).deleted == 0
    with pytest.raises(ValueError):
        prune_reports(tmp_path, keep=0, max_days=1)
