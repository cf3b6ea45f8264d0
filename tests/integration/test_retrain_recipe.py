"""Retraining keeps the champion's recipe, on real Postgres and MLflow through the scheduler's
drift job (an explicit request): a champion trained with a non-default recipe (a tiny BERT
base, a stratified 400 of the AG News sample with another seed, max length 64, 5 steps, a
higher learning rate, fp32 only) is retrained with
that recipe plus the reviewed labels; a recipe that cannot run here (its base folder gone,
its data file changed) is refused with a ``retrain_refused`` event and trains nothing; a
champion that recorded no recipe retrains with the default one, saying so."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from monitoring.decision import RetrainRequest
from monitoring.scheduler import drift_job
from pipeline.core import registry
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ArticleRow, PredictionRow, ReviewItemRow
from pipeline.core.model_folder import read_metadata
from pipeline.core.settings import Settings
from retraining.bases.tiny import write_tiny_base_folder, write_tiny_model_folder
from retraining.flow import FlowOptions, run_flow
from retraining.promotion import promote
from retraining.recipe import Recipe
from retraining.register import register_model_folder
from retraining.retrain_recipe import default_recipe, inherit_recipe
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

pytestmark = [pytest.mark.integration, pytest.mark.model]
QUICK = FlowOptions(baseline=False, checkpoints=False, card_speed=False)
TINY_TRAINING = TrainConfig(
    epochs=1, batch_size=16, learning_rate=5e-4, max_length=64, max_steps=5, seed=3
)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (creating one costs seconds); each test registers
    under its own model name."""
    return f"sqlite:///{tmp_path_factory.mktemp('recipe-mlflow')}/mlflow.db"


@pytest.fixture
def env(db: Settings, tmp_path: Path, mlflow_store: str) -> Iterator[tuple[Settings, Engine]]:
    s = db.model_copy(
        update={
            "home": tmp_path / "home",
            "mlflow_tracking_uri": mlflow_store,
            "registered_model_name": f"recipe-{tmp_path.name}"[:60],
            "eval_limit": 300,
            "retrain_cooldown_hours": 0.0,  # several requests back to back
            "retrain_daily_cap": 100,
            # every setting unset: the champion's recipe alone decides
            "retrain_epochs": None,
            "retrain_max_rows": None,
            "retrain_quantize": None,
            "retrain_warm_start": True,
            # 5-step tiny models: any challenger may replace the champion (the test is
            # about the recipe); nobody reviews, so no live evidence is required
            "gate_max_macro_f1_drop": 1.0,
            "gate_max_class_f1_drop": 1.0,
            "live_check_required": False,
        }
    )
    engine = make_engine(s)
    yield s, engine
    engine.dispose()


def _champion(settings: Settings, engine: Engine, recipe: Recipe) -> str:
    result = run_flow(settings, recipe, options=QUICK)
    assert result.registered_version and result.splits is not None
    assert promote(settings, result.registered_version, eval_rows=result.splits.test, engine=engine)
    return result.registered_version


def _request(settings: Settings, engine: Engine, version: str, why: str):  # type: ignore[no-untyped-def]
    folder = registry.local_copy(settings, version)
    request = RetrainRequest(reason=why, requested_by="test")
    return drift_job(settings, engine, model_dir=folder, report=False, request=request)


def _reviews(engine: Engine, version: str) -> None:
    """40 reviewed (uncertainty-sampled) articles with distinct texts: 30 received now, 10
    five days earlier."""
    now = dt.datetime.now(dt.UTC)
    stamps = [now - dt.timedelta(days=5 if i < 10 else 0, seconds=i) for i in range(40)]
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    with engine.begin() as conn:
        for i, at in enumerate(stamps):
            aid = f"recipe-review-{i}"
            conn.execute(
                insert(ArticleRow),
                {
                    "id": aid,
                    "title": f"reviewed story {i} of the feed",
                    "body": f"text {i}",
                    "received_at": at,
                },
            )
            pid = conn.execute(
                insert(PredictionRow).returning(PredictionRow.id),
                {
                    "article_id": aid,
                    "model_version": version,
                    "topic": "World",
                    "confidence": 0.5,
                    "margin": 0.1,
                    "probabilities": [0.5],
                    "latency_ms": 1.0,
                    "received_at": at,
                    "predicted_at": at,
                },
            ).scalar_one()
            conn.execute(
                insert(ReviewItemRow),
                {
                    "prediction_id": pid,
                    "article_id": aid,
                    "reason": "uncertainty",
                    "priority": 1,
                    "round": 1,
                    "status": "done",
                    "label": labels[i % 4],
                    "labelled_at": now,
                },
            )


def _events(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, reason, previous_version FROM model_events ORDER BY id")
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_non_default_recipe_is_retrained_with_that_recipe(
    env: tuple[Settings, Engine], tmp_path: Path
) -> None:
    s, engine = env
    base = write_tiny_base_folder(tmp_path / "tiny-bert", "bert")
    recipe = Recipe(
        base=str(base),
        data=DataChoice(source="sample", max_rows=400, seed=7),  # the union: same code, 4 s more
        training=TINY_TRAINING,
        quantize=False,
    )
    v1 = _champion(s, engine, recipe)
    recorded = Recipe.from_dict(read_metadata(registry.local_copy(s, v1)).recipe)
    assert recorded == dataclasses.replace(recipe, data_files=recorded.data_files)
    assert [f.path for f in recorded.data_files] == [
        "ag_news/train_first581.csv.gz",
        "ag_news/train_sample5000_metarepicl.csv.gz",
    ]

    _reviews(engine, v1)
    _, outcome = _request(s, engine, v1, "the recipe test")
    assert outcome is not None and outcome.status == "promoted", outcome
    assert outcome.version is not None and outcome.version != v1
    challenger = Recipe.from_dict(read_metadata(registry.local_copy(s, outcome.version)).recipe)
    # the same recipe; only the warm start differs: the champion's weights
    assert challenger == dataclasses.replace(recorded, warm_start=v1)
    run = registry.client(s).get_run(
        registry.client(s).get_model_version(s.registered_model_name, outcome.version).run_id
    )
    assert run.data.params["recipe.base"] == str(base)
    assert run.data.params["recipe.data.max_rows"] == "400"
    assert run.data.params["recipe.training.max_steps"] == "5"
    assert run.data.params["recipe.training.max_length"] == "64"
    assert run.data.tags["recipe_from"] == f"champion:{v1}"
    assert run.data.tags["trigger"] == "drift" and "recipe" in run.data.tags
    # the reviewed rows: 70 % of the 40 train; those received within 72 h of the newest (30 of
    # the 40) are repeated until they are about a fifth of the training rows
    tags = run.data.tags
    assert tags["reviewed_labels"] == "28", tags
    assert 0 < int(tags["reviewed_recent"]) < 28 and int(tags["reviewed_recent_repeat"]) > 1, tags

    # a setting that is set overrides the recipe, and says so
    plan = inherit_recipe(
        s.model_copy(update={"retrain_max_rows": 200}), dataset="ag_news", warm_start=False
    )
    assert plan.recipe.data.max_rows == 200 and plan.recipe.warm_start is None
    assert plan.recipe.training == TINY_TRAINING
    assert any("max rows 400 -> 200" in n for n in plan.notes), plan.notes


def test_a_recipe_that_cannot_run_here_is_refused(
    env: tuple[Settings, Engine], tmp_path: Path
) -> None:
    s, engine = env
    base = write_tiny_base_folder(tmp_path / "tiny-bert", "bert")
    rows = tmp_path / "rows.csv"
    kinds = ["business", "sport", "science"]
    text_rows = [f"{kinds[i % 3]} story {i} about {kinds[i % 3]} things" for i in range(120)]
    original = "text,label\n" + "".join(f"{t},{kinds[i % 3]}\n" for i, t in enumerate(text_rows))
    rows.write_text(original)
    v1 = _champion(s, engine, Recipe(dataset=str(rows), base=str(base), training=TINY_TRAINING))
    versions = len(registry.list_versions(s))

    rows.write_text(original.replace("story 7 ", "story seven "))  # the data file changed
    _, changed = _request(s, engine, v1, "after the file changed")
    assert changed is not None and changed.status == "refused", changed
    assert "changed since the model was trained" in changed.reason and str(rows) in changed.reason

    rows.write_text(original)
    shutil.rmtree(base)  # the base is not installed here any more
    _, gone = _request(s, engine, v1, "after the base went")
    assert gone is not None and gone.status == "refused", gone
    assert f"the recipe's base {str(base)!r} is not available here" in gone.reason

    assert len(registry.list_versions(s)) == versions  # nothing trained, nothing registered
    assert registry.version_by_alias(s, registry.CHAMPION).version == v1  # type: ignore[union-attr]
    refused = [e for e in _events(engine) if e[0] == "retrain_refused"]
    assert [(r, p) for _, r, p in refused] == [(changed.reason, v1), (gone.reason, v1)]
    finished = [e[1] for e in _events(engine) if e[0] == "retrain_finished"]
    assert finished == ["refused", "refused"]


def test_a_champion_without_a_recorded_recipe_gets_the_default_one(
    env: tuple[Settings, Engine], tmp_path: Path
) -> None:
    s, _ = env
    folder = write_tiny_model_folder(tmp_path / "old", "bert", version="before-recipes")
    old = register_model_folder(s, folder)
    registry.set_alias(s, registry.CHAMPION, old)
    assert read_metadata(registry.local_copy(s, old)).recipe is None
    plan = inherit_recipe(s, dataset="ag_news", warm_start=True)
    assert plan.source == "default" and plan.champion == old
    assert plan.recipe == default_recipe("ag_news")  # minilm, no warm start from tiny-bert
    assert "the champion recorded no recipe" in plan.notes
    assert any("no warm start: the champion's base 'tiny-bert'" in n for n in plan.notes)
