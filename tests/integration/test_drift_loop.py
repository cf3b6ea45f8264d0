"""Drift monitoring and the retraining loop against real Kafka, Postgres and MLflow, starting
from the shared briefly fine-tuned MiniLM (tests/integration/conftest.py) and retraining it
through the scheduler's real path on a small budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from monitoring.drift import load_window, run_drift_check
from monitoring.retrain import RetrainOutcome, maybe_retrain
from pipeline.core import registry
from pipeline.core.datasets import LabelledText, load_dataset
from pipeline.core.db.engine import make_engine
from pipeline.core.model_folder import read_metadata
from pipeline.core.settings import Settings
from pipeline.produce import Outgoing, article_messages, produce
from retraining.bases.tiny import write_tiny_model_folder
from retraining.promotion import promote
from retraining.register import register_model_folder
from tests.conftest import free_port
from tests.integration.conftest import MINILM_GROUP, TunedModel, registry_copy
from tests.integration.helpers import Worker, prediction_counts, read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.model]


@pytest.fixture(scope="module")
def ag(data_dir: Path, ag_rows: dict[str, list[LabelledText]]) -> dict[str, list[LabelledText]]:
    return {**ag_rows, "ng": load_dataset("20newsgroups", split="test", data_dir=data_dir)}


@pytest.fixture
def env(db: Settings, topics: Settings, tmp_path: Path) -> Settings:
    return topics.model_copy(
        update={
            "pg_database": db.pg_database,
            "home": tmp_path / "home",
            "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "drift_min_window": 500,
            "drift_window_size": 500,
            "model_poll_s": 2.0,
            # the automatic retraining runs its real path on a small budget: one epoch over
            # 1,200 base rows plus the reviewed labels, scored on 800 test rows, fp32 only
            # (a briefly trained model is too unsure for the int8 parity gate)
            "retrain_epochs": 1,
            "retrain_max_rows": 1200,
            "retrain_quantize": False,
            "eval_limit": 800,
            "reports_dir": tmp_path / "reports",
            # nobody reviews in these tests: the live check before a promotion has no
            # reviewed items, so it is recorded as missing evidence and the offline gate
            # decides; its agreement on recent traffic is scored on 300 articles
            "live_check_required": False,
            "live_check_window": 300,
            # the live reference takes over after the first two stable windows
            "live_reference_rows": 1000,
        }
    )


@pytest.fixture
def tuned_env(env: Settings, tmp_path: Path, tuned_minilm: TunedModel) -> Settings:
    """``env`` with version 1 (the shared briefly tuned MiniLM) registered, not yet promoted."""
    uri = registry_copy(tuned_minilm, tmp_path / "registry" / "mlflow.db")
    return env.model_copy(update={"mlflow_tracking_uri": uri})


@pytest.fixture
def worker(env: Settings, tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def _stream(env: Settings, rows: list, run_id: str, n: int) -> None:  # type: ignore[type-arg]
    stats = produce(
        article_messages(rows, limit=n, loop=False, run_id=run_id),
        bootstrap=env.kafka_bootstrap,
        topic=env.topic_articles,
        rate=0,
    )
    assert stats.failed == 0
    wait_for(lambda: prediction_counts(env, run_id)[0] >= n, 240, f"{n} rows for {run_id}")


@MINILM_GROUP
@pytest.mark.timeout(1500)  # the shared fixture (first use) and one short retraining
def test_stable_then_shifted_stream_then_retrain_and_hot_swap(
    tuned_env: Settings,
    ag: dict[str, list[LabelledText]],
    worker: list[Worker],
    tmp_path: Path,
    tuned_minilm: TunedModel,
) -> None:
    env = tuned_env
    engine = make_engine(env)
    v1 = tuned_minilm.version
    assert promote(env, v1, eval_rows=ag["test"][:800], engine=engine).passed
    w = Worker(env, None, free_port(), tmp_path / "worker.log")  # follows the champion
    worker.append(w)
    w.wait_ready(timeout=120)

    # empty window: insufficient, never drift
    assert run_drift_check(env, engine=engine).level == "insufficient"

    # a stable stream: three windows of AG News (texts the model never saw) are all ok, the
    # first two against the training reference, the third against the live one
    stable = ag["test"][1000:2500]
    levels = []
    for i in range(3):
        _stream(env, stable[i * 500 : (i + 1) * 500], f"ok{i}", 500)
        r = run_drift_check(env, engine=engine, report=(i == 0))
        levels.append((r.level, round(r.psi_confidence or -1, 3), round(r.psi_topics or -1, 3)))
    assert all(lv == "ok" for lv, _, _ in levels), levels

    first = run_drift_check(env, engine=engine)
    assert first.report_path and Path(first.report_path).stat().st_size > 100_000
    assert first.psi_evidently is not None

    # a shifted stream: 20 Newsgroups posts; flagged in the first full window
    _stream(env, ag["ng"][:500], "ng", 500)
    shifted = run_drift_check(env, engine=engine)
    assert shifted.level == "drift", shifted
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM drift_runs")).scalar_one() == 6
        used = list(
            conn.execute(
                text(
                    "SELECT r.kind FROM drift_runs d JOIN drift_references r "
                    "ON r.id = d.reference_id ORDER BY d.id"
                )
            ).scalars()
        )
    # the training reference first; the champion's first 1,000 live predictions after that
    assert used[0] == "training" and used[-2:] == ["live", "live"], used

    # drift -> retraining -> challenger promoted -> the running worker switches version
    outcome = maybe_retrain(env, engine=engine, drift_run_id=shifted.run_id)
    assert outcome.status == "promoted", outcome
    new_version = registry.version_by_alias(env, registry.CHAMPION)
    assert new_version is not None and new_version.version == outcome.version
    _stream(env, ag["test"][4000:4300], "after", 300)
    wait_for(lambda: w.metric("newsflow_model_info") >= 1, 10, "metrics")
    with engine.connect() as conn:
        versions = dict(
            conn.execute(
                text(
                    "SELECT model_version, count(*) FROM predictions "
                    "WHERE article_id LIKE 'after-%' GROUP BY 1"
                )
            ).all()
        )
        total, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT article_id) FROM predictions")
        ).one()
    assert new_version.model_version in versions
    assert total == distinct == 1500 + 500 + 300  # nothing lost, nothing twice

    # a cooldown now holds
    again = maybe_retrain(env, engine=engine, drift_run_id=shifted.run_id)
    assert again.status == "cooldown"
    engine.dispose()


@MINILM_GROUP
def test_worse_challenger_is_not_promoted(
    tuned_env: Settings,
    ag: dict[str, list[LabelledText]],
    tuned_minilm: TunedModel,
    tmp_path: Path,
) -> None:
    env = tuned_env
    engine = make_engine(env)
    good = tuned_minilm.version
    assert promote(env, good, eval_rows=ag["test"][:800], engine=engine).passed
    # a worse challenger with the same topics: an untrained (random) encoder and head
    worse = write_tiny_model_folder(
        tmp_path / "worse", "bert", labels=tuned_minilm.labels, version="worse-1"
    )
    bad = register_model_folder(env, worse)
    decision = promote(env, bad, eval_rows=ag["test"][:800], engine=engine)
    assert not decision.passed
    assert registry.version_by_alias(env, registry.CHAMPION).version == good  # type: ignore[union-attr]
    assert registry.version_by_alias(env, registry.CHALLENGER).version == bad  # type: ignore[union-attr]
    with engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM model_events ORDER BY id"))]
    assert kinds == ["promoted", "rejected"]
    engine.dispose()


def test_missing_reference_and_mlflow_down_are_recorded(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(env)
    missing = run_drift_check(env, engine=engine)  # no champion registered at all
    assert missing.level == "error" and "no reference" in missing.reason

    down = env.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    calls: list[tuple[str, object]] = []
    got_past_mlflow: list[str] = []

    def train_with_mlflow_down(settings: Settings, **kwargs: object) -> RetrainOutcome:
        calls.append((settings.mlflow_tracking_uri, kwargs.get("drift_run_id")))
        registry.ensure_experiment(settings)  # the first MLflow call of a real run
        got_past_mlflow.append(settings.mlflow_tracking_uri)  # must stay empty
        return RetrainOutcome("promoted", "MLflow answered although it is down", "99")

    outcome = maybe_retrain(
        down, engine=engine, drift_run_id=missing.run_id, train=train_with_mlflow_down
    )
    assert calls == [(down.mlflow_tracking_uri, missing.run_id)]  # called once, with the run
    assert got_past_mlflow == []  # the MLflow call raised; nothing after it ran
    assert outcome.status == "failed" and outcome.version is None, outcome
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, reason, version, drift_run_id FROM model_events ORDER BY id")
        ).all()
    assert [r[0] for r in rows] == ["retrain_started", "retrain_failed"]
    _, reason, version, drift_run_id = rows[1]
    assert version is None and drift_run_id == missing.run_id
    assert reason.startswith("MlflowException: ") and "127.0.0.1:9" in reason, reason
    assert outcome.reason in reason
    engine.dispose()


def test_bad_stream_does_not_move_drift(
    env: Settings, data_dir: Path, tiny_bert: Path, worker: list[Worker], tmp_path: Path
) -> None:
    """Dead letters never count as predictions, so they cannot fake drift: a running worker
    sends every malformed message to the DLQ and predicts only the good ones, and the drift
    window holds exactly those."""
    w = Worker(env, tiny_bert, free_port(), tmp_path / "worker.log")
    worker.append(w)
    w.wait_ready()
    rows = load_dataset("ag_news", split="test", data_dir=data_dir)[:20]
    bad = [Outgoing(f"bad-{i}".encode(), b"not json") for i in range(50)]
    good = list(article_messages(rows, limit=20, loop=False, run_id="good"))
    stats = produce(
        iter(bad[:25] + good + bad[25:]),
        bootstrap=env.kafka_bootstrap,
        topic=env.topic_articles,
        rate=0,
    )
    assert stats.failed == 0
    wait_for(lambda: prediction_counts(env, "good")[0] >= 20, 120, "20 good predictions")
    wait_for(lambda: w.metric("newsflow_dead_letters_total") >= 50, 60, "50 dead letters")
    time.sleep(2)  # let anything extra land
    assert w.metric("newsflow_dead_letters_total") == 50
    assert prediction_counts(env, "") == (20, 20)  # the good ones, and nothing else
    assert len(read_topic(env, env.topic_dlq, expect=50)) == 50
    engine = make_engine(env)
    window = load_window(engine, read_metadata(tiny_bert).version, size=env.drift_window_size)
    engine.dispose()
    assert len(window.confidences) == 20
    assert w.proc.poll() is None  # bad input did not stop the worker
