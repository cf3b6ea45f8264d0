"""retraining.analysis.temperature_shift: the fitted temperature against the test split's
best one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retraining.analysis.temperature_shift import main, measure


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated: labels drawn from the model's own probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, 4)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p], dtype=np.int64)
    return logits, y


def test_a_shift_between_validation_and_test_shows() -> None:
    val_logits, val_y = _calibrated(4000, 1)
    test_logits, test_y = _calibrated(4000, 2)
    same = measure(val_logits, val_y, test_logits, test_y)
    assert abs(same.t_fitted_on_validation - 1) < 0.1 and abs(same.t_nll_on_test - 1) < 0.1
    assert same.test_ece_min <= same.test_ece_fitted < 0.03
    # the test period's model is 2.5x over-confident: a temperature fitted on validation
    # cannot see it, the test's own best temperature can
    shifted = measure(val_logits, val_y, test_logits * 2.5, test_y)
    assert abs(shifted.t_nll_on_test - 2.5) < 0.3 and abs(shifted.t_min_ece_on_test - 2.5) < 0.5
    assert shifted.test_ece_fitted > 0.08 > 0.03 > shifted.test_ece_min
    assert shifted.test_ece_min <= min(shifted.test_ece_unscaled, shifted.test_ece_fitted)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\x00 not json",
        b"",
        b"[1, 2]",
        json.dumps({"model_dir": "/nowhere"}).encode(),  # no dataset
        json.dumps({"dataset": 5, "model_dir": "/nowhere"}).encode(),
        json.dumps({"dataset": "ag_news", "data_card": [1]}).encode(),
        json.dumps(
            {"dataset": "ag_news", "data_card": {"files": [{"path": "/no/such.csv"}]}}
        ).encode(),
    ],
)
def test_what_is_not_a_summary_of_a_run_is_refused(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "s.json"
    bad.write_bytes(content)
    with pytest.raises(SystemExit) as info:
        main([str(bad)])
    assert info.value.code == 2
    assert "error: cannot score" in capsys.readouterr().err


def test_a_data_file_changed_since_the_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("text,label\na,x\n")
    card = {"files": [{"path": str(data), "sha256": "0" * 64}]}
    summary = tmp_path / "s.json"
    summary.write_text(json.dumps({"dataset": str(data), "data_card": card}))
    with pytest.raises(SystemExit) as info:
        main([str(summary)])
    assert info.value.code == 2 and "differs from the file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([str(summary), "--json", str(tmp_path)])  # a folder: refused before any work
    assert info.value.code == 2 and "not a file" in capsys.readouterr().err
