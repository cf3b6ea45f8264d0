"""GPU serving benchmark: model-only sequences/s of the fp16 graph on ONNX Runtime's CUDA
provider, for news-length texts at batch sizes 32, 64, 128 and 256; one JSON object on stdout.

On a GPU host (NVIDIA driver, ``pip install -e .[gpu]`` as in the GPU worker notes)::

    python infra/gpu/bench_gpu.py --model-dir MODEL_FOLDER [--data ../shared/data] [--e2e]

Smoke run on a CPU (its figures are a smoke check, not GPU figures)::

    python infra/gpu/bench_gpu.py --device cpu --max-texts 256

* ``--model-dir`` takes a newsflow model folder; one without ``model.fp16.onnx`` is copied
  to a temp folder and converted there, and the fp16 graph's argmax agreement with fp32 on
  the first texts is reported. Without ``--model-dir`` a tiny random BERT folder is built
  (needs the ``train`` extra).
* Batches are formed as a worker forms them: consecutive texts, padded to the longest of
  the batch (rounded up to a multiple of 8 on a GPU). ``session`` figures time the ONNX
  session alone on pre-tokenized batches; ``with_tokenizer`` figures time ``logits()``.
* Where onnxruntime has no CUDA provider but torch sees CUDA, the same architecture runs in
  torch fp16 on CUDA, labelled ``torch-cuda reference, not the serving path``.
* ``--e2e`` adds articles/min for one worker through ``pipeline.proof.bench.run_bench`` on
  the local stack (Kafka + Postgres up, ``newsflow stack up``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.datasets import DatasetError, load_dataset
from pipeline.core.model_folder import FP16, FP32, read_metadata
from pipeline.core.runtime import CPU, CUDA, Classifier, inspect_onnxruntime

log = logging.getLogger("bench_gpu")
TORCH_LABEL = "torch-cuda reference, not the serving path"
_NEWS_WORDS = (
    "government",
    "said",
    "monday",
    "talks",
    "union",
    "leaders",
    "pay",
    "pensions",
    "resume",
    "next",
    "week",
    "shares",
    "company",
    "fell",
    "sharply",
    "trading",
    "investors",
    "quarterly",
    "profit",
    "central",
    "bank",
    "kept",
    "interest",
    "rates",
    "unchanged",
    "team",
    "won",
    "third",
    "match",
    "season",
    "late",
    "goal",
    "scientists",
    "reported",
    "space",
    "probe",
    "launch",
    "software",
    "makers",
    "released",
    "security",
    "updates",
    "the",
    "the",
    "the",
    "a",
    "of",
    "in",
    "and",
    "to",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, help="newsflow model folder (default: tiny random)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="holds ag_news/")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--max-texts", type=int, default=4096)
    p.add_argument("--passes", type=int, default=3, help="timed passes per setting (median)")
    p.add_argument("--io-binding", choices=["both", "on", "off"], default="both")
    p.add_argument("--parity-texts", type=int, default=256)
    p.add_argument("--e2e", action="store_true", help="also run one worker on the local stack")
    p.add_argument("--e2e-articles", type=int, default=5000)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    return p.parse_args(argv)


def news_texts(data_dir: Path, limit: int) -> tuple[list[str], str]:
    try:
        rows = load_dataset("ag_news", split="test", data_dir=data_dir)
        return [r.text for r in rows[:limit]], f"ag_news test ({data_dir})"
    except DatasetError:
        rng = random.Random(0)  # AG News texts are ~30-60 words: match that
        texts = [" ".join(rng.choices(_NEWS_WORDS, k=rng.randint(25, 60))) for _ in range(limit)]
        return texts, "synthetic news-length texts (AG News not found)"


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        pass
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(0))
    return None


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def tiny_folder(work: Path) -> Path:
    from retraining.bases.tiny import build_tiny
    from retraining.export import write_model_folder

    labels = ("World", "Sports", "Business", "Sci/Tech")
    model, tok = build_tiny("bert", labels)
    out = work / "tiny-bert"
    write_model_folder(
        model, tok, labels, out, version="tiny-bench", base_model="tiny-bert", fp16=True
    )
    return out


def with_fp16(folder: Path, work: Path) -> Path:
    """``folder`` itself when it has an fp16 graph, else a converted copy under ``work``."""
    if (folder / FP16).is_file():
        return folder
    from retraining.export import convert_fp16

    copy = work / "model"
    shutil.copytree(folder, copy)
    convert_fp16(copy / FP32, copy / FP16)
    return copy


def fp16_check(folder: Path, texts: Sequence[str], providers: list[str]) -> dict[str, Any]:
    from retraining.export import FP16_MIN_AGREEMENT
    from retraining.int8_recipe import argmax_agreement

    ref = Classifier.load(folder, precision="fp32", providers=[CPU], warmup=False).logits(texts)
    clf = Classifier.load(
        folder, precision="fp16", providers=providers, warmup=False, allow_cpu_fp16=True
    )
    agreement = argmax_agreement(clf.logits(texts), ref)
    return {
        "texts": len(texts),
        "argmax_agreement_vs_fp32": round(agreement, 4),
        "gate": FP16_MIN_AGREEMENT,
        "passes_gate": agreement >= FP16_MIN_AGREEMENT,
        "run_on": clf.provider,
    }


def chunks(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def time_passes(fn: Any, passes: int) -> float:
    """Median seconds of ``passes`` calls after one untimed warm-up call."""
    fn()
    runs = []
    for _ in range(passes):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def run_session(clf: Classifier, feeds: Sequence[dict[str, Any]]) -> None:
    for feed in feeds:
        clf.run(feed)


def run_logits(clf: Classifier, groups: Sequence[Sequence[str]]) -> None:
    for group in groups:
        clf.logits(group)


def run_torch(torch: Any, model: Any, feeds: Sequence[dict[str, Any]]) -> None:
    with torch.inference_mode():
        for feed in feeds:
            model(**feed)
    torch.cuda.synchronize()


def ort_rows(
    clf: Classifier, texts: Sequence[str], sizes: list[int], bindings: list[bool], passes: int
) -> list[dict[str, Any]]:
    device = "cuda" if clf.provider != CPU else "cpu"
    rows = []
    for size in sizes:
        clf.sub_batch = size
        groups = chunks(texts, size)
        feeds = [feed for group in groups for _, feed in clf.batches(group)]
        width = float(np.mean([f["input_ids"].shape[1] for f in feeds]))
        for bind in bindings:
            clf.binding_device = device if bind else None

            s_session = time_passes(partial(run_session, clf, feeds), passes)
            s_full = time_passes(partial(run_logits, clf, groups), passes)
            rows.append(
                {
                    "batch_size": size,
                    "io_binding": bind,
                    "mean_padded_tokens": round(width, 1),
                    "session_seq_per_s": round(len(texts) / s_session, 1),
                    "with_tokenizer_seq_per_s": round(len(texts) / s_full, 1),
                    "session_ms_per_batch": round(1000 * s_session / len(feeds), 3),
                }
            )
            log.info("%s", rows[-1])
    return rows


def torch_reference(
    folder: Path, clf: Classifier, texts: Sequence[str], sizes: list[int], passes: int
) -> dict[str, Any]:
    """The same architecture in torch fp16 on CUDA (random head: speed only)."""
    torch = _torch()
    meta = read_metadata(folder)
    if meta.base_model.startswith("tiny-"):
        from retraining.bases.tiny import build_tiny

        model, _ = build_tiny("roberta" if "roberta" in meta.base_model else "bert", meta.labels)
    else:
        from retraining.bases.resolve import resolve_base_model
        from retraining.modeling import load_base

        model, _ = load_base(resolve_base_model(meta.base_model), len(meta.labels))
    model = model.eval().half().cuda()
    rows = []
    for size in sizes:
        clf.sub_batch = size
        feeds = [
            {k: torch.from_numpy(v).cuda() for k, v in feed.items()}
            for group in chunks(texts, size)
            for _, feed in clf.batches(group)
        ]

        seconds = time_passes(partial(run_torch, torch, model, feeds), passes)
        rows.append({"batch_size": size, "seq_per_s": round(len(texts) / seconds, 1)})
    return {"label": TORCH_LABEL, "torch": torch.__version__, "rows": rows}


def end_to_end(folder: Path, data_dir: Path, articles: int) -> dict[str, Any]:
    from pipeline.core.db.engine import make_engine
    from pipeline.core.settings import Settings
    from pipeline.proof.bench import run_bench
    from pipeline.stack import stack_status

    settings = Settings()
    if not all(s.up for s in stack_status(settings)):
        return {"skipped": "the local stack is not up (newsflow stack up)"}
    engine = make_engine(settings)
    try:
        result = run_bench(
            settings,
            rows=load_dataset("ag_news", split="test", data_dir=data_dir),
            model_dir=folder,
            articles=articles,
            offered_per_min=1000.0,
            offered_articles=500,
            engine=engine,
            workdir=settings.home / "bench",
            report=lambda msg: log.info("%s", msg),
        )
    finally:
        engine.dispose()
    return {"worker_articles_per_min": round(result.drain_per_min, 1), **result.to_json()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    install = inspect_onnxruntime()
    has_cuda = CUDA in install.providers
    if args.device == "cuda" and not has_cuda:
        log.warning("onnxruntime %s has no CUDA provider", install.device)
    cuda = has_cuda and args.device != "cpu"
    providers = [CUDA, CPU] if cuda else [CPU]
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    bindings = {"both": [False, True], "on": [True], "off": [False]}[args.io_binding]
    texts, source = news_texts(args.data, args.max_texts)
    gpu = gpu_name()
    work = Path(tempfile.mkdtemp(prefix="newsflow-bench-gpu-"))
    try:
        folder = with_fp16(args.model_dir, work) if args.model_dir else tiny_folder(work)
        meta = read_metadata(folder)
        report: dict[str, Any] = {
            "what": "model-only fp16 throughput on onnxruntime (the serving path)",
            "figures_are": "GPU figures" if cuda else "a CPU smoke check, not GPU figures",
            "gpu": gpu,
            "onnxruntime": install.version,
            "onnxruntime_build": install.device,
            "onnxruntime_problem": install.problem,
            "model_version": meta.version,
            "architecture": meta.architecture,
            "texts": len(texts),
            "text_source": source,
            "fp16_parity": fp16_check(folder, texts[: args.parity_texts], providers),
        }
        torch = _torch()
        torch_cuda = torch is not None and torch.cuda.is_available()
        report["torch_reference"] = None
        if not cuda and torch_cuda and args.device == "auto":
            # No CUDA provider in this onnxruntime: the serving path cannot run on the GPU
            # here, so only the torch reference is timed (the tokenizer and padding are ours).
            clf = Classifier.load(folder, precision="fp32", providers=[CPU], warmup=False)
            clf.pad_multiple = 8
            report["provider"] = None
            report["figures_are"] = "no serving-path figures: onnxruntime has no CUDA provider"
            report["rows"] = []
            report["torch_reference"] = torch_reference(folder, clf, texts, sizes, args.passes)
        else:
            clf = Classifier.load(
                folder, precision="fp16", providers=providers, allow_cpu_fp16=not cuda
            )
            report["provider"] = clf.provider
            report["precision"] = clf.precision
            report["rows"] = ort_rows(clf, texts, sizes, bindings, args.passes)
        lengths = [len(e.ids) for e in clf.tokenizer.encode_batch(list(texts))]
        report["mean_tokens"] = round(float(np.mean(lengths)), 1)  # vs the rows' padded width
        report["end_to_end"] = (
            end_to_end(folder, args.data, args.e2e_articles) if args.e2e else None
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    main()
