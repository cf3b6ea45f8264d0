"""Model tier: the GPU serving path, checked on the CPU. The fp16 graph is exported and gated on
argmax agreement with fp32 (ORT's CPU provider runs it); fp16 without a GPU provider is an
error at load; the provider is logged; the GPU-only batching code gives the CPU's logits."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import FP16, INT8, read_metadata
from pipeline.core.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    Classifier,
    inspect_onnxruntime,
    install_problem,
    pick_graph,
    pick_providers,
)
from retraining.bases.tiny import build_tiny
from retraining.export import FP16_MIN_AGREEMENT, parity_check, write_model_folder
from retraining.int8_recipe import argmax_agreement

pytestmark = pytest.mark.model
LABELS = ("World", "Sports", "Business", "Sci/Tech")
TEXTS = [
    "Stocks rally as the central bank cuts rates",
    "The team won the match with a late goal " * 8,
    "x",
    "NASA launches a new probe to study the outer planets and their moons",
    "Oil prices climb after the cartel agrees to cut output",
    "Election results delayed as the count goes on in three states",
]
REPO = Path(__file__).resolve().parents[2]
no_cuda = pytest.mark.skipif(
    CUDA in inspect_onnxruntime().providers, reason="this onnxruntime has a CUDA provider"
)


@pytest.fixture(scope="module")
def fp16_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = build_tiny("bert", LABELS)  # seed 0, as the tiny_bert fixture
    out = tmp_path_factory.mktemp("fp16") / "bert"
    write_model_folder(model, tok, LABELS, out, version="tiny-fp16", fp16=True)
    return out


def _negate_head(folder: Path) -> None:
    """Break the fp16 graph the way a bad conversion could: flip the classifier's sign, so
    every argmax becomes an argmin."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / FP16))
    head = next(n for n in reversed(graph.graph.node) if n.op_type in {"Gemm", "MatMul"})
    inits = {i.name: i for i in graph.graph.initializer}
    names = [name for name in head.input if name in inits]
    assert names, "the classifier's weights are not initializers"
    for name in names:  # weight and bias
        tensor = inits[name]
        tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), name))
    onnx.save(graph, str(folder / FP16))


def test_fp16_graph_runs_on_cpu_and_passes_its_gate(fp16_bert: Path) -> None:
    assert (fp16_bert / FP16).stat().st_size < 0.6 * (fp16_bert / "model.onnx").stat().st_size
    model, tok = build_tiny("bert", LABELS)
    report = parity_check(model, tok, fp16_bert, TEXTS * 10, max_length=128)
    assert report.fp16_checked_on == CPU
    assert report.fp16_agreement is not None
    assert report.fp16_agreement >= FP16_MIN_AGREEMENT
    assert report.fp16_max_abs_diff is not None and report.fp16_max_abs_diff < 1e-2
    assert report.ok, report.failures()


def test_parity_gate_rejects_a_broken_fp16_graph(fp16_bert: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp16_bert, broken)
    _negate_head(broken)
    model, tok = build_tiny("bert", LABELS)
    report = parity_check(model, tok, broken, TEXTS * 10, max_length=128)
    assert report.fp16_agreement is not None and report.fp16_agreement < 0.5
    assert report.fp32_argmax_equal  # only the fp16 graph is broken ...
    assert not report.ok  # ... and that alone fails the export
    assert any("fp16" in f for f in report.failures())


def test_non_finite_logits_never_count_as_agreement() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    nan = np.array([[np.nan, np.nan], [0.0, 1.0]], dtype=np.float32)  # argmax of NaN rows is 0
    assert argmax_agreement(nan, ref) == 0.5


@no_cuda
def test_fp16_without_a_gpu_provider_is_a_clear_error(fp16_bert: Path) -> None:
    with pytest.raises(ModelError, match="fp16 needs a GPU execution provider"):
        Classifier.load(fp16_bert, precision="fp16")


@no_cuda
def test_requested_cuda_that_cannot_start_is_reported(
    fp16_bert: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ModelError, match="CUDAExecutionProvider was requested but the model runs"):
        Classifier.load(fp16_bert, precision="fp16", providers=[CUDA, CPU])
    # auto would have picked fp16 for CUDA; on the CPU fallback it serves the CPU choice
    with caplog.at_level(logging.ERROR, logger="pipeline.core.runtime"):
        clf = Classifier.load(fp16_bert, providers=[CUDA, CPU], warmup=False)
    assert clf.graph.name == INT8 and clf.provider == CPU
    assert any("has no CUDAExecutionProvider" in r.getMessage() for r in caplog.records)


def test_auto_picks_fp16_only_for_a_gpu_provider(fp16_bert: Path) -> None:
    assert pick_graph(fp16_bert, "auto", [CUDA, CPU]).name == FP16
    assert pick_graph(fp16_bert, "auto", [TENSORRT, CUDA, CPU]).name == FP16
    assert pick_graph(fp16_bert, "auto", [CPU]).name == INT8


def test_tensorrt_is_opt_in() -> None:
    available = [TENSORRT, CUDA, CPU]
    assert pick_providers(available) == [CUDA, CPU]
    assert pick_providers(available, tensorrt=True) == available


def test_provider_is_logged_and_exposed(fp16_bert: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.core.runtime"):
        clf = Classifier.load(fp16_bert, precision="fp32", warmup=False)
    loaded = [r for r in caplog.records if r.getMessage().startswith("model loaded")]
    assert loaded and f"on {CPU}" in loaded[-1].getMessage()
    assert loaded[-1].__dict__["provider"] == CPU
    assert clf.describe() == {
        "model_version": "tiny-fp16",
        "graph": "model.onnx",
        "precision": "fp32",
        "provider": CPU,
        "io_binding": "off",  # CPU path unchanged
        "sub_batch": "32",
    }


def test_gpu_batching_gives_the_cpu_logits(fp16_bert: Path) -> None:
    """I/O binding and padding to a multiple of 8 (what a CUDA load switches on) change no
    logit; run here through the CPU provider."""
    plain = Classifier.load(fp16_bert, precision="fp32", warmup=False, sub_batch=4)
    gpu_like = Classifier.load(
        fp16_bert, precision="fp32", warmup=False, sub_batch=4, io_binding=True
    )
    gpu_like.pad_multiple = 8
    assert gpu_like.binding_device == "cpu"
    np.testing.assert_allclose(gpu_like.logits(TEXTS), plain.logits(TEXTS), atol=1e-4)
    widths = [feed["input_ids"].shape[1] for _, feed in gpu_like.batches(TEXTS)]
    assert all(w % 8 == 0 or w == 128 for w in widths)


def test_conflicting_onnxruntime_installs_are_named() -> None:
    both = install_problem({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}, "CPU", [CPU])
    assert both and "onnxruntime 1.32.0, onnxruntime-gpu 1.31.1" in both and "keep one" in both
    masked = install_problem({"onnxruntime-gpu": "1.31.1"}, "CPU", [CPU])
    assert masked and "no CUDA provider" in masked
    assert install_problem({"onnxruntime-gpu": "1.31.1"}, "GPU", [CUDA, CPU]) is None
    assert install_problem({"onnxruntime": "1.32.0"}, "CPU", [CPU]) is None


def test_parity_is_recorded_in_metadata(fp16_bert: Path, tmp_path: Path) -> None:
    from retraining.flow import _record_parity

    folder = tmp_path / "m"
    shutil.copytree(fp16_bert, folder)
    _record_parity(folder, 0.995, 1.0)
    assert read_metadata(folder).metrics == {"int8_agreement": 0.995, "fp16_agreement": 1.0}


def test_gpu_bench_smoke_runs_on_cpu(tmp_path: Path, fp16_bert: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--max-texts", "24", "--batch-sizes", "8,16", "--passes", "1"]
    args += ["--model-dir", str(fp16_bert), "--parity-texts", "24", "--out", str(out)]
    subprocess.run(
        [sys.executable, str(REPO / "infra/gpu/bench_gpu.py"), *args],
        check=True,
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    import json

    report = json.loads(out.read_text())
    assert report["figures_are"] == "a CPU smoke check, not GPU figures"
    assert report["provider"] == CPU and report["precision"] == "fp16"
    assert report["fp16_parity"]["passes_gate"] is True
    assert [(r["batch_size"], r["io_binding"]) for r in report["rows"]] == [
        (8, False),
        (8, True),
        (16, False),
        (16, True),
    ]
    assert all(r["session_seq_per_s"] > 0 for r in report["rows"])
