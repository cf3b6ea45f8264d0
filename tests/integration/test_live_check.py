"""The live check before a promotion, on a scratch database and a scratch MLflow registry
with tiny ONNX models (the session's tiny BERT as the champion; the tiny RoBERTa, which
answers another topic, as a worse challenger; a copy of the champion under another version
as a tied one). The offline gate is made permissive: the subject is the live evidence.
With no reviewed items nothing is promoted; reviewed items that favour the champion refuse
the challenger with the figures on the event; a tie is promoted; the models page shows it."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from pipeline.core import registry
from pipeline.core.db.engine import make_engine
from pipeline.core.db.events import promoted_live_accuracy
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.model_folder import read_metadata, write_metadata
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from pipeline.proof.synthetic import synthetic_news
from retraining.gate import GatePolicy
from retraining.promotion import promote
from retraining.register import register_model_folder

pytestmark = pytest.mark.integration
AT = datetime(2026, 12, 1, tzinfo=UTC)
LOOSE = GatePolicy(max_macro_f1_drop=1.0, max_class_f1_drop=1.0)


def _store(engine: Engine, version: str, labels: dict[int, tuple[str, str]], n: int) -> None:
    """``n`` live articles predicted by ``version``; ``labels[i]`` = (sampling reason,
    reviewer's label) makes article ``i`` a reviewed item, labelled one second after the
    one before."""
    rows = synthetic_news(n, seed=11, prefix="live")
    with engine.begin() as conn:
        conn.execute(
            insert(ArticleRow),
            [{"id": r.id, "title": r.title, "body": r.body, "received_at": AT} for r in rows],
        )
        ids = (
            conn.execute(
                insert(PredictionRow).returning(PredictionRow.id),
                [
                    {
                        "article_id": r.id,
                        "model_version": version,
                        "topic": "Sports",
                        "confidence": 0.3,
                        "margin": 0.01,
                        "probabilities": [0.25, 0.3, 0.25, 0.2],
                        "latency_ms": 1.0,
                        "received_at": AT,
                        "predicted_at": AT,
                    }
                    for r in rows
                ],
            )
            .scalars()
            .all()
        )
        conn.execute(
            insert(ReviewItemRow),
            [
                {
                    "prediction_id": ids[i],
                    "article_id": rows[i].id,
                    "reason": reason,
                    "priority": 1,
                    "round": 1,
                    "status": "done",
                    "label": label,
                    "labelled_at": AT + timedelta(seconds=i),
                }
                for i, (reason, label) in labels.items()
            ],
        )


def _last_event(engine: Engine) -> tuple[str, str, dict[str, Any]]:
    with engine.connect() as conn:
        kind, reason, metrics = conn.execute(
            text("SELECT kind, reason, metrics FROM model_events ORDER BY id DESC LIMIT 1")
        ).one()
    return str(kind), str(reason), dict(metrics)


def _models_page(settings: Settings, engine: Engine) -> str:
    from monitoring.web.app import create_app
    from monitoring.web.users import add_user

    add_user(engine, "olga", "correct horse battery", "admin")
    with TestClient(create_app(settings, engine=engine)) as http:
        token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/login").text)
        assert token
        http.post(
            "/login",
            data={"username": "olga", "password": "correct horse battery", "csrf_token": token[1]},
            follow_redirects=False,
        )
        page = http.get("/models")
    assert page.status_code == 200
    return str(page.text)


def test_live_check_refuses_missing_or_worse_evidence_and_promotes_a_tie(
    db: Settings, tmp_path: Path, tiny_bert: Path, tiny_roberta: Path
) -> None:
    env = db.model_copy(
        update={
            "home": tmp_path / "home",
            "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "live_check_reviewed": 300,
            "live_check_window": 400,
        }
    )
    twin_dir = tmp_path / "twin"  # the champion's weights under another version
    shutil.copytree(tiny_bert, twin_dir)
    write_metadata(twin_dir, read_metadata(tiny_bert).model_copy(update={"version": "tiny-twin"}))
    champion = register_model_folder(env, tiny_bert)
    worse = register_model_folder(env, tiny_roberta)
    twin = register_model_folder(env, twin_dir)
    engine = make_engine(env)
    offline = synthetic_news(40, seed=2, prefix="test")
    assert promote(env, champion, eval_rows=offline, engine=engine).passed  # no champion yet

    # no reviewed items: no live evidence, nothing promoted (live_check_required)
    refused = promote(env, twin, eval_rows=offline, engine=engine, policy=LOOSE)
    assert not refused.passed
    assert registry.version_by_alias(env, registry.CHAMPION).version == champion  # type: ignore[union-attr]
    kind, reason, metrics = _last_event(engine)
    assert kind == "rejected" and "live check: insufficient evidence (n=0 " in reason
    assert metrics["live_check"]["verdict"] == "insufficient"

    # 300 uniformly reviewed live items: the champion answers "Sports" on every one, the
    # worse challenger "World"; reviewers say Sports, Sports, Sports, World, Business
    texts = [r.text for r in synthetic_news(3, seed=11)]
    assert {s.topic for s in Classifier.load(tiny_bert, warmup=False).predict(texts)} == {"Sports"}
    assert {s.topic for s in Classifier.load(tiny_roberta, warmup=False).predict(texts)} == {
        "World"
    }
    cycle = ["Sports", "Sports", "Sports", "World", "Business"]
    labels = {i: ("uniform", cycle[i % 5]) for i in range(300)}
    labels[300] = ("uncertainty", "World")  # the hard ones are not the unbiased slice
    labels[301] = ("uniform", "__none__")  # "none of these" names no topic
    _store(engine, read_metadata(tiny_bert).version, labels, 410)

    refused = promote(env, worse, eval_rows=offline, engine=engine, policy=LOOSE)
    assert not refused.passed
    kind, reason, metrics = _last_event(engine)
    live = metrics["live_check"]
    assert kind == "rejected" and "not shown non-inferior" in reason
    assert live["verdict"] == "inferior" and live["n_reviewed"] == 300
    assert live["counts"] == {"both": 0, "challenger_only": 60, "champion_only": 180, "neither": 60}
    assert live["champion_accuracy"] == 0.6 and live["challenger_accuracy"] == 0.2
    assert live["difference"] == pytest.approx(-0.4) and live["interval"][1] < -0.3
    assert live["window"]["n"] == 400 and live["window"]["agreement"] == 0.0
    assert registry.version_by_alias(env, registry.CHAMPION).version == champion  # type: ignore[union-attr]

    # the tie (the same answers): promoted; the rows it trained on are left out
    trained = [f"live-{i}" for i in range(20)] + ["live-350", "ag-news-row-7"]  # 2 unreviewed
    promoted = promote(
        env, twin, eval_rows=offline, engine=engine, policy=LOOSE, live_exclude=trained
    )
    assert promoted.passed
    kind, reason, metrics = _last_event(engine)
    live = metrics["live_check"]
    assert kind == "promoted" and "non-inferior within the 0.02 margin" in reason
    assert live["n_reviewed"] == 280 and live["left_out"] == 20 and live["difference"] == 0.0
    assert -0.02 < live["interval"][0] <= 0 <= live["interval"][1]
    assert live["window"] == {"n": 400, "agreement": 1.0, "confidence_psi": 0.0}
    assert registry.version_by_alias(env, registry.CHAMPION).version == twin  # type: ignore[union-attr]
    # the drift check holds the new champion's reviewed accuracy to what the live check measured
    served = read_metadata(registry.local_copy(env, twin)).version
    assert metrics["model_version"] == served
    held = promoted_live_accuracy(engine, version=served)
    assert held is not None and (held.accuracy, held.n) == (live["challenger_accuracy"], 280)

    page = _models_page(env, engine)
    table = page[page.index('id="live-checks"') :]
    for shown in ("non-inferior", "inferior", "insufficient", "-0.400", "+0.000", "280"):
        assert shown in table, shown
    engine.dispose()
