"""`newsflow web-bench` end to end on a small queue: it must sign in, work the queue and
report server times (the 100,000-item figure is a benchmark, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration


def test_web_bench_reports_server_times(stack: Settings, tmp_path: Path) -> None:
    out = tmp_path / "web.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitoring",
            "web-bench",
            "--items",
            "2000",
            "--requests",
            "30",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["items"] == 2000 and result["review_get_ms"]["n"] == 30
    assert 0 < result["review_get_ms"]["p50"] <= result["review_get_ms"]["p95"]
    assert result["label_post_ms"]["n"] == 30
    assert "GET /review server time" in proc.stdout
