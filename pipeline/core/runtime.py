"""Classifier runtime without torch: `tokenizers` + ONNX Runtime.

Texts are tokenized with the model's fast tokenizer (truncated to its max length), sorted by
length, and run in sub-batches padded to the longest member of each (never to a fixed length).

On a GPU (the ``onnxruntime-gpu`` build, extra ``gpu``) the CUDA provider is picked, ``auto``
precision prefers the fp16 graph, sub-batches are larger and padded to a multiple of 8, and
inputs/outputs go through I/O binding. The CPU path is unchanged. ``--precision fp16``
without a working GPU provider is an error at load, not a silent CPU run.

Example:
    >>> clf = Classifier.load(Path("model"), threads=2)  # doctest: +SKIP
    >>> [r.topic for r in clf.predict(["Stocks rally as rates fall"])]  # doctest: +SKIP
    ['Business']
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.core.errors import ModelError
from pipeline.core.model_folder import (
    EMBEDDING,
    FP16,
    FP32,
    INT8,
    LOGITS,
    TOKENIZER,
    ModelMetadata,
    Precision,
    check_folder,
)

log = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
# TensorRT is opt-in (pass it in ``providers``): the PyPI onnxruntime-gpu lists it even where
# libnvinfer is absent (session start then logs an error and falls back), and with our dynamic
# padding every new (rows, width) outside its profile would build a new engine.
PROVIDER_PREFERENCE = (CUDA, CPU)
SUB_BATCH = {"cpu": 32, "gpu": 128}
GRAPH_PRECISION = {FP32: "fp32", INT8: "int8", FP16: "fp16"}
# Distributions that ship the `onnxruntime` module; two installed at once overwrite each other.
_ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
)


@dataclasses.dataclass(frozen=True, slots=True)
class OrtInstall:
    """What the importable `onnxruntime` is, and which pip distributions claim to provide it."""

    version: str
    device: str  # ort.get_device(): "CPU" for the CPU build, "GPU" for onnxruntime-gpu
    providers: tuple[str, ...]
    packages: Mapping[str, str]  # distribution name -> version

    @property
    def problem(self) -> str | None:
        return install_problem(self.packages, self.device, self.providers)


def install_problem(
    packages: Mapping[str, str], device: str, providers: Sequence[str]
) -> str | None:
    """Name a broken onnxruntime install, or None. Both `onnxruntime` (a core dependency) and
    `onnxruntime-gpu` (extra ``gpu``) unpack into the same `onnxruntime` folder, so with both
    installed the module is whichever was installed last, and uninstalling either one deletes
    files the other needs."""
    fix = (
        "keep one: pip uninstall -y onnxruntime onnxruntime-gpu, then "
        "pip install --no-deps onnxruntime-gpu==VERSION (GPU host) or onnxruntime (CPU host)"
    )
    if len(packages) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
        return (
            f"{listed} are installed together and share the `onnxruntime` module; the loaded "
            f"one is the {device} build with {', '.join(providers)}; {fix}"
        )
    if "onnxruntime-gpu" in packages and not any(p in providers for p in GPU_PROVIDERS):
        return (
            "onnxruntime-gpu is installed but the loaded onnxruntime has no CUDA provider "
            f"({device} build: {', '.join(providers)}); a CPU build was unpacked over it; {fix}"
        )
    return None


def inspect_onnxruntime() -> OrtInstall:
    import importlib.metadata as md

    import onnxruntime as ort

    packages: dict[str, str] = {}
    for name in _ORT_DISTRIBUTIONS:
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return OrtInstall(
        version=str(ort.__version__),
        device=str(ort.get_device()),
        providers=tuple(ort.get_available_providers()),
        packages=packages,
    )


def is_gpu(providers: Sequence[str]) -> bool:
    return any(p in GPU_PROVIDERS for p in providers)


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    topic: str
    confidence: float
    margin: float
    probabilities: tuple[float, ...]


def pick_providers(available: Sequence[str], *, tensorrt: bool = False) -> list[str]:
    order = (TENSORRT, *PROVIDER_PREFERENCE) if tensorrt else PROVIDER_PREFERENCE
    chosen = [p for p in order if p in available]
    return chosen or [CPU]


def pick_graph(folder: Path, precision: Precision, providers: Sequence[str]) -> Path:
    gpu = is_gpu(providers)
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


Feed = dict[str, npt.NDArray[np.int64]]


class Classifier:
    """A loaded model: tokenizer + ORT session + labels. Thread-compatible for one caller."""

    def __init__(
        self,
        meta: ModelMetadata,
        tokenizer: Any,
        session: Any,
        graph: Path,
        *,
        sub_batch: int = SUB_BATCH["cpu"],
        binding_device: str | None = None,
        pad_multiple: int = 1,
    ) -> None:
        self.meta = meta
        self.tokenizer = tokenizer
        self.session = session
        self.graph = graph
        self.sub_batch = sub_batch
        self.binding_device = binding_device  # "cuda"/"cpu": run through I/O binding
        self.pad_multiple = pad_multiple
        self._inputs = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        self._output = LOGITS if LOGITS in outputs else outputs[0]
        self._embedding = EMBEDDING if EMBEDDING in outputs else None

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @property
    def has_embedding(self) -> bool:
        """The graph outputs the pooled, L2-normalised embedding (folders exported since
        issue 24; older ones have logits only)."""
        return self._embedding is not None

    @property
    def provider(self) -> str:
        """The execution provider running the graph: CUDA, TensorRT or CPU."""
        return str(self.session.get_providers()[0])

    @property
    def precision(self) -> str:
        return GRAPH_PRECISION.get(self.graph.name, "unknown")

    def describe(self) -> dict[str, str]:
        """What is being served, as flat strings (log fields, an info metric's labels)."""
        return {
            "model_version": self.version,
            "graph": self.graph.name,
            "precision": self.precision,
            "provider": self.provider,
            "io_binding": self.binding_device or "off",
            "sub_batch": str(self.sub_batch),
        }

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        precision: Precision = "auto",
        threads: int = 0,
        providers: Sequence[str] | None = None,
        sub_batch: int | None = None,
        warmup: bool = True,
        io_binding: bool | None = None,
        allow_cpu_fp16: bool = False,
    ) -> Classifier:
        """Load a model folder.

        ``providers``: execution providers in order; default CUDA when this onnxruntime has
        it, else CPU (TensorRT only when named here). ``sub_batch``: rows per session run,
        default 32 on CPU and 128 on a GPU. ``io_binding``: feed and fetch through ORT's I/O
        binding; default on for a GPU provider only. ``allow_cpu_fp16``: let the fp16 graph
        run on the CPU provider (parity checks and tests); otherwise fp16 without a working
        GPU provider raises ModelError.
        """
        from tokenizers import Tokenizer

        meta = check_folder(folder)
        install = inspect_onnxruntime()
        if install.problem:
            log.warning("onnxruntime install: %s", install.problem)
        chosen = list(providers) if providers else pick_providers(install.providers)
        if precision == "fp16" and not allow_cpu_fp16 and not is_gpu(chosen):
            raise ModelError(_no_gpu_message(install, chosen))
        graph = pick_graph(folder, precision, chosen)
        rows = sub_batch or SUB_BATCH["gpu" if is_gpu(chosen) else "cpu"]
        try:
            session = _open_session(graph, chosen, meta, threads=threads, rows=rows)
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        except Exception as exc:
            raise ModelError(f"cannot load model from {folder}: {exc}") from exc
        running = session.get_providers()[0]
        if is_gpu(chosen) and not is_gpu([running]):
            reason = _fallback_message(install, chosen, running)
            if precision == "fp16" and not allow_cpu_fp16:
                raise ModelError(reason)
            log.error("%s", reason)
            if precision == "auto" and graph.name == FP16:  # fp16 is for GPUs; use the CPU pick
                graph = pick_graph(folder, "auto", [CPU])
                session = _open_session(graph, [CPU], meta, threads=threads, rows=rows)
            rows = sub_batch or SUB_BATCH["cpu"]
        elif running != chosen[0]:
            log.warning(
                "asked for %s, running on %s (see onnxruntime's error above)", chosen[0], running
            )
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=meta.max_length)
        _check_outputs(session, graph, meta)
        gpu = is_gpu([running])
        bind = gpu if io_binding is None else io_binding
        clf = cls(
            meta,
            tokenizer,
            session,
            graph,
            sub_batch=rows,
            binding_device=("cuda" if gpu else "cpu") if bind else None,
            pad_multiple=8 if gpu else 1,  # tensor-core friendly widths, fewer distinct shapes
        )
        if warmup:
            clf.warm_up()
        info = clf.describe()
        log.info(
            "model loaded: %s, %s on %s",
            meta.version,
            graph.name,
            info["provider"],
            extra={**info, "providers": session.get_providers(), "onnxruntime": install.version},
        )
        return clf

    def warm_up(self) -> None:
        """Run the largest shape once (``sub_batch`` rows of ``max_length`` tokens), so the
        CPU arena reaches its working size at load rather than whenever a long batch first
        arrives, plus a short one."""
        long_text = " ".join(["news"] * self.meta.max_length)
        self.predict([long_text] * self.sub_batch + ["a short warm-up sentence"])

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[npt.NDArray[np.intp], Feed]]:
        """Tokenize, sort by length and pad per sub-batch: ``(row indices, session feed)``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        pad = self.meta.pad_token_id
        step = self.pad_multiple
        for start in range(0, len(order), self.sub_batch):
            idx = order[start : start + self.sub_batch]
            width = int(lengths[idx].max())
            if step > 1:
                width = max(width, min(-(-width // step) * step, self.meta.max_length))
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
            yield idx, feed

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        """Logits of one padded sub-batch."""
        return self._fetch(feed, [self._output])[0]

    def _fetch(self, feed: Feed, names: Sequence[str]) -> list[npt.NDArray[np.float32]]:
        """The graph's outputs ``names`` for one padded sub-batch (ORT computes only what
        they need)."""
        if self.binding_device is None:
            out: list[npt.NDArray[np.float32]] = self.session.run(list(names), feed)
            return out
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name in names:
            binding.bind_output(name, self.binding_device)
        self.session.run_with_iobinding(binding)
        fetched: list[npt.NDArray[np.float32]] = binding.copy_outputs_to_cpu()
        return fetched

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Raw logits in input order."""
        return self.infer(texts, embed=False)[0]

    def infer(
        self, texts: Sequence[str], *, embed: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Logits and, when ``embed`` and the graph has the output, the unit-length
        embeddings (``[n, hidden]``; None otherwise), in input order, from one pass."""
        names = [self._output] + ([self._embedding] if embed and self._embedding else [])
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        vectors: npt.NDArray[np.float32] | None = None
        for idx, feed in self.batches(texts):
            got = self._fetch(feed, names)
            logits[idx] = got[0]
            if len(got) > 1:
                if vectors is None:
                    vectors = np.zeros((len(texts), got[1].shape[1]), dtype=np.float32)
                vectors[idx] = got[1]
        if vectors is None and len(names) > 1:  # no texts
            vectors = np.zeros((0, 0), dtype=np.float32)
        return logits, vectors

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit-length embeddings of ``texts`` (the vector the head reads, normalised);
        ModelError for a graph exported without them."""
        vectors = self.infer(texts)[1] if self._embedding is not None else None
        if vectors is None:
            raise ModelError(f"model {self.version} ({self.graph.name}) has no embedding output")
        return vectors

    def predict(self, texts: Sequence[str]) -> list[Scored]:
        return self.predict_embedded(texts, embed=False)[0]

    def predict_embedded(
        self, texts: Sequence[str], *, embed: bool = True
    ) -> tuple[list[Scored], npt.NDArray[np.float32] | None]:
        """:meth:`predict` plus the embeddings of :meth:`infer` (None without them)."""
        logits, vectors = self.infer(texts, embed=embed)
        probs = softmax(logits, self.meta.temperature)
        return [self._score(row) for row in probs], vectors

    def _score(self, row: npt.NDArray[np.float64]) -> Scored:
        top2 = np.argsort(row)[-2:][::-1]
        best = int(top2[0])
        return Scored(
            topic=self.labels[best],
            confidence=float(row[best]),
            margin=float(row[best] - row[int(top2[1])]),
            probabilities=tuple(float(p) for p in row),
        )


def _check_outputs(session: Any, graph: Path, meta: ModelMetadata) -> None:
    """The logits output has one column per label; an embedding output the metadata lists
    but the graph lacks is logged (the model serves; it makes no suggestions)."""
    outputs = {o.name: o for o in session.get_outputs()}
    logits = outputs.get(LOGITS) or session.get_outputs()[0]
    n_out = logits.shape[-1]
    if isinstance(n_out, int) and n_out != len(meta.labels):
        raise ModelError(f"{graph.name} has {n_out} outputs but {len(meta.labels)} labels")
    if meta.has_embedding and EMBEDDING not in outputs:
        log.warning(
            "%s: metadata.json lists an %r output that the graph lacks; serving without it",
            graph.name,
            EMBEDDING,
        )


def _open_session(
    graph: Path, providers: Sequence[str], meta: ModelMetadata, *, threads: int, rows: int
) -> Any:
    import onnxruntime as ort

    if is_gpu(providers):
        _preload_cuda(ort)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Memory patterns are cached per input shape; with dynamic padding every (rows, width)
    # pair is a new shape, so the cache grew the worker by ~25 % over its first 10 minutes
    # (1,500 random shapes: 239 -> 301 MiB with it, 246 -> 255 MiB without, same speed).
    opts.enable_mem_pattern = False
    config: list[str | tuple[str, dict[str, str]]] = [
        (p, _tensorrt_options(meta, rows)) if p == TENSORRT else p for p in providers
    ]
    return ort.InferenceSession(str(graph), sess_options=opts, providers=config)


def _tensorrt_options(meta: ModelMetadata, rows: int) -> dict[str, str]:
    """One optimisation profile covering every padded shape we send (1..rows x 1..max_length),
    so dynamic padding does not trigger engine rebuilds; engines cached across restarts.
    Not exercised here (no TensorRT on the test hosts)."""

    def shapes(n: int, width: int) -> str:
        return ",".join(f"{name}:{n}x{width}" for name in meta.input_names)

    return {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(Path(tempfile.gettempdir()) / "newsflow-trt"),
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(rows, min(64, meta.max_length)),
        "trt_profile_max_shapes": shapes(rows, meta.max_length),
    }


def _preload_cuda(ort: Any) -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels the ``gpu`` extra installs (or from torch),
    with onnxruntime's own helper (1.21+). Libraries already on the loader path work anyway;
    a real miss shows up as the provider fallback that ``Classifier.load`` reports."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # best effort by design
        log.debug("onnxruntime.preload_dlls: %s", exc)


def _no_gpu_message(install: OrtInstall, chosen: Sequence[str]) -> str:
    msg = (
        f"precision fp16 needs a GPU execution provider (CUDA or TensorRT), but this "
        f"onnxruntime {install.version} ({install.device} build) would run on "
        f"{', '.join(chosen)}. Install the `gpu` extra (onnxruntime-gpu) on a host with an "
        "NVIDIA driver, or use precision auto, fp32 or int8 on CPU"
    )
    return f"{msg}. Also: {install.problem}" if install.problem else msg


def _fallback_message(install: OrtInstall, chosen: Sequence[str], running: str) -> str:
    wanted = next(p for p in chosen if p in GPU_PROVIDERS)
    if wanted not in install.providers:
        why = f"this onnxruntime ({install.device} build) has no {wanted}"
    else:
        why = (
            "it could not start: the CUDA/cuDNN libraries this onnxruntime-gpu was built for, "
            "or a matching NVIDIA driver, were not found (onnxruntime logged the cause above)"
        )
    return f"{wanted} was requested but the model runs on {running}: {why}"


def timed_predict(clf: Classifier, texts: Sequence[str]) -> tuple[list[Scored], float]:
    start = time.perf_counter()
    scored = clf.predict(texts)
    return scored, (time.perf_counter() - start) * 1000.0
