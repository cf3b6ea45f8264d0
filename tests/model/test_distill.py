"""Model tier: `newsflow train --teacher VERSION`. A tiny teacher, trained here to predict a
*rotated* label (Business rows -> Sports, ...), is registered in a real MLflow store (SQLite
in tmp_path); tiny students learn from its soft labels, computed by the ONNX runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.core import registry
from pipeline.core.runtime import Classifier, softmax
from pipeline.core.settings import Settings
from retraining import train
from retraining.distill import DistillConfig, load_teacher
from retraining.errors import TrainingError
from retraining.recipe import Recipe
from retraining.train import TrainConfig, fine_tune, predict_logits
from tests.model.synthetic import LABELS, make_rows

pytestmark = pytest.mark.model

TEACHER_LABELS = ["World", "Sports", "Business", "Sci/Tech"]  # another order than the data's
ROTATED = {"Business": "Sports", "Sports": "Sci/Tech", "Sci/Tech": "World", "World": "Business"}
ROWS = make_rows(64, 1)
TR_X, TR_Y = [r.text for r in ROWS], [LABELS.index(r.label) for r in ROWS]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("registry")
    return Settings().model_copy(
        update={"home": tmp / "home", "mlflow_tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
    )


def student(base: Path, seed: int = 0) -> tuple[Any, Any]:
    import torch

    from retraining.modeling import load_base

    torch.manual_seed(seed)
    return load_base(str(base), len(LABELS))


@pytest.fixture(scope="module")
def teachers(store: Settings, bert_base: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Version 1: the rotated-label teacher; version 2: a teacher with another label set."""
    from retraining.bases.tiny import write_tiny_model_folder
    from retraining.export import write_model_folder
    from retraining.register import register_model_folder

    tmp = tmp_path_factory.mktemp("teachers")
    model, tok = student(bert_base, seed=1)
    ys = [TEACHER_LABELS.index(ROTATED[r.label]) for r in ROWS]
    cfg = TrainConfig(epochs=4, batch_size=16, learning_rate=5e-3, warmup_share=0, patience=9)
    fine_tune(model, tok, TR_X, ys, TR_X[:8], ys[:8], cfg)
    assert np.mean(predict_logits(model, tok, TR_X, max_length=128).argmax(1) == ys) > 0.9
    folder = tmp / "rotated"
    write_model_folder(
        model,
        tok,
        TEACHER_LABELS,
        folder,
        version="teacher-rotated",
        base_model="tiny-bert",
        max_length=128,
        temperature=1.5,
        int8=False,
    )
    assert register_model_folder(store, folder) == "1"
    other = write_tiny_model_folder(
        tmp / "health", "bert", ("World", "Sports", "Business", "Health"), version="health-1"
    )
    assert register_model_folder(store, other) == "2"
    return "1"


def test_soft_labels_fed_to_the_loss_are_the_teachers(
    store: Settings, teachers: str, bert_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = load_teacher(store, DistillConfig(teachers, alpha=0.5, temperature=2.0), LABELS)
    clf = Classifier.load(registry.local_copy(store, teachers), precision="fp32")
    order = [clf.labels.index(lbl) for lbl in LABELS]  # teacher column of each student label
    # at T = 1 the soft labels are the served model's calibrated probabilities
    served = np.array([s.probabilities for s in clf.predict(TR_X)])[:, order]
    np.testing.assert_allclose(teacher.probabilities(TR_X, LABELS), served, atol=1e-6)
    expected = softmax(clf.logits(TR_X)[:, order], clf.meta.temperature * 2.0)
    soft = teacher.soft_targets(TR_X, LABELS)
    np.testing.assert_allclose(soft.probs, expected, atol=1e-6)

    batches: list[list[int]] = []
    fed: list[tuple[Any, float, float]] = []
    real_batches, real_loss = train.length_grouped_batches, train.distill_loss

    def record_batches(*args: Any) -> list[list[int]]:
        out = real_batches(*args)
        batches.extend(out)
        return out

    def record_loss(logits: Any, probs: Any, gold: Any, ce: Any, alpha: float, t: float) -> Any:
        fed.append((probs.detach().cpu().numpy(), alpha, t))
        return real_loss(logits, probs, gold, ce, alpha, t)

    monkeypatch.setattr(train, "length_grouped_batches", record_batches)
    monkeypatch.setattr(train, "distill_loss", record_loss)
    model, tok = student(bert_base)
    cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3)
    fine_tune(model, tok, TR_X, TR_Y, TR_X[:8], TR_Y[:8], cfg, soft_targets=soft)
    assert len(fed) == len(batches) == 4
    for batch, (probs, alpha, t) in zip(batches, fed, strict=True):
        np.testing.assert_allclose(probs, expected[batch], atol=1e-6)
        assert (alpha, t) == (0.5, 2.0)


def test_distillation_pulls_the_student_to_the_teacher(
    store: Settings, teachers: str, bert_base: Path
) -> None:
    teacher = load_teacher(store, DistillConfig(teachers, alpha=1.0, temperature=2.0), LABELS)
    target = teacher.probabilities(TR_X, LABELS).argmax(1)
    gold = np.asarray(TR_Y)
    model, tok = student(bert_base)

    def agreement() -> tuple[float, float]:
        pred = predict_logits(model, tok, TR_X, max_length=128).argmax(1)
        return float(np.mean(pred == target)), float(np.mean(pred == gold))

    with_teacher, with_gold = agreement()
    cfg = TrainConfig(epochs=6, batch_size=16, learning_rate=5e-3, warmup_share=0, patience=9)
    soft = teacher.soft_targets(TR_X, LABELS)
    fine_tune(model, tok, TR_X, TR_Y, TR_X[:8], TR_Y[:8], cfg, soft_targets=soft)
    after_teacher, after_gold = agreement()
    # alpha = 1: the gold labels carry no weight, so the student follows the teacher's
    # rotated labels (agreeing with the gold ones *less*)
    assert after_teacher >= with_teacher + 0.3, (with_teacher, after_teacher)
    assert after_gold <= with_gold, (with_gold, after_gold)


def test_bad_teachers_are_refused_before_training(
    store: Settings, teachers: str, bert_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retraining import flow
    from retraining.data import make_splits
    from retraining.flow import FlowOptions

    with pytest.raises(TrainingError, match=r"teacher version 9 does not exist .*registered: 1, 2"):
        load_teacher(store, DistillConfig("9"), LABELS)
    with pytest.raises(TrainingError, match="predicts other labels") as info:
        load_teacher(store, DistillConfig("2"), LABELS)
    assert "teacher ['Business', 'Health', 'Sports', 'World']" in str(info.value)
    assert "data ['Business', 'Sci/Tech', 'Sports', 'World']" in str(info.value)
    with pytest.raises(TrainingError, match="registry version number"):
        DistillConfig("champion")
    with pytest.raises(TrainingError, match=r"distill alpha=1\.5"):
        DistillConfig("1", alpha=1.5)
    with pytest.raises(TrainingError, match="distill temperature=0"):
        DistillConfig("1", temperature=0)

    copy = registry.local_copy(store, "2")  # a cached folder damaged on disk
    (copy / "model.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(TrainingError, match=r"teacher version 2 is unusable: .*differ"):
        load_teacher(store, DistillConfig("2"), LABELS)

    monkeypatch.setattr(flow, "fine_tune", lambda *a, **k: pytest.fail("training started"))
    splits = make_splits(ROWS, make_rows(8, 5))
    with pytest.raises(TrainingError, match="does not exist"):
        flow.run_flow(
            store,
            Recipe(base=str(bert_base), teacher=DistillConfig("7")),
            splits=splits,
            options=FlowOptions(register=False, card_speed=False),
        )


def test_flow_records_the_teacher(store: Settings, teachers: str, bert_base: Path) -> None:
    from retraining.data import make_splits
    from retraining.flow import FlowOptions, run_flow

    splits = make_splits(ROWS, make_rows(16, 5))
    result = run_flow(
        store,
        Recipe(
            base=str(bert_base),
            training=TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, max_steps=3),
            quantize=False,
            teacher=DistillConfig(teachers, alpha=0.7, temperature=3.0),
        ),
        splits=splits,
        options=FlowOptions(baseline=False, card_speed=False),
    )
    t = result.summary["teacher"]
    assert t is not None
    assert (t["version"], t["alpha"], t["temperature"]) == ("1", 0.7, 3.0)
    assert t["model_version"] == "teacher-rotated" and t["labels"] == TEACHER_LABELS
    assert t["test_accuracy"] == 0.0  # it was taught rotated labels
    assert 0 <= t["student_agreement"] <= 1
    run = registry.client(store).get_run(result.summary["run_id"])
    params = run.data.params
    assert params["teacher_version"] == "1" and params["teacher_model_version"] == "teacher-rotated"
    assert (params["distill_alpha"], params["distill_temperature"]) == ("0.7", "3.0")
    assert run.data.tags["teacher_version"] == "1"
    assert run.data.metrics["teacher_test_accuracy"] == 0.0


def test_cli_passes_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from monitoring.cli import train as cli
    from retraining import flow

    seen: dict[str, Any] = {}

    def fake_flow(settings: Settings, recipe: Recipe, **kwargs: Any) -> Any:
        options = kwargs["options"]
        seen.update(distill=recipe.teacher, warm_start=recipe.warm_start)
        seen.update(resume=options.resume, checkpoint_minutes=options.checkpoint_minutes)
        kwargs["progress"]("epoch 1/1", 3, 10)
        raise TrainingError("stopped by the test")

    monkeypatch.setattr(flow, "run_flow", fake_flow)
    monkeypatch.setenv("NEWSFLOW_HOME", str(tmp_path / "home"))
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"{r.text},{r.label}\n" for r in ROWS))
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    args = ["train", "--quick", "--dataset", str(data), "--no-baseline"]
    distil = ["--teacher", "3", "--distill-alpha", "0.8", "--distill-temperature", "4"]
    got = runner.invoke(app, [*args, *distil, "--resume", "--checkpoint-minutes", "5"])
    assert got.exit_code == 1 and "stopped by the test" in got.output
    assert "epoch 1/1: 3/10 (30%)" in got.output  # not a terminal: a plain progress line
    assert seen["distill"] == DistillConfig("3", alpha=0.8, temperature=4.0)
    assert (seen["resume"], seen["checkpoint_minutes"]) == ("auto", 5.0)
    assert seen["warm_start"] is None
    runner.invoke(app, [*args, "--warm-start", "4"])
    assert seen["warm_start"] == "4"
    ckpt = tmp_path / "step-00000004.pt"
    ckpt.write_bytes(b"x")
    runner.invoke(app, [*args, "--resume-from", str(ckpt), "--checkpoint-minutes", "0"])
    assert (seen["resume"], seen["checkpoint_minutes"], seen["distill"]) == (ckpt, None, None)
    got = runner.invoke(app, [*args, "--distill-alpha", "0.9"])
    assert got.exit_code == 2 and "need --teacher" in got.output
    got = runner.invoke(app, [*args, "--teacher", "latest"])
    assert got.exit_code == 2 and "registry version number" in got.output
