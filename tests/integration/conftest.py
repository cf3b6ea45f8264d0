"""Fixtures of the integration tier that cost minutes: built once per test run and shared.

``tuned_minilm`` fine-tunes a 3-layer cut of the offline MiniLM briefly (``minilm-l3``, the
demo's quick base: its first 3 of 6 layers; texts cut at 64 tokens, 40 steps on AG News) and
registers it in an MLflow store of its own, once per test run (pytest-xdist workers
included). A loop test takes a copy of that store (``registry_copy``): it starts with version
1 registered, promotes it itself and writes its own runs and aliases, never the fixture's. The
loop tests are about the loop (drift, retraining, gate, hot swap), not about how good a
40-step model is, so one such model serves them all. Its recipe (base ``minilm-l3``, 64
tokens, 40 steps) is recorded with it, so every retraining in those tests inherits it and
costs about a quarter of a full MiniLM's."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from pathlib import Path

import pytest
from filelock import FileLock

from pipeline.core.datasets import LabelledText, load_dataset
from pipeline.core.settings import Settings

# The tests that train MiniLM run one after another in one xdist worker (`--dist loadgroup`):
# they never compete with each other for the 2 cores, and the lighter tests fill the other
# worker. (Two such chains, one per worker, measured slower: the light tests then waited.)
MINILM_GROUP = pytest.mark.xdist_group("minilm")


@dataclasses.dataclass(frozen=True)
class TunedModel:
    """Version ``version`` of ``registered_model_name`` in the SQLite store ``store``."""

    store: Path
    version: str
    labels: tuple[str, ...]
    train_rows: int  # the first N AG News training rows were used (tests stream other rows)


@pytest.fixture(scope="session")
def ag_rows(data_dir: Path) -> dict[str, list[LabelledText]]:
    return {
        "train": load_dataset("ag_news", split="train", data_dir=data_dir),
        "test": load_dataset("ag_news", split="test", data_dir=data_dir),
    }


@pytest.fixture(scope="session")
def tuned_minilm(
    stack: Settings,
    ag_rows: dict[str, list[LabelledText]],
    tmp_path_factory: pytest.TempPathFactory,
) -> TunedModel:
    """Trained by the first process that asks; the others (pytest-xdist workers share the
    parent of their base temp folders) wait on the lock and read what it wrote."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tuned-minilm"
    with FileLock(f"{root}.lock"):
        record = root / "tuned.json"
        if not record.exists():
            _train_tuned(stack, ag_rows, root, record)
        saved = json.loads(record.read_text())
    return TunedModel(
        Path(saved["store"]), saved["version"], tuple(saved["labels"]), saved["train_rows"]
    )


def _train_tuned(
    stack: Settings, ag_rows: dict[str, list[LabelledText]], root: Path, record: Path
) -> None:
    from pipeline.core.model_folder import read_metadata
    from retraining.data import make_splits
    from retraining.flow import FlowOptions, run_flow
    from retraining.recipe import Recipe
    from retraining.train import TrainConfig

    store = root / "mlflow.db"
    settings = stack.model_copy(
        update={"home": root / "home", "mlflow_tracking_uri": f"sqlite:///{store}"}
    )
    train_rows = 2400
    splits = make_splits(ag_rows["train"][:train_rows], ag_rows["test"][:800], seed=13)
    result = run_flow(  # fp32 only: a briefly trained model is too unsure for int8 parity
        settings,
        Recipe(
            base="minilm-l3",  # retraining.bases.cut: built once into the cache
            quantize=False,
            training=TrainConfig(epochs=1, max_steps=40, batch_size=32, seed=13, max_length=64),
        ),
        splits=splits,
        options=FlowOptions(baseline=False, checkpoints=False, card_speed=False),
    )
    assert result.summary["parity_ok"] and result.registered_version
    # its recipe is recorded: an automatic retraining of it inherits the 40-step cap
    recorded = read_metadata(result.model_dir).recipe
    assert recorded is not None and recorded["training"]["max_steps"] == 40, recorded
    saved = {
        "store": str(store),
        "version": result.registered_version,
        "labels": list(splits.labels),
        "train_rows": train_rows,
    }
    record.write_text(json.dumps(saved))


def registry_copy(tuned: TunedModel, dst: Path) -> str:
    """Copy the fixture's store to ``dst`` (SQLite's online backup); returns its URI."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    src, out = sqlite3.connect(tuned.store), sqlite3.connect(dst)
    try:
        src.backup(out)
    finally:
        src.close()
        out.close()
    return f"sqlite:///{dst}"
