"""Model tier: `newsflow train --warm-start VERSION`. A tiny model trained by the real flow is
registered in a real MLflow store (SQLite in tmp_path) with its torch weights; a second run
must start from exactly those weights, and every version it cannot continue is refused before
any training step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core import registry
from pipeline.core.settings import Settings
from retraining.errors import TrainingError
from retraining.train import TrainConfig
from tests.model.synthetic import LABELS, make_rows

pytestmark = pytest.mark.model

ROWS = make_rows(48, 1)
CFG = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, max_steps=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("registry")
    return Settings().model_copy(
        update={"home": tmp / "home", "mlflow_tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
    )


def _splits() -> Any:
    from retraining.data import make_splits

    return make_splits(ROWS, make_rows(16, 5))


@pytest.fixture(scope="module")
def versions(
    store: Settings, bert_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """1: trained by the flow (weights logged); 2: other labels; 3: same base name and labels
    but registered from a bare folder, so its run logged no weights."""
    from retraining.export import write_model_folder
    from retraining.flow import run_flow
    from retraining.register import register_model_folder
    from retraining.tiny import build_tiny, write_tiny_model_folder

    first = run_flow(
        store,
        base=str(bert_base),
        cfg=CFG,
        splits=_splits(),
        baseline=False,
        quantize=False,
        card_speed=False,
    )
    assert first.summary["registered_version"] == "1"
    tmp = tmp_path_factory.mktemp("folders")
    health = ("World", "Sports", "Business", "Health")
    other = write_tiny_model_folder(tmp / "health", "bert", health)
    assert register_model_folder(store, other) == "2"
    model, tok = build_tiny("bert", tuple(LABELS), seed=3)
    bare = tmp / "bare"
    write_model_folder(
        model, tok, list(LABELS), bare, version="bare-1", base_model=str(bert_base), int8=False
    )
    assert register_model_folder(store, bare) == "3"
    return {"trained": "1", "other_labels": "2", "no_weights": "3"}


def test_the_run_starts_from_the_registered_weights(
    store: Settings, versions: dict[str, str], bert_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from retraining import flow

    registered = torch.load(
        registry.torch_state(store, versions["trained"], store.home / "check"),
        map_location="cpu",
        weights_only=True,
    )
    seen: dict[str, Any] = {}

    def capture(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        raise TrainingError("stopped by the test after the first look at the weights")

    with monkeypatch.context() as m:
        m.setattr(flow, "fine_tune", capture)
        with pytest.raises(TrainingError, match="stopped by the test"):
            flow.run_flow(
                store, base=str(bert_base), cfg=CFG, splits=_splits(), register=False,
                card_speed=False, warm_start=versions["trained"],
            )  # fmt: skip
    assert seen["state"].keys() == registered.keys()
    assert all(torch.equal(seen["state"][k], registered[k]) for k in registered)
    # and a fresh start does not: the head is new
    with monkeypatch.context() as m:
        m.setattr(flow, "fine_tune", capture)
        with pytest.raises(TrainingError, match="stopped by the test"):
            flow.run_flow(
                store, base=str(bert_base), cfg=CFG, splits=_splits(), register=False,
                card_speed=False,
            )  # fmt: skip
    assert not all(torch.equal(seen["state"][k], registered[k]) for k in registered)

    result = flow.run_flow(
        store,
        base=str(bert_base),
        cfg=CFG,
        splits=_splits(),
        baseline=False,
        quantize=False,
        card_speed=False,
        warm_start=versions["trained"],
    )
    s = result.summary
    assert s["warm_start"] is True and s["warm_start_version"] == versions["trained"]
    run = registry.client(store).get_run(s["run_id"])
    assert run.data.tags["warm_start_version"] == versions["trained"]
    card = (Path(s["card_dir"]) / "model_card.md").read_text()
    assert f"warm-started from version {versions['trained']}" in card


@pytest.mark.parametrize(
    ("which", "base", "message"),
    [
        ("champion", "bert", "takes a registry version number"),
        ("../1", "bert", "takes a registry version number"),
        ("99", "bert", r"version 99 does not exist .*registered: 1, 2, 3"),
        ("trained", "roberta", "was trained from base .*pass --base"),
        ("other_labels", "tiny-bert", r"predicts labels .*Health.* the training data has"),
        ("no_weights", "bert", "logged no fine-tuned weights"),
    ],
)
def test_versions_it_cannot_continue_are_refused_before_training(
    store: Settings,
    versions: dict[str, str],
    bert_base: Path,
    roberta_base: Path,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    base: str,
    message: str,
) -> None:
    from retraining import flow
    from retraining.errors import InputError

    monkeypatch.setattr(flow, "fine_tune", lambda *a, **k: pytest.fail("training started"))
    bases = {"bert": str(bert_base), "roberta": str(roberta_base)}
    if base == "tiny-bert":  # version 2's own base name, so that its labels are what differs
        monkeypatch.setattr(flow, "resolve_base_model", lambda _b, _s: str(bert_base))
    with pytest.raises(InputError, match=message):
        flow.run_flow(
            store,
            base=bases.get(base, base),
            cfg=CFG,
            splits=_splits(),
            register=False,
            card_speed=False,
            warm_start=versions.get(which, which),
        )


def test_cli_passes_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from retraining import cli, flow

    seen: dict[str, Any] = {}

    def fake_flow(settings: Settings, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise TrainingError("stopped by the test")

    monkeypatch.setattr(flow, "run_flow", fake_flow)
    monkeypatch.setenv("NEWSFLOW_HOME", str(tmp_path / "home"))
    data = tmp_path / "rows.csv"
    data.write_text("text,label\n" + "".join(f"{r.text},{r.label}\n" for r in ROWS))
    app = typer.Typer()
    cli.register(app)
    got = CliRunner().invoke(
        app, ["train", "--dataset", str(data), "--no-baseline", "--warm-start", "4"]
    )
    assert got.exit_code == 1 and "stopped by the test" in got.output
    assert seen["warm_start"] == "4"
