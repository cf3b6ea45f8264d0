"""Classifier runtime without torch: `tokenizers` + ONNX Runtime.

Texts are tokenized with the model's fast tokenizer (truncated to its max length), sorted by
length, and run in sub-batches padded to the longest member of each (never to a fixed length).

Example:
    >>> clf = Classifier.load(Path("model"), threads=2)  # doctest: +SKIP
    >>> [r.topic for r in clf.predict(["Stocks rally as rates fall"])]  # doctest: +SKIP
    ['Business']
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import (
    FP16,
    FP32,
    INT8,
    TOKENIZER,
    ModelMetadata,
    Precision,
    check_folder,
)

log = logging.getLogger(__name__)

PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    topic: str
    confidence: float
    margin: float
    probabilities: tuple[float, ...]


def pick_providers(available: Sequence[str]) -> list[str]:
    chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    return chosen or ["CPUExecutionProvider"]


def pick_graph(folder: Path, precision: Precision, providers: Sequence[str]) -> Path:
    gpu = any(p != "CPUExecutionProvider" for p in providers)
    if precision == "auto":
        order = [FP16, FP32] if gpu else [INT8, FP32]
    else:
        order = [{"fp32": FP32, "int8": INT8, "fp16": FP16}[precision]]
    for name in order:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"{folder} has no {precision} graph (looked for {', '.join(order)})")


def softmax(logits: npt.NDArray[np.float32], temperature: float = 1.0) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


class Classifier:
    """A loaded model: tokenizer + ORT session + labels. Thread-compatible for one caller."""

    def __init__(
        self, meta: ModelMetadata, tokenizer: Any, session: Any, graph: Path, *, sub_batch: int = 32
    ) -> None:
        self.meta = meta
        self.tokenizer = tokenizer
        self.session = session
        self.graph = graph
        self.sub_batch = sub_batch
        self._inputs = {i.name for i in session.get_inputs()}

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        precision: Precision = "auto",
        threads: int = 0,
        providers: Sequence[str] | None = None,
        sub_batch: int = 32,
        warmup: bool = True,
    ) -> Classifier:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = check_folder(folder)
        chosen = list(providers) if providers else pick_providers(ort.get_available_providers())
        graph = pick_graph(folder, precision, chosen)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns are cached per input shape; with dynamic padding every (rows, width)
        # pair is a new shape, so the cache grew the worker by ~25 % over its first 10 minutes
        # (1,500 random shapes: 239 -> 301 MiB with it, 246 -> 255 MiB without, same speed).
        opts.enable_mem_pattern = False
        try:
            session = ort.InferenceSession(str(graph), sess_options=opts, providers=chosen)
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        except Exception as exc:
            raise ModelError(f"cannot load model from {folder}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=meta.max_length)
        n_out = session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(meta.labels):
            raise ModelError(f"{graph.name} has {n_out} outputs but {len(meta.labels)} labels")
        clf = cls(meta, tokenizer, session, graph, sub_batch=sub_batch)
        if warmup:
            clf.warm_up()
        log.info(
            "model loaded",
            extra={
                "model_version": meta.version,
                "graph": graph.name,
                "providers": session.get_providers(),
            },
        )
        return clf

    def warm_up(self) -> None:
        """Run the largest shape once (``sub_batch`` rows of ``max_length`` tokens), so the
        CPU arena reaches its working size at load rather than whenever a long batch first
        arrives, plus a short one."""
        long_text = " ".join(["news"] * self.meta.max_length)
        self.predict([long_text] * self.sub_batch + ["a short warm-up sentence"])

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Raw logits in input order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        pad = self.meta.pad_token_id
        for start in range(0, len(order), self.sub_batch):
            idx = order[start : start + self.sub_batch]
            width = int(lengths[idx].max())
            ids = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = 1
                types[row, :n] = enc.type_ids
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = types
            out[idx] = self.session.run(None, feed)[0]
        return out

    def predict(self, texts: Sequence[str]) -> list[Scored]:
        probs = softmax(self.logits(texts), self.meta.temperature)
        return [self._score(row) for row in probs]

    def _score(self, row: npt.NDArray[np.float64]) -> Scored:
        top2 = np.argsort(row)[-2:][::-1]
        best = int(top2[0])
        return Scored(
            topic=self.labels[best],
            confidence=float(row[best]),
            margin=float(row[best] - row[int(top2[1])]),
            probabilities=tuple(float(p) for p in row),
        )


def timed_predict(clf: Classifier, texts: Sequence[str]) -> tuple[list[Scored], float]:
    start = time.perf_counter()
    scored = clf.predict(texts)
    return scored, (time.perf_counter() - start) * 1000.0
