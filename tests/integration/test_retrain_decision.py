"""Retraining is decided from evidence, on real Postgres through the scheduler's drift job:
a topic-mix shift with a healthy model only alerts; an estimated or reviewed accuracy drop
retrains within the same check; an explicit request retrains with its reason recorded. The
training step is a stand-in (the test is about the decision); the check, the decision, the
guards of ``maybe_retrain`` and every database record are the real ones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from monitoring.decision import RetrainRequest
from monitoring.retrain import RetrainOutcome
from monitoring.scheduler import drift_job
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.model_folder import ModelMetadata, ReferenceDistribution, write_metadata
from pipeline.core.settings import Settings

pytestmark = pytest.mark.integration
LABELS = ["World", "Sports", "Business", "Sci/Tech"]
AT = datetime(2026, 12, 1, tzinfo=UTC)


class FakeTrain:
    """Records each call instead of fine-tuning a model."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, **kwargs: Any) -> RetrainOutcome:
        self.calls.append(kwargs)
        return RetrainOutcome("promoted", "stand-in training", "2")


@pytest.fixture
def env(db: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Engine, Path]]:
    s = db.model_copy(
        update={
            "drift_window_size": 1000,
            "drift_min_window": 500,
            "retrain_cooldown_hours": 0.0,  # nothing but the decision may stop a retraining
            "retrain_daily_cap": 100,
            # the windows are stamped AT (a fixed day): every reviewed item counts
            "retrain_reviewed_hours": 0.0,
            "home": tmp_path / "home",
        }
    )
    rng = np.random.default_rng(0)
    folder = tmp_path / "model"
    folder.mkdir()
    write_metadata(  # a balanced reference; mean confidence about 0.94
        folder,
        ModelMetadata(
            version="m1",
            labels=LABELS,
            reference=ReferenceDistribution(
                confidences=[float(c) for c in 1 - rng.beta(0.5, 8, 3000)],
                topic_mix=dict.fromkeys(LABELS, 0.25),
            ),
        ),
    )
    engine = make_engine(s)
    yield s, engine, folder
    engine.dispose()


def _window(engine: Engine, prefix: str, confidences: np.ndarray, topics: list[str]) -> list[int]:
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [
                {"id": f"{prefix}{i}", "title": "t", "body": "b", "received_at": AT}
                for i in range(len(confidences))
            ],
        )
        rows = [
            {
                "article_id": f"{prefix}{i}",
                "model_version": "m1",
                "topic": topics[i],
                "confidence": float(c),
                "margin": 0.1,
                "probabilities": [float(c)],
                "latency_ms": 1.0,
                "received_at": AT,
                "predicted_at": AT,
            }
            for i, c in enumerate(confidences)
        ]
        return list(
            conn.execute(insert(PredictionRow).returning(PredictionRow.id), rows).scalars().all()
        )


def _events(engine: Engine) -> list[tuple[str, str, int | None, dict[str, Any]]]:
    with engine.connect() as conn:
        return [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute(
                text("SELECT kind, reason, drift_run_id, metrics FROM model_events ORDER BY id")
            )
        ]


def _decision(engine: Engine, run_id: int | None) -> dict[str, Any]:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT decision FROM drift_runs WHERE id = :i"), {"i": run_id}
        ).scalar_one()
    assert isinstance(value, dict)
    return value


def test_one_topic_with_a_healthy_model_alerts_and_does_not_retrain(
    env: tuple[Settings, Engine, Path],
) -> None:
    s, engine, folder = env
    rng = np.random.default_rng(1)
    _window(engine, "sports", 1 - rng.beta(0.3, 12, 1000), ["Sports"] * 1000)
    train = FakeTrain()
    result, outcome = drift_job(s, engine, model_dir=folder, report=False, train=train)
    assert result is not None and result.decision is not None
    assert result.level == "drift" and (result.psi_topics or 0) > 1.0, result
    assert result.decision.action == "alert" and not result.decision.retrain
    evidence = result.decision.evidence
    assert evidence.estimated_accuracy is not None and evidence.reference_accuracy is not None
    assert evidence.estimated_accuracy > evidence.reference_accuracy  # it got *better*
    assert outcome is None and train.calls == []
    assert [e for e in _events(engine) if e[0].startswith("retrain")] == []
    stored = _decision(engine, result.run_id)
    assert stored["action"] == "alert" and "no retrain" in stored["reason"]
    assert stored["evidence"]["psi_topics"] == pytest.approx(result.psi_topics)
    assert "outcome" not in stored


def test_estimated_accuracy_drop_retrains_in_the_same_check(
    env: tuple[Settings, Engine, Path],
) -> None:
    s, engine, folder = env
    rng = np.random.default_rng(2)
    topics = [LABELS[i % 4] for i in range(1000)]
    _window(engine, "unsure", rng.uniform(0.55, 0.95, 1000), topics)
    train = FakeTrain()
    result, outcome = drift_job(s, engine, model_dir=folder, report=False, train=train)
    assert result is not None and result.decision is not None
    evidence = result.decision.evidence
    est, ref = evidence.estimated_accuracy, evidence.reference_accuracy
    assert est is not None and ref is not None and ref - est >= 0.05, (est, ref)
    assert result.decision.triggers == ("estimated_accuracy_drop",)
    assert outcome is not None and outcome.status == "promoted"
    assert [c["drift_run_id"] for c in train.calls] == [result.run_id]
    events = _events(engine)
    assert [e[0] for e in events] == ["retrain_started", "retrain_finished"]
    _, reason, run_id, metrics = events[0]
    assert run_id == result.run_id and reason.startswith("estimated accuracy")
    assert metrics["triggers"] == ["estimated_accuracy_drop"]
    assert metrics["evidence"]["estimated_accuracy"] == pytest.approx(est)
    stored = _decision(engine, result.run_id)
    assert stored["action"] == "retrain" and stored["outcome"]["status"] == "promoted"


def test_reviewed_accuracy_drop_counts_only_the_uniform_sample(
    env: tuple[Settings, Engine, Path],
) -> None:
    s, engine, folder = env
    rng = np.random.default_rng(3)
    topics = [LABELS[i % 4] for i in range(1000)]
    ids = _window(engine, "rev", 1 - rng.beta(0.5, 8, 1000), topics)  # looks healthy

    def review(i: int, reason: str, right: bool) -> dict[str, Any]:
        label = topics[i] if right else LABELS[(LABELS.index(topics[i]) + 1) % 4]
        return {
            "prediction_id": ids[i],
            "article_id": f"rev{i}",
            "reason": reason,
            "priority": 1,
            "round": 1,
            "status": "done",
            "label": label,
        }

    with engine.begin() as conn:  # uniform: 140 of 200 right; uncertainty: all wrong
        conn.execute(
            insert(ReviewItemRow),
            [review(i, "uniform", i % 10 < 7) for i in range(200)]
            + [review(i, "uncertainty", False) for i in range(200, 300)],
        )
    train = FakeTrain()
    result, outcome = drift_job(s, engine, model_dir=folder, report=False, train=train)
    assert result is not None and result.decision is not None
    evidence = result.decision.evidence
    assert result.decision.triggers == ("reviewed_accuracy_drop",), result.decision
    assert evidence.reviewed_n == 200 and evidence.reviewed_accuracy == pytest.approx(0.7)
    assert result.reviewed_n == 200  # the shown reviewed accuracy counts the uniform slice only
    assert outcome is not None and len(train.calls) == 1


def test_an_explicit_request_retrains_with_its_reason(
    env: tuple[Settings, Engine, Path],
) -> None:
    s, engine, folder = env
    train = FakeTrain()
    request = RetrainRequest(reason="labelling guide v2 for Business", requested_by="oncall")
    result, outcome = drift_job(
        s, engine, model_dir=folder, report=False, train=train, request=request
    )
    assert result is not None and result.decision is not None
    assert result.level == "insufficient" and result.decision.triggers == ("requested",)
    assert outcome is not None and outcome.status == "promoted" and len(train.calls) == 1
    started, _ = _events(engine)
    assert started[0] == "retrain_started" and started[2] == result.run_id
    assert started[1] == "requested by oncall: labelling guide v2 for Business"
    assert started[3]["evidence"]["request"]["reason"] == request.reason
    stored = _decision(engine, result.run_id)
    assert stored["triggers"] == ["requested"] and stored["outcome"]["status"] == "promoted"


def test_the_drift_run_page_shows_the_decision(env: tuple[Settings, Engine, Path]) -> None:
    from monitoring.web.app import create_app
    from monitoring.web.users import add_user

    s, engine, folder = env
    rng = np.random.default_rng(1)
    _window(engine, "sports", 1 - rng.beta(0.3, 12, 1000), ["Sports"] * 1000)
    result, _ = drift_job(s, engine, model_dir=folder, report=False, train=FakeTrain())
    assert result is not None
    add_user(engine, "oscar", "correct horse battery", "admin")
    with TestClient(create_app(s, engine=engine)) as http:
        form = http.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        signed = http.post(
            "/login",
            data={"username": "oscar", "password": "correct horse battery", "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        page = http.get(f"/drift/{result.run_id}").text
    assert "Retraining decision" in page and "alert, no retrain" in page
    assert "topic-mix PSI" in page and "none reviewed" in page
