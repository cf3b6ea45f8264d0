"""How much of a graph dynamic int8 may cover before its answers drift from torch's.

Quantising every weight MatMul agrees with torch on 99.3-99.5 % of argmaxes for a fine-tuned
MiniLM, but only 98.4 % for a one-epoch mpnet-base (1,000 AG News test texts). What loses most
is the input of the FFN down-projections (GELU outputs with a wide range, quantised per tensor
on the fly): keeping those MatMuls in fp32 in the last 3 of mpnet-base's 12 layers gave 98.3 %,
in the last 6 99.4 %, in all 12 99.6 % (model-only speed here: 53 texts/s with none kept, then
49, 34 and 29).

So the export tries, in order, no fp32 MatMul, then the down-projections of the last 3, 6 and
all layers, and keeps the first graph whose agreement with torch on validation texts reaches
the target by one standard error (or, failing that, the best; ties go to the faster graph).
The margin matters: a 3,600-row mpnet-base run agreed on exactly 99.0 % of its 400 validation
texts with no fp32 MatMul, and on 98.2 % of 2,000 test texts. Each try costs one quantisation
and one int8 pass over the texts, so a graph that passes at once costs one."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.core.model_folder import FP32, INT8

TARGET_AGREEMENT = 0.99
LAYER_STEPS = (0, 3, 6, None)  # down-projections kept fp32, counted from the last layer


@dataclasses.dataclass(frozen=True)
class Int8Choice:
    fp32_matmuls: list[str]  # node names left in fp32 in the chosen graph
    agreement: float  # argmax agreement with the reference on the texts given
    n: int
    required: float  # the agreement a graph had to reach to stop the search
    tried: list[tuple[int, float]]  # (fp32 MatMul count, agreement) in the order tried

    def as_dict(self) -> dict[str, object]:
        return {
            "int8_fp32_matmuls": len(self.fp32_matmuls),
            "int8_validation_agreement": self.agreement,
            "int8_validation_n": self.n,
            "int8_required": self.required,
            "int8_tried": [list(t) for t in self.tried],
        }


def down_projections(graph: Path) -> list[str]:
    """MatMul nodes whose constant weight narrows a wider input back to the model's width
    (rows > columns = the width most MatMul weights write): in a transformer encoder, the
    FFN down-projections, in graph order (first layer first). A classifier head written as a
    MatMul (hidden × labels) also narrows, but not to the model's width, so it is not one."""
    import onnx

    model = onnx.load(str(graph))
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    weights: list[tuple[str, list[int]]] = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        found = [dims[name] for name in node.input if name in dims]
        if len(found) == 1 and len(found[0]) == 2:
            weights.append((node.name, found[0]))
    if not weights:
        return []
    widths = Counter(w[1] for _, w in weights)
    width = max(widths, key=lambda c: (widths[c], c))  # Q, K, V, attention out, FFN out
    return [name for name, (rows, cols) in weights if cols == width and rows > cols]


def quantize_int8(src: Path, dst: Path, *, keep_fp32: Sequence[str] = ()) -> None:
    """Dynamic int8 with per-channel weight scales (per-tensor scales gave 98.4 % where
    per-channel gave 99.5 % on a fine-tuned MiniLM); ``keep_fp32``: MatMul nodes left alone."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))  # its per-tensor chatter goes to the root
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(keep_fp32),
        )
    finally:
        logging.disable(before)


def argmax_agreement(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose argmax matches; rows with NaN/inf logits on either side count as
    disagreeing."""
    if candidate.ndim != 2 or candidate.shape != reference.shape:
        raise ValueError(f"logits of shape {candidate.shape} vs {reference.shape}")
    same = candidate.argmax(1) == reference.argmax(1)
    finite = np.isfinite(candidate).all(1) & np.isfinite(reference).all(1)
    return float(np.mean(same & finite))


def required_agreement(target: float, n: int) -> float:
    """``target`` plus one standard error of a share measured on ``n`` texts."""
    return target + math.sqrt(max(target * (1 - target), 0.0) / max(n, 1))


def choose_int8(
    folder: Path,
    texts: Sequence[str],
    reference: np.ndarray,
    *,
    target: float = TARGET_AGREEMENT,
    steps: Sequence[int | None] = LAYER_STEPS,
) -> Int8Choice:
    """Write ``folder``'s int8 graph, keeping as few down-projections in fp32 as reach
    ``target`` agreement with ``reference`` (torch's logits for ``texts``), by a standard
    error (:func:`required_agreement`)."""
    from pipeline.core.runtime import Classifier

    if isinstance(texts, str) or not texts or len(texts) != len(reference):
        raise ValueError("choose_int8 needs a list of texts and one reference row per text")
    if not steps:
        raise ValueError("choose_int8 needs at least one step")
    downs = down_projections(folder / FP32)
    counts = sorted({len(downs) if s is None else min(max(s, 0), len(downs)) for s in steps})
    plans = [downs[len(downs) - n :] if n else [] for n in counts]  # fewest fp32 first
    required = required_agreement(target, len(texts))
    tried: list[tuple[int, float]] = []
    best: tuple[float, list[str]] | None = None
    written: list[str] = []
    for keep in plans:
        quantize_int8(folder / FP32, folder / INT8, keep_fp32=keep)
        written = keep
        logits = Classifier.load(folder, precision="int8", warmup=False).logits(texts)
        agreement = argmax_agreement(logits, reference)
        tried.append((len(keep), agreement))
        if best is None or agreement > best[0]:
            best = (agreement, keep)
        if agreement >= required:
            break
    assert best is not None
    if written is not best[1]:  # the graph on disk must be the chosen one
        quantize_int8(folder / FP32, folder / INT8, keep_fp32=best[1])
    return Int8Choice(
        fp32_matmuls=best[1], agreement=best[0], n=len(texts), required=required, tried=tried
    )
