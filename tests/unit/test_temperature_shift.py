"""retraining.temperature_shift: the fitted temperature against the test split's best one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retraining.temperature_shift import main, measure


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
    assert abs(same.t_fitted_on_validation - 1) < 0.1 and abs(same.t_best_on_test - 1) < 0.1
    assert same.test_ece_fitted < 0.03
    # the test period's model is 2.5x over-confident: a temperature fitted on validation
    # cannot see it, the test's own best temperature can
    shifted = measure(val_logits, val_y, test_logits * 2.5, test_y)
    assert abs(shifted.t_best_on_test - 2.5) < 0.3
    assert shifted.test_ece_fitted > 0.08 > 0.03 > shifted.test_ece_best
    assert shifted.test_ece_best <= shifted.test_ece_unscaled


def test_a_file_that_is_not_a_summary_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"dataset": "ag_news"}))
    with pytest.raises(SystemExit) as info:
        main([str(bad)])
    assert info.value.code == 2
    bad.write_bytes(b"\xff\x00 not json")
    with pytest.raises(SystemExit) as info:
        main([str(bad)])
    assert info.value.code == 2
