"""`newsflow replay --days 2` on the real stack (Kafka, a worker process, PostgreSQL, the
drift job, alerts, retention) with a tiny model and a few dozen articles per simulated day:
the JSON's structure and what really happened (rows stored on their simulated days, the
checks of each day, the malformed burst dead-lettered and counted, nothing lost)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.core.datasets import load_dataset
from pipeline.core.model_folder import ReferenceDistribution, read_metadata, write_metadata
from pipeline.core.runtime import Classifier
from pipeline.core.settings import Settings

pytestmark = [pytest.mark.integration]


def _with_reference(tiny: Path, dst: Path, data_dir: Path) -> Path:
    """The tiny model with a reference sample: its own predictions on 300 AG News test rows
    (a folder from retraining.flow has one; write_tiny_model_folder's has none)."""
    shutil.copytree(tiny, dst)
    texts = [r.text for r in load_dataset("ag_news", split="test", data_dir=data_dir)[-300:]]
    scored = Classifier.load(dst, precision="fp32").predict(texts)
    meta = read_metadata(dst)
    topics = [s.topic for s in scored]
    meta.reference = ReferenceDistribution(
        confidences=[s.confidence for s in scored],
        topic_mix={t: topics.count(t) / len(topics) for t in meta.labels},
    )
    write_metadata(dst, meta)
    return dst


@pytest.mark.timeout(300)
def test_two_simulated_days_through_the_real_stack(
    stack: Settings,
    tiny_bert: Path,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from monitoring.cli import app, build

    model = _with_reference(tiny_bert, tmp_path / "model", data_dir)
    for name, value in {
        "DRIFT_WINDOW_SIZE": "24",
        "DRIFT_MIN_WINDOW": "12",
        "REVIEW_BUDGET_PER_HOUR": "2",
        "RETRAIN_ON_DRIFT": "false",  # a tiny folder has no recipe to retrain with
        "LIVE_REFERENCE_ROWS": "100",
    }.items():
        monkeypatch.setenv(f"NEWSFLOW_{name}", value)
    out = tmp_path / "replay.json"
    build()
    result = CliRunner().invoke(
        app,
        [
            "replay", "--days", "2", "--articles-per-day", "48", "--checks-per-day", "4",
            "--model-dir", str(model), "--workdir", str(tmp_path / "work"), "--json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    replay = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000  # the timeline

    assert replay["scale"]["days"] == 2 and replay["scale"]["articles_per_day"] == 48
    assert [e["name"] for e in replay["script"]] == [
        "malformed_burst", "new_kind", "source_change"
    ]  # fmt: skip
    days = replay["days"]
    assert [d["day"] for d in days] == [0, 1] and days[0]["weekday"] == "Mon"
    # every article stored, and on its simulated day (the worker followed the clock)
    assert [d["stored"] for d in days] == [48, 48]
    assert [d["tables"]["articles_rows"] for d in days] == [48, 96]
    assert [d["tables"]["predictions_rows"] for d in days] == [48, 96]
    assert all(d["served_by"] == {read_metadata(model).version: 48} for d in days)
    assert days[1]["new_kind_share"] > 0 and days[0]["new_kind_share"] == 0
    assert all(0 <= d["true_accuracy"] <= 1 for d in days)
    # four checks a day at 06, 12, 18 and 24 h simulated, none in error
    checks = replay["checks"]
    assert [c["at"][11:16] for c in checks] == ["06:00", "12:00", "18:00", "00:00"] * 2
    assert all(c["level"] in {"ok", "warn", "drift", "insufficient"} for c in checks), checks
    assert all(len(d["levels"]) == 4 for d in days)
    # the reviewers worked within the budget (2 per simulated hour)
    labelled = sum(d["review"]["labelled"] for d in days)
    assert 0 < labelled <= 2 * 48 and replay["stream"]["reviews_labelled"] == labelled
    # the burst: dead-lettered, every one counted; nothing lost, nothing twice
    stream = replay["stream"]
    assert stream["malformed_sent"] == 60 and stream["dead_lettered"] == 60
    assert sum(stream["dead_letter_reasons"].values()) == 60
    assert stream["sent_valid"] == stream["stored"] == 96 and stream["lost"] == 0
    assert stream["redelivered"] == 0 and stream["conflicts"] == 0
    # the score is computed (a random tiny model's confidences are nearly constant, so its
    # confidence PSI reads drift from the first full window: the figures say nothing here)
    score = replay["score"]
    assert [e["name"] for e in score["events"]] == [e["name"] for e in replay["script"]]
    assert all(
        e["checks_to_alert"] is None or 1 <= e["checks_to_alert"] <= 8 for e in score["events"]
    )
    assert score["alerts_opened"] == len(replay["alerts"]) >= score["alerts_explained"]
