"""A split retrained for real, on Postgres and MLflow with a tiny BERT champion (5 steps,
fp32): World's reviewed examples are relabelled into Politics and Conflict, and the next
topic retraining trains a model with the two parts instead of World, each part gated as a new
topic. The gates are opened wide (F1 threshold 0.01, no old-class loss ruled out): a 5-step
random model is not the subject, the replacement is; promoted, World is `split` and the parts
`active`; if a part's interval still fails (no held-out example found) the split waits as a
whole, nothing half-done. The gate's decisions themselves: tests/unit/retraining/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from monitoring.scheduler import drift_job
from monitoring.topics import onboarding, split
from monitoring.topics.service import (
    champion_labels,
    onboarding_request,
    onboarding_train,
    retrain_if_ready,
)
from pipeline.core import registry
from pipeline.core.db.engine import make_engine
from pipeline.core.model_folder import read_metadata
from pipeline.core.settings import Settings
from retraining.bases.tiny import write_tiny_base_folder
from retraining.flow import FlowOptions, run_flow
from retraining.promotion import promote
from retraining.recipe import Recipe
from retraining.train import TrainConfig
from retraining.training_data import DataChoice
from tests.integration.test_db_topics import _articles, _prediction, _review

pytestmark = [pytest.mark.integration, pytest.mark.model]
PARTS = {
    "Politics": "election vote minister parliament government campaign",
    "Conflict": "war troops attack ceasefire rebels shelling",
}


@pytest.fixture
def env(db: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    s = db.model_copy(
        update={
            "home": tmp_path / "home",
            "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "registered_model_name": f"split-{tmp_path.name}"[:60],
            "eval_limit": 200,
            "retrain_epochs": None,
            "retrain_max_rows": None,
            "retrain_quantize": None,
            "topic_min_labels": 4,
            "topic_base_per_class": 16,
            # a 5-step tiny model: the gates are opened, the replacement is the subject
            "topic_min_f1": 0.01,
            "topic_gate_old_max_loss": 0.99,
            "gate_max_macro_f1_drop": 1.0,
            "gate_max_class_f1_drop": 1.0,
            "live_check_required": False,
        }
    )
    engine = make_engine(s)
    yield s, engine
    engine.dispose()


def _tiny_champion(s: Settings, engine: Engine, tmp_path: Path) -> tuple[str, list[str]]:
    """A 5-step tiny BERT on AG News' four topics, registered and promoted."""
    recipe = Recipe(
        base=str(write_tiny_base_folder(tmp_path / "tiny-bert", "bert")),
        data=DataChoice(source="sample", max_rows=200, seed=7),
        training=TrainConfig(
            epochs=1, batch_size=16, learning_rate=5e-4, max_length=32, max_steps=5, seed=3
        ),
        quantize=False,
    )
    result = run_flow(
        s, recipe, options=FlowOptions(baseline=False, checkpoints=False, card_speed=False)
    )
    assert result.registered_version and result.splits is not None
    assert promote(s, result.registered_version, eval_rows=result.splits.test, engine=engine)
    version, labels = champion_labels(s)
    assert version is not None
    return version, labels


def test_a_removed_topic_is_retrained_away(env: tuple[Settings, Engine], tmp_path: Path) -> None:
    """An admin removes Sports: the scheduler's job asks for a retraining without it, the
    gates decide, the champion has three topics and Sports is `removed`."""
    s, engine = env
    v1, labels = _tiny_champion(s, engine, tmp_path)
    assert "Sports" in labels
    onboarding.retire(engine, "Sports", into=None, admin="ann", champion_labels=labels)
    request = onboarding_request(s, engine)
    assert request is not None and "remove Sports" in request.reason, request
    _, removal = drift_job(
        s, engine, request=request, train=partial(onboarding_train, quantize=False), report=False
    )
    assert removal is not None and removal.status == "promoted", removal
    v2, smaller = champion_labels(s)
    assert v2 != v1 and sorted(smaller) == sorted(set(labels) - {"Sports"})
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM topics WHERE name = 'Sports'"))
        assert status.scalar_one() == "removed"
    assert onboarding_request(s, engine) is None  # nothing left to ask for


def test_world_replaced_by_its_parts(env: tuple[Settings, Engine], tmp_path: Path) -> None:
    s, engine = env
    v1, labels = _tiny_champion(s, engine, tmp_path)
    assert "World" in labels

    # six reviewed World examples of each kind, relabelled into the parts
    ids = {p: [f"{p[:3].lower()}-{i}" for i in range(6)] for p in PARTS}
    for part, members in ids.items():
        _articles(engine, members)
        for i, a in enumerate(members):
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE articles SET title = :t, body = :b WHERE id = :a"),
                    {"t": f"{PARTS[part]} {i}", "b": f"{PARTS[part]} report {a}", "a": a},
                )
            when = datetime.now(UTC) - timedelta(hours=1)
            _review(
                engine, _prediction(engine, a, version=str(v1)), a, label="World", labelled_at=when
            )
    started = split.start_split(engine, "World", list(PARTS), admin="ann", champion_labels=labels)
    assert started.queued == 12
    assert retrain_if_ready(s, engine, quantize=False) is None  # 0 of 4 labels each
    with engine.begin() as conn:
        for part, members in ids.items():
            conn.execute(
                text(
                    "UPDATE review_items SET status = 'done', label = :l, labelled_at = now(), "
                    "reviewer = 'rev' WHERE reason = 'split' AND article_id = ANY(:a)"
                ),
                {"l": part, "a": members},
            )

    outcome = retrain_if_ready(s, engine, quantize=False)
    assert outcome is not None and outcome.version is not None, outcome
    # the challenger has the parts instead of World, and each part was gated on its own
    trained = read_metadata(registry.local_copy(s, outcome.version)).labels
    assert set(trained) == (set(labels) - {"World"}) | set(PARTS)
    assert sorted(g["topic"] for g in outcome.gate) == sorted(PARTS)
    assert outcome.old_classes is not None  # the other classes' check ran
    with engine.connect() as conn:
        rows: dict[str, str] = dict(conn.execute(text("SELECT name, status FROM topics")).all())
    if outcome.status == "promoted":  # the promoted statuses: test_topic_split.py too
        v2, grown = champion_labels(s)
        assert v2 != v1 and set(grown) == set(trained)
        assert rows == {"World": "split", "Politics": "active", "Conflict": "active"}
        assert split.split_progress(engine, min_labels=4) == []
    else:  # what a 5-step model gets (measured): a part not promoted, the split waits whole
        assert outcome.status in ("needs_labels", "rejected"), outcome
        assert rows == {"World": "splitting", "Politics": "onboarding", "Conflict": "onboarding"}
        assert champion_labels(s)[0] == v1
        (waiting,) = split.split_progress(engine, min_labels=4)
        assert not waiting.ready and "more" in waiting.text()
