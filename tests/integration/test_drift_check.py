"""The drift check on real Postgres with a hand-made model folder: windows, reviewed
accuracy, and the alert webhook."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from monitoring.alerts import delivery_pass
from monitoring.drift import run_drift_check
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.model_folder import ModelMetadata, ReferenceDistribution, write_metadata
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    meta = ModelMetadata(
        version="m1",
        labels=LABELS,
        reference=ReferenceDistribution(
            confidences=[float(c) for c in 1 - rng.beta(0.5, 8, 3000)],
            topic_mix=dict.fromkeys(LABELS, 0.25),
        ),
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_metadata(tmp_path, meta)
    return tmp_path


def _insert(engine, prefix: str, confidences: np.ndarray, topics: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [
                {"id": f"{prefix}{i}", "title": "t", "body": "b", "received_at": NOW}
                for i in range(len(confidences))
            ],
        )
        ids = (
            conn.execute(
                insert(PredictionRow).returning(PredictionRow.id),
                [
                    {
                        "article_id": f"{prefix}{i}",
                        "model_version": "m1",
                        "topic": topics[i],
                        "confidence": float(c),
                        "margin": 0.1,
                        "probabilities": [float(c)],
                        "latency_ms": 1.0,
                        "received_at": NOW,
                        "predicted_at": NOW,
                    }
                    for i, c in enumerate(confidences)
                ],
            )
            .scalars()
            .all()
        )
    return list(ids)


def test_windows_levels_and_reviewed_accuracy(db: Settings, tmp_path: Path) -> None:
    s = db.model_copy(
        update={
            "drift_window_size": 600,
            "drift_min_window": 500,
            "reports_dir": tmp_path / "reports",
        }
    )
    folder = _folder(tmp_path / "model")
    engine = make_engine(s)
    rng = np.random.default_rng(1)
    topics = [LABELS[i % 4] for i in range(600)]
    assert run_drift_check(s, engine=engine, model_dir=folder).level == "insufficient"
    ids = _insert(engine, "a", 1 - rng.beta(0.5, 8, 600), topics)
    with engine.begin() as conn:  # reviewers: 8 of 10 agree with the model
        conn.execute(
            insert(ReviewItemRow),
            [
                {
                    "prediction_id": pid,
                    "article_id": f"a{i}",
                    "reason": "uniform",
                    "priority": 1,
                    "round": 1,
                    "status": "done",
                    "label": topics[i] if i < 8 else "__none__" if i == 9 else LABELS[(i + 1) % 4],
                }
                for i, pid in enumerate(ids[:10])
            ],
        )
    ok = run_drift_check(s, engine=engine, model_dir=folder)
    assert ok.level == "ok", ok
    assert ok.reviewed_n == 9 and ok.reviewed_accuracy == pytest.approx(8 / 9)
    assert ok.reviewed_interval is not None and ok.reviewed_interval[0] < 8 / 9
    assert ok.report_path and Path(ok.report_path).exists()

    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooked = s.model_copy(
        update={"alert_webhook_url": f"http://127.0.0.1:{server.server_address[1]}/hook"}
    )
    _insert(engine, "b", rng.uniform(0.3, 0.6, 600), ["World"] * 600)  # a shifted window
    drift = run_drift_check(hooked, engine=engine, model_dir=folder, report=False)
    delivery_pass(hooked, engine)  # the scheduler's delivery job sends what the check queued
    server.shutdown()
    assert drift.level == "drift" and drift.psi_confidence > 0.25 and drift.psi_topics > 0.25
    # one notice per condition (monitoring.alerts), each carrying the run
    assert sorted(r["key"] for r in received) == ["drift:confidence", "drift:topic_mix"]
    assert all(r["status"] == "firing" and r["severity"] == "critical" for r in received)
    assert all(r["details"]["level"] == "drift" for r in received)
    assert received[0]["details"]["run_id"] == drift.run_id
    engine.dispose()


def test_unreachable_webhook_does_not_break_the_check(db: Settings, tmp_path: Path) -> None:
    s = db.model_copy(
        update={
            "drift_window_size": 500,
            "drift_min_window": 500,
            "alert_webhook_url": "http://127.0.0.1:9/none",
        }
    )
    engine = make_engine(s)
    _insert(engine, "c", np.full(500, 0.4), ["World"] * 500)
    result = run_drift_check(s, engine=engine, model_dir=_folder(tmp_path / "m"), report=False)
    assert result.level == "drift" and result.run_id is not None
    engine.dispose()
