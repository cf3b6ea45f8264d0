"""ONNX export of a fine-tuned classifier into the model folder the workers load.

Kept apart from training. The export refuses to write a folder whose graphs disagree with
torch (see :func:`parity_check`).

The optional fp16 graph (for GPU workers) is gated like int8: its argmax must agree with the
fp32 graph on held-out texts. The gate runs wherever the export runs: on a CUDA host with
onnxruntime-gpu it runs on CUDA; on a CPU host ONNX Runtime's CPU provider executes the fp16
graph (it upcasts ops it has no fp16 kernel for), so there it checks the fp16 weights and
graph rather than CUDA's fp16 kernels. ``ParityReport.fp16_checked_on`` says which.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.model_folder import (
    EMBEDDING,
    FP16,
    FP32,
    INT8,
    LOGITS,
    TOKENIZER,
    ModelMetadata,
    ReferenceDistribution,
    write_metadata,
)
from retraining.int8_recipe import argmax_agreement, quantize_int8

OPSET = 17
FP32_MAX_ABS_DIFF = 1e-3
INT8_MIN_AGREEMENT = 0.98  # argmax agreement with torch
FP16_MIN_AGREEMENT = 0.99  # argmax agreement with the fp32 graph


@dataclasses.dataclass(frozen=True)
class ParityReport:
    fp32_max_abs_diff: float
    fp32_argmax_equal: bool
    int8_agreement: float | None
    n: int
    fp16_agreement: float | None = None
    fp16_max_abs_diff: float | None = None
    fp16_checked_on: str | None = None  # the execution provider that ran the fp16 graph

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        out = []
        if self.fp32_max_abs_diff > FP32_MAX_ABS_DIFF or not self.fp32_argmax_equal:
            out.append(f"fp32 differs from torch (max |diff| {self.fp32_max_abs_diff:.2e})")
        if self.int8_agreement is not None and self.int8_agreement < INT8_MIN_AGREEMENT:
            out.append(f"int8 argmax agreement {self.int8_agreement:.4f} < {INT8_MIN_AGREEMENT}")
        if self.fp16_agreement is not None and self.fp16_agreement < FP16_MIN_AGREEMENT:
            out.append(f"fp16 argmax agreement {self.fp16_agreement:.4f} < {FP16_MIN_AGREEMENT}")
        return out


def _input_names(model: Any) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if getattr(model.config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")
    return names


def export_onnx(model: Any, out: Path, *, max_length: int) -> list[str]:
    """Export ``model`` (a transformers sequence classifier) to ``out`` as one fp32 file with
    two outputs: ``logits`` and ``embedding`` (:data:`EMBEDDING`: the pooled vector the head
    reads, L2-normalised, so a cosine is a dot product). For a :class:`MeanPoolClassifier`
    the head reads exactly that vector; for other Hugging Face classifiers (the tiny test
    models) it is the mean-pooled last hidden state."""
    import torch

    names = _input_names(model)
    model = model.eval()

    class LogitsAndEmbedding(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            feed = dict(zip(names, args, strict=True))
            if hasattr(self.inner, "pool") and hasattr(self.inner, "head"):
                pooled = self.inner.pool(**feed)  # one encoder pass for both outputs
                logits = self.inner.head(pooled)  # dropout is the identity in eval mode
            else:
                out = self.inner(**feed, output_hidden_states=True)
                hidden = out.hidden_states[-1]
                mask = feed["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                logits = out.logits
            return logits, torch.nn.functional.normalize(pooled, dim=1)

    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[LOGITS] = {0: "batch"}
    axes[EMBEDDING] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes that are fixed by design
        torch.onnx.export(  # the wrapper in eval mode: the export restores its mode after
            LogitsAndEmbedding(model).eval(),
            dummy,
            str(out),
            input_names=names,
            output_names=[LOGITS, EMBEDDING],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return names


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations with fp32 inputs and outputs (``keep_io_types``), so the
    runtime feeds and reads the same dtypes for every graph. ORT's converter clamps constants
    to the fp16 range (the attention mask's large negative fill stays finite)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def fp16_parity(
    folder: Path, texts: Sequence[str], reference: np.ndarray
) -> tuple[float, float, str]:
    """Run ``folder``'s fp16 graph on ``texts`` (on a GPU provider when this onnxruntime has
    one, else on CPU) and compare with ``reference`` (the fp32 graph's logits):
    ``(argmax agreement, max |diff|, provider)``."""
    from pipeline.core.runtime import Classifier

    clf = Classifier.load(folder, precision="fp16", warmup=False, allow_cpu_fp16=True)
    half = clf.logits(texts)
    diff = np.abs(half - reference)
    max_diff = float(diff.max()) if np.isfinite(diff).all() else float("inf")
    return argmax_agreement(half, reference), max_diff, clf.provider


def torch_logits(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    import torch

    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    if getattr(model.config, "type_vocab_size", 0) <= 1:
        enc.pop("token_type_ids", None)
    with torch.no_grad():
        out = model.eval()(**enc)
    return np.asarray(getattr(out, "logits", out).float().numpy())


PARITY_TEXTS = 300  # texts compared by the parity gate


def parity_sample(texts: Sequence[str], n: int = PARITY_TEXTS, seed: int = 13) -> list[str]:
    """``n`` texts spread over the whole split for the parity gate, in their original order: a
    seeded random draw, not the first ``n`` (test files grouped by class, like 20 Newsgroups'
    bydate, would otherwise put a single class under the gate). All of them when there are
    at most ``n``."""
    if n < 1:
        raise ValueError(f"the parity gate needs at least 1 text, not n={n}")
    if len(texts) <= n:
        return list(texts)
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
    return [texts[i] for i in keep]


def parity_check(
    model: Any, tokenizer: Any, folder: Path, texts: Sequence[str], *, max_length: int
) -> ParityReport:
    """Compare torch with the exported fp32 graph, int8 with torch and fp16 with the fp32
    graph (each when present)."""
    from pipeline.core.runtime import Classifier

    ref = torch_logits(model, tokenizer, texts, max_length)
    fp32 = Classifier.load(
        folder, precision="fp32", warmup=False, providers=["CPUExecutionProvider"]
    ).logits(texts)
    agreement = None
    if (folder / INT8).exists():
        q = Classifier.load(folder, precision="int8", warmup=False).logits(texts)
        agreement = argmax_agreement(q, ref)
    fp16: tuple[float | None, float | None, str | None] = (None, None, None)
    if (folder / FP16).exists():
        fp16 = fp16_parity(folder, texts, fp32)
    return ParityReport(
        fp32_max_abs_diff=float(np.max(np.abs(fp32 - ref))),
        fp32_argmax_equal=bool(np.array_equal(fp32.argmax(1), ref.argmax(1))),
        int8_agreement=agreement,
        n=len(texts),
        fp16_agreement=fp16[0],
        fp16_max_abs_diff=fp16[1],
        fp16_checked_on=fp16[2],
    )


def write_model_folder(
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    out: Path,
    *,
    version: str,
    max_length: int = 128,
    temperature: float = 1.0,
    int8: bool = True,
    fp16: bool = False,
    base_model: str = "",
    metrics: dict[str, float] | None = None,
    reference: ReferenceDistribution | None = None,
) -> ModelMetadata:
    """Write the complete model folder (graphs, tokenizer.json, metadata.json)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = export_onnx(model, out / FP32, max_length=max_length)
    if int8:
        quantize_int8(out / FP32, out / INT8)
    if fp16:
        convert_fp16(out / FP32, out / FP16)
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER))
    meta = ModelMetadata(
        version=version,
        labels=list(labels),
        max_length=max_length,
        input_names=names,
        pad_token_id=int(tokenizer.pad_token_id or 0),
        temperature=temperature,
        base_model=base_model,
        architecture=str(getattr(model.config, "model_type", "")),
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        metrics=metrics or {},
        reference=reference or ReferenceDistribution(),
        outputs=[LOGITS, EMBEDDING],
    )
    write_metadata(out, meta)
    return meta
