"""Model tier: tiny random BERT and RoBERTa classifiers exported to ONNX and served by the
torch-free runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import read_metadata
from pipeline.core.runtime import Classifier, pick_graph, pick_providers
from retraining.bases.tiny import build_tiny
from retraining.export import parity_check

pytestmark = pytest.mark.model
LABELS = ("World", "Sports", "Business", "Sci/Tech")
TEXTS = [
    "Stocks rally as the central bank cuts rates",
    "The team won the match with a late goal " * 8,
    "x",
    "NASA launches a new probe to study the outer planets and their moons",
]


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_export_matches_torch(arch: str, tiny_bert: Path, tiny_roberta: Path) -> None:
    folder = tiny_bert if arch == "bert" else tiny_roberta
    model, tok = build_tiny(arch, LABELS)  # same seed as the fixture: same weights
    report = parity_check(model, tok, folder, TEXTS * 5, max_length=128)
    assert report.fp32_max_abs_diff <= 1e-3
    assert report.fp32_argmax_equal
    # Random tiny weights give near-uniform probabilities, so int8 may flip a close call;
    # the 98% gate applies to trained models (retraining tests).
    assert report.int8_agreement is not None and report.int8_agreement >= 0.75


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_dynamic_padding_gives_same_logits_as_one_by_one(
    arch: str, tiny_bert: Path, tiny_roberta: Path
) -> None:
    folder = tiny_bert if arch == "bert" else tiny_roberta
    clf = Classifier.load(folder, precision="fp32", sub_batch=2)
    together = clf.logits(TEXTS)
    alone = np.vstack([clf.logits([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_predictions_are_well_formed(tiny_roberta: Path) -> None:
    clf = Classifier.load(tiny_roberta)
    assert clf.graph.name == "model.int8.onnx"  # CPU default
    out = clf.predict(TEXTS)
    assert [len(o.probabilities) for o in out] == [4] * 4
    for o in out:
        assert abs(sum(o.probabilities) - 1) < 1e-6
        assert o.topic in LABELS
        assert o.confidence == max(o.probabilities)
        assert 0 <= o.margin <= o.confidence
    assert clf.version == read_metadata(tiny_roberta).version


def test_truncates_to_max_length(tiny_bert: Path) -> None:
    clf = Classifier.load(tiny_bert, warmup=False)
    huge = "word " * 5000
    assert clf.logits([huge]).shape == (1, 4)


def test_missing_or_broken_folder_is_a_clear_error(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Classifier.load(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "m" / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match=r"metadata\.json"):
        Classifier.load(tmp_path / "m")
    with pytest.raises(ModelError, match="fp16"):
        pick_graph(tiny_bert, "fp16", ["CPUExecutionProvider"])


def test_provider_order() -> None:
    assert pick_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert pick_providers([]) == ["CPUExecutionProvider"]
