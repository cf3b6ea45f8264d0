from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.runtime import softmax
from retraining.errors import TrainingError
from retraining.evaluate import evaluate_probs, expected_calibration_error, fit_temperature
from retraining.gate import GatePolicy, gate
from retraining.train import TrainConfig


def test_ece_hand_computed() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin (0.8,0.87]: none; 0.9 bin: conf .9, acc .5 -> |.4| * .5 ; 0.6 bin: conf .6 acc 1 -> .4*.5
    assert expected_calibration_error(probs, y) == pytest.approx(0.4)


def test_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20_000, 4)).astype(np.float32) * 4
    y = np.array([rng.choice(4, p=p) for p in softmax(logits, 2.0)])
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.05)


def test_metrics() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    ev = evaluate_probs(probs, np.array([0, 1, 1, 1]), ["a", "b"])
    assert ev.accuracy == 0.75
    assert ev.confusion == [[1, 0], [1, 2]]
    assert ev.per_class["b"]["recall"] == pytest.approx(2 / 3)


def _ev(f1s: list[float], support: list[float] | None = None):  # type: ignore[no-untyped-def]
    labels = ["a", "b", "c", "d", "e"][: len(f1s)]
    support = support or [1.0] * len(f1s)
    ev = evaluate_probs(np.eye(len(f1s)), np.arange(len(f1s)), labels)
    return ev.__class__(
        **{
            **ev.__dict__,
            "macro_f1": float(np.mean(f1s)),
            "per_class": {
                lbl: {"f1": f, "support": n} for lbl, f, n in zip(labels, f1s, support, strict=True)
            },
        }
    )


def test_gate() -> None:
    assert gate(_ev([0.9, 0.9]), None).passed
    assert gate(_ev([0.91, 0.9]), _ev([0.9, 0.9])).passed
    worse = gate(_ev([0.85, 0.85]), _ev([0.9, 0.9]))
    assert not worse.passed and "macro-F1" in worse.reasons[0]
    one_class = gate(_ev([0.99, 0.80]), _ev([0.88, 0.9]), GatePolicy(0.01, 0.05))
    assert not one_class.passed and "class 'b'" in one_class.reasons[0]


def test_train_options_are_validated() -> None:
    with pytest.raises(TrainingError, match="learning_rate=5"):
        TrainConfig(learning_rate=5)
    with pytest.raises(TrainingError, match="epochs=0"):
        TrainConfig(epochs=0)


def test_a_challenger_with_a_new_topic_is_gated_on_the_old_ones() -> None:
    # three known classes at 0.9; the challenger adds "d", which has no rows in the old
    # evaluation set (F1 0): diluted, its macro-F1 would be 0.675 and fail
    grown = _ev([0.9, 0.9, 0.9, 0.0])
    assert grown.macro_f1 == pytest.approx(0.675)
    assert gate(grown, _ev([0.9, 0.9, 0.9])).passed
    forgot = _ev([0.9, 0.9, 0.7, 0.0])  # a known class forgotten: still refused
    decision = gate(forgot, _ev([0.9, 0.9, 0.9]))
    assert not decision.passed and "class 'c'" in " ".join(decision.reasons)


def test_a_topic_being_removed_is_left_out_of_both_sides() -> None:
    # the champion knows "e", which the evaluation rows (relabelled for its removal) no
    # longer hold: its F1 of 0 used to count on both sides, shrinking every difference by
    # a fifth (a 0.006 drop read 0.0048 and passed) and reporting the champion at 0.72
    champion = _ev([0.9, 0.9, 0.9, 0.9, 0.0], support=[1, 1, 1, 1, 0])
    smaller = _ev([0.894] * 4)
    decision = gate(smaller, champion)
    assert not decision.passed
    assert "below the champion's 0.9000" in decision.reasons[0], decision.reasons
    assert gate(_ev([0.897] * 4), champion).passed
    assert decision.compared["classes"] == ["a", "b", "c", "d"]
    assert decision.compared["champion_macro_f1"] == pytest.approx(0.9)


def test_a_challenger_scored_not_a_number_is_refused() -> None:
    nan = float("nan")
    assert not gate(_ev([nan, nan]), _ev([0.9, 0.9])).passed
    assert not gate(_ev([0.95, nan]), _ev([0.9, 0.9])).passed


def test_retired_topics_are_relabelled_and_the_head_grows_by_name() -> None:
    import torch

    from pipeline.core.datasets import LabelledText
    from retraining.expand import grow_state, relabel

    rows = [LabelledText(str(i), "", f"t{i}", lab) for i, lab in enumerate("ABCA")]
    out = relabel(rows, {"A": "B", "C": None})
    assert [r.label for r in out] == ["B", "B", "B"] and [r.id for r in out] == ["0", "1", "3"]
    state = {"head.weight": torch.tensor([[1.0], [2.0], [3.0]]), "head.bias": torch.zeros(3)}
    grown = grow_state(state, ["A", "B", "C"], ["B", "New", "C"])
    assert grown["head.weight"][0].item() == 2.0 and grown["head.weight"][2].item() == 3.0
    assert abs(grown["head.weight"][1].item()) < 0.2  # a fresh row for the new topic
