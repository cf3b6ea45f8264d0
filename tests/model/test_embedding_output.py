"""The export's second output: the pooled, L2-normalised embedding beside the logits, in the
fp32, int8 and fp16 graphs, read by the torch-free runtime; folders without it still serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import EMBEDDING, FP16, FP32, INT8, LOGITS, read_metadata
from pipeline.core.runtime import Classifier
from retraining.bases.tiny import build_tiny_encoder
from retraining.export import parity_check, write_model_folder

pytestmark = pytest.mark.model
Rig = tuple[Any, Any, Path]  # (torch model, tokenizer, exported folder)
LABELS = ("World", "Sports", "Business", "Sci/Tech")
TEXTS = [
    "Stocks rally as the central bank cuts rates",
    "The team won the match with a late goal " * 8,
    "x",
    "NASA launches a new probe to study the outer planets and their moons",
]


@pytest.fixture(scope="module")
def mean_pool(tmp_path_factory: pytest.TempPathFactory) -> Rig:
    """A tiny BERT encoder under the trained models' head, exported with every graph."""
    from retraining.modeling import MeanPoolClassifier

    encoder, tok = build_tiny_encoder("bert", seed=3)
    model = MeanPoolClassifier(encoder, len(LABELS)).eval()
    folder = tmp_path_factory.mktemp("emb") / "model"
    write_model_folder(model, tok, LABELS, folder, version="emb-1", int8=True, fp16=True)
    return model, tok, folder


def _torch_pooled(model: object, tok: object, texts: list[str]) -> np.ndarray:
    import torch

    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        pooled = model.pool(**enc)  # type: ignore[attr-defined]
    return np.asarray(torch.nn.functional.normalize(pooled, dim=1).numpy())


def test_every_graph_has_both_outputs_and_metadata_says_so(mean_pool: Rig) -> None:
    import onnx

    _, _, folder = mean_pool
    for graph in (FP32, INT8, FP16):
        outputs = [o.name for o in onnx.load(str(folder / graph)).graph.output]
        assert outputs == [LOGITS, EMBEDDING], graph
    meta = read_metadata(folder)
    assert meta.outputs == [LOGITS, EMBEDDING] and meta.has_embedding


def test_embedding_is_the_normalised_vector_the_head_reads(mean_pool: Rig) -> None:
    model, tok, folder = mean_pool
    clf = Classifier.load(folder, precision="fp32", warmup=False)
    logits, vectors = clf.infer(TEXTS)
    assert vectors is not None and vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, _torch_pooled(model, tok, TEXTS), atol=1e-4)
    np.testing.assert_array_equal(logits, clf.logits(TEXTS))  # one pass, same logits
    scored, again = clf.predict_embedded(TEXTS)
    assert [s.topic for s in scored] == [s.topic for s in clf.predict(TEXTS)]
    np.testing.assert_array_equal(again, vectors)
    # the parity gate reads the logits output as before
    report = parity_check(model, tok, folder, TEXTS * 5, max_length=128)
    assert report.fp32_max_abs_diff <= 1e-3 and report.fp32_argmax_equal


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_int8_and_fp16_embeddings_stay_close(mean_pool: Rig, precision: str) -> None:
    _, _, folder = mean_pool
    ref = Classifier.load(folder, precision="fp32", warmup=False).embed(TEXTS)
    got = Classifier.load(folder, precision=precision, warmup=False, allow_cpu_fp16=True).embed(  # type: ignore[arg-type]
        TEXTS
    )
    cosines = (ref * got).sum(axis=1)
    assert cosines.min() > 0.98, cosines


def test_hugging_face_classifiers_export_the_mean_pooled_state(tiny_bert: Path) -> None:
    clf = Classifier.load(tiny_bert, precision="fp32", warmup=False)
    assert clf.has_embedding
    vectors = clf.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert clf.embed([]).shape[0] == 0


def test_a_folder_without_the_output_serves_without_embeddings(
    mean_pool: Rig, tmp_path: Path
) -> None:
    """A folder exported before the second output: logits only, metadata without it."""
    import shutil

    import onnx

    _, _, folder = mean_pool
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    for graph in (FP32, INT8, FP16):
        g = onnx.load(str(old / graph))
        keep = [o for o in g.graph.output if o.name == LOGITS]
        del g.graph.output[:]
        g.graph.output.extend(keep)
        onnx.save(g, str(old / graph))
    meta = json.loads((old / "metadata.json").read_text())
    del meta["outputs"]
    (old / "metadata.json").write_text(json.dumps(meta))
    assert not read_metadata(old).has_embedding
    clf = Classifier.load(old, precision="int8", warmup=False)
    assert not clf.has_embedding
    scored, vectors = clf.predict_embedded(TEXTS)
    assert vectors is None and len(scored) == len(TEXTS)
    with pytest.raises(ModelError, match="no embedding output"):
        clf.embed(TEXTS)
