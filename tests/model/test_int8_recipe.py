"""Model tier: the int8 recipe search (retraining.int8_recipe) on tiny random encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.core.model_folder import FP32, INT8
from pipeline.core.runtime import Classifier
from retraining.bases.tiny import build_tiny, write_tiny_model_folder
from retraining.export import torch_logits
from retraining.int8_recipe import (
    argmax_agreement,
    choose_int8,
    down_projections,
    required_agreement,
)

pytestmark = pytest.mark.model
LABELS = ("World", "Sports", "Business", "Sci/Tech")
TEXTS = [
    "Stocks rally as the central bank cuts rates",
    "The team won the match with a late goal",
    "NASA launches a new probe to study the outer planets",
    "Oil prices climb after the cartel agrees to cut output",
    "Election results delayed as the count goes on",
    "x",
] * 5


def _float_matmuls(graph: Path) -> set[str]:
    model = onnx.load(str(graph))
    return {n.name for n in model.graph.node if n.op_type == "MatMul"}


@pytest.mark.parametrize("arch", ["bert", "mpnet", "roberta"])
def test_down_projections_are_the_ffn_outputs(arch: str, tmp_path: Path) -> None:
    folder = write_tiny_model_folder(tmp_path / arch, arch)  # type: ignore[arg-type]
    downs = down_projections(folder / FP32)
    assert len(downs) == 2  # one per layer of the 2-layer tiny config
    assert all("output" in name and "attention" not in name for name in downs)
    assert "layer.0" in downs[0] and "layer.1" in downs[1]


def test_a_matmul_classifier_head_is_not_a_down_projection(tmp_path: Path) -> None:
    """Two layers (width 8, FFN 32) and a head written as MatMul 8 → 4: the head narrows too,
    but not to the model's width."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    shapes = {"q0": (8, 8), "up0": (8, 32), "down0": (32, 8), "q1": (8, 8), "up1": (8, 32)}
    shapes |= {"down1": (32, 8), "head": (8, 4)}
    for name, shape in shapes.items():
        inits.append(
            numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name + "_w")
        )
        nodes.append(helper.make_node("MatMul", [x, name + "_w"], [name + "_y"], name=name))
        x = name + "_y"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4])],
        inits,
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert down_projections(path) == ["down0", "down1"]


def test_a_graph_that_agrees_is_kept_at_once(tmp_path: Path) -> None:
    model, tok = build_tiny("bert", LABELS)
    folder = write_tiny_model_folder(tmp_path / "m", "bert")
    ref = torch_logits(model, tok, TEXTS, 128)
    choice = choose_int8(folder, TEXTS, ref, target=0.0)
    assert choice.tried == [(0, choice.agreement)] and choice.fp32_matmuls == []
    assert not (set(down_projections(folder / FP32)) & _float_matmuls(folder / INT8))


def test_an_unreachable_target_tries_every_step_and_keeps_the_best(tmp_path: Path) -> None:
    model, tok = build_tiny("mpnet", LABELS)
    folder = write_tiny_model_folder(tmp_path / "m", "mpnet")
    ref = torch_logits(model, tok, TEXTS, 128)
    choice = choose_int8(folder, TEXTS, ref, target=1.01)
    downs = down_projections(folder / FP32)
    assert [n for n, _ in choice.tried] == [0, len(downs)]
    assert choice.agreement == max(a for _, a in choice.tried)
    kept = set(choice.fp32_matmuls)
    assert kept <= _float_matmuls(folder / INT8)  # the graph on disk is the chosen one
    got = Classifier.load(folder, precision="int8", warmup=False).logits(TEXTS)
    assert float(np.mean(got.argmax(1) == ref.argmax(1))) == choice.agreement


def test_agreement_is_measured_against_the_reference(tmp_path: Path) -> None:
    """A reference whose argmax is everywhere another class gives agreement 0, and the search
    keeps trying (it cannot pass), ending with the fewest-fp32 graph on a tie."""
    model, tok = build_tiny("bert", LABELS)
    folder = write_tiny_model_folder(tmp_path / "m", "bert")
    ref = torch_logits(model, tok, TEXTS, 128)
    wrong = np.roll(np.eye(len(LABELS))[ref.argmax(1)], 1, axis=1)
    choice = choose_int8(folder, TEXTS, wrong, target=0.5)
    assert choice.agreement == 0.0 and len(choice.tried) == 2 and choice.fp32_matmuls == []


def test_mismatched_reference_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_model_folder(tmp_path / "m", "bert")
    with pytest.raises(ValueError, match="one reference row"):
        choose_int8(folder, TEXTS, np.zeros((3, 4)))


def test_non_finite_rows_on_either_side_disagree() -> None:
    """Found by attack: a NaN reference row counted as agreeing (NumPy's argmax of NaN)."""
    cand = np.array([[5.0, 0, 0, 0]] * 3)
    ref = np.array([[np.nan, 0, 0, 0], [np.nan] * 4, [1.0, 0, 0, 0]])
    assert argmax_agreement(cand, ref) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape"):
        argmax_agreement(cand, ref[:, 0])


def test_steps_are_tried_fewest_fp32_first_and_none_is_refused(tmp_path: Path) -> None:
    model, tok = build_tiny("bert", LABELS)
    folder = write_tiny_model_folder(tmp_path / "m", "bert")
    ref = torch_logits(model, tok, TEXTS, 128)
    choice = choose_int8(folder, TEXTS, ref, target=1.01, steps=(None, 0, 1, 1))
    assert [n for n, _ in choice.tried] == [0, 1, 2]
    with pytest.raises(ValueError, match="at least one step"):
        choose_int8(folder, TEXTS, ref, steps=())
    with pytest.raises(ValueError, match="list of texts"):
        choose_int8(folder, "abc", ref[:3])


def test_the_bar_is_the_target_plus_a_standard_error() -> None:
    """396 of 400 (0.990) does not pass a 0.99 target: one standard error is 0.005."""
    assert required_agreement(0.99, 400) == pytest.approx(0.995, abs=1e-4)
    assert required_agreement(0.99, 2000) == pytest.approx(0.99 + (0.0099 / 2000) ** 0.5)
    assert required_agreement(1.01, 10) == 1.01 and required_agreement(0.0, 10) == 0.0
