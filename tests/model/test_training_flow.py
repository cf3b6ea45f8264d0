"""Model tier: a tiny encoder trained for a few steps inside the test, exported, registered
in a real MLflow store, promoted and rolled back (events in real Postgres)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.cleaning import clean_text
from pipeline.core import registry
from pipeline.core.datasets import load_dataset
from pipeline.core.db.engine import make_engine
from pipeline.core.db.models import ModelEventRow
from pipeline.core.errors import ModelError
from pipeline.core.model_folder import read_metadata
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings
from retraining.bases.resolve import resolve_base_model
from retraining.data import make_splits
from retraining.errors import TrainingError
from retraining.flow import FlowOptions, run_flow
from retraining.promotion import promote, rollback
from retraining.recipe import Recipe
from retraining.train import TrainConfig
from tests.model.synthetic import write_bert_base

pytestmark = [pytest.mark.model, pytest.mark.integration]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT saved as a plain Hugging Face folder (what `--base DIR` takes)."""
    return write_bert_base(tmp_path_factory.mktemp("base") / "tiny-bert")


def test_flow_registers_promotes_and_rolls_back(
    db: Settings, tiny_base: Path, tmp_path: Path, data_dir: Path
) -> None:
    s = db.model_copy(
        update={"home": tmp_path / "home", "mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    )
    train = load_dataset("ag_news", split="train", data_dir=data_dir)[:400]
    test = load_dataset("ag_news", split="test", data_dir=data_dir)[:200]
    splits = make_splits(train, test)
    cfg = TrainConfig(epochs=1, max_steps=12, batch_size=16, learning_rate=1e-3)
    first = run_flow(s, Recipe(base=str(tiny_base), training=cfg), splits=splits)
    summary = first.summary
    assert summary["parity_ok"] is True
    assert summary["parity"]["fp32_max_abs_diff"] <= 1e-3
    assert first.registered_version == "1"
    assert 0 <= summary["accuracy"] <= 1 and 0 <= summary["ece"] <= 1
    assert summary["tfidf_lr_accuracy"] > 0.25
    choice = summary["int8_choice"]  # the int8 recipe was chosen on validation texts
    assert choice is not None and choice["int8_validation_n"] == len(splits.validation)
    assert choice["int8_tried"][0][0] == 0 and 0 <= choice["int8_validation_agreement"] <= 1
    agreement = summary["int8_test_agreement"]
    assert agreement is not None and 0 < agreement <= 1
    meta = read_metadata(first.model_dir)
    assert meta.metrics["int8_test_agreement"] == agreement
    report = Path(summary["report_dir"])
    for name in ("confusion_matrix.png", "confusion_matrix.csv", "reliability.png"):
        assert (report / name).stat().st_size > 0

    engine = make_engine(s)
    decision = promote(s, "1", eval_rows=test, engine=engine)
    assert decision.passed
    assert registry.version_by_alias(s, registry.CHAMPION).version == "1"  # type: ignore[union-attr]

    second = run_flow(
        s,
        Recipe(
            base=str(tiny_base),
            training=TrainConfig(epochs=1, max_steps=3, seed=5),
            quantize=False,  # three steps leave the model too unsure for the int8 parity gate
        ),
        splits=splits,
        options=FlowOptions(baseline=False),
    )
    assert second.registered_version == "2"
    promote(s, "2", eval_rows=test, engine=engine, force=True)
    assert registry.version_by_alias(s, registry.CHAMPION).version == "2"  # type: ignore[union-attr]
    assert rollback(s, engine=engine) == ("2", "1")
    assert registry.version_by_alias(s, registry.CHAMPION).version == "1"  # type: ignore[union-attr]
    with engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(select(ModelEventRow.kind).order_by(ModelEventRow.id))]
    assert kinds == ["promoted", "promoted", "rollback"]
    engine.dispose()

    # warm start: the champion's logged weights seed the next run (retraining uses this)
    state = registry.torch_state(s, "1", tmp_path / "warm")
    assert state is not None and state.stat().st_size > 0
    frozen = TrainConfig(epochs=1, max_steps=1, learning_rate=1e-12, seed=9)
    warm = run_flow(
        s,
        Recipe(base=str(tiny_base), training=frozen),
        splits=splits,
        options=FlowOptions(baseline=False, register=False, init_from=state),
    )
    assert warm.summary["warm_start"] is True
    texts = [r.text for r in test[:20]]
    champion_logits = Classifier.load(registry.local_copy(s, "1"), precision="fp32").logits(texts)
    warm_logits = Classifier.load(warm.model_dir, precision="fp32").logits(texts)
    assert warm_logits == pytest.approx(champion_logits, abs=1e-3)
    other = make_splits(
        [r for r in train if r.label != "World"], [r for r in test if r.label != "World"]
    )
    with pytest.raises(TrainingError, match="warm-start"):
        run_flow(
            s,
            Recipe(base=str(tiny_base), training=frozen),
            splits=other,
            options=FlowOptions(register=False, baseline=False, init_from=state),
        )

    # behaviour of the served artefact: invariance to case, whitespace and HTML noise
    clf = Classifier.load(registry.local_copy(s, "1"))
    base = "Stocks rally as the central bank cuts interest rates"
    variants = [
        base.upper(),
        "  Stocks   rally as the\n central bank cuts interest rates ",
        clean_text(f"<p>{base}</p><script>alert(1)</script>"),
    ]
    ref = clf.predict([base])[0]
    for v in variants:
        got = clf.predict([v])[0]
        assert got.topic == ref.topic
        assert got.probabilities == pytest.approx(ref.probabilities, abs=1e-4)


def test_not_a_hugging_face_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a Hugging Face model folder"):
        resolve_base_model(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_base_model("./no/such/folder")


def test_broken_base_folder_fails_before_training(tmp_path: Path) -> None:
    from retraining.modeling import load_base

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TrainingError, match="cannot load base model"):
        load_base(str(tmp_path), 4)


def test_layer_decay_scales_each_layer_and_keeps_norms_undecayed(tiny_base: Path) -> None:
    from retraining.modeling import load_base
    from retraining.train import param_groups

    model, _ = load_base(str(tiny_base), 3)
    cfg = TrainConfig(learning_rate=1e-3, layer_decay=0.5, weight_decay=0.1)
    groups = param_groups(model, cfg)
    lr_of = {}
    for g in groups:
        for p in g["params"]:
            lr_of[id(p)] = (g["lr"], g["weight_decay"])
    named = dict(model.named_parameters())
    assert len(lr_of) == len(named)  # every parameter in exactly one group
    # 2 layers: head 1e-3, layer 1 5e-4, layer 0 2.5e-4, embeddings 1.25e-4
    assert lr_of[id(named["head.weight"])] == (pytest.approx(1e-3), 0.1)
    layer1 = next(n for n in named if ".layer.1." in n and n.endswith("query.weight"))
    layer0 = next(n for n in named if ".layer.0." in n and n.endswith("query.weight"))
    assert lr_of[id(named[layer1])][0] == pytest.approx(5e-4)
    assert lr_of[id(named[layer0])][0] == pytest.approx(2.5e-4)
    emb = next(n for n in named if "word_embeddings" in n)
    assert lr_of[id(named[emb])][0] == pytest.approx(1.25e-4)
    norm = next(n for n in named if "LayerNorm.weight" in n)
    assert lr_of[id(named[norm])][1] == 0.0
    flat = param_groups(model, TrainConfig(learning_rate=1e-3))
    assert all(g["lr"] == pytest.approx(1e-3) for g in flat)
    with pytest.raises(TrainingError, match="layer_decay"):
        TrainConfig(layer_decay=0)
    with pytest.raises(TrainingError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
