"""The full train -> calibrate -> ONNX export -> parity path on a GPU for the best sweep recipes
(issue 4); the last process scores the TF-IDF baseline of the 20 Newsgroups split once.
The project is imported as a package: installed (`.venv/bin/python`) or from the checkout
through PYTHONPATH, which run2.sh sets on the GPU machine."""

import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from pipeline.core.datasets import load_dataset
from pipeline.core.runtime import softmax
from retraining.data import make_splits
from retraining.evaluate import evaluate_probs, fit_temperature, tfidf_baseline
from retraining.export import parity_check, write_model_folder
from retraining.modeling import load_base
from retraining.train import TrainConfig, fine_tune, predict_logits

OUT = Path(os.environ["OUT"])
DATA = Path(".gpu/data")
NG = dict(epochs=10, patience=10, learning_rate=2e-4, label_smoothing=0.1)  # 20NG recipes share
RUNS = [
    ("20newsgroups", {**NG, "max_length": 512}),
    ("20newsgroups", {**NG, "max_length": 256, "layer_decay": 0.85}),
    ("20newsgroups", {**NG, "max_length": 512, "layer_decay": 0.85}),
    ("20newsgroups", {**NG, "max_length": 256, "learning_rate": 1e-4, "batch_size": 16}),
    ("ag_news", dict(epochs=6, patience=6, learning_rate=1.5e-4, layer_decay=0.9, batch_size=16)),
    ("ag_news", dict(epochs=10, patience=10, learning_rate=1e-4, label_smoothing=0.1, seed=5)),
]
i = int(sys.argv[1])
if i == len(RUNS):  # the TF-IDF baseline of the 20NG split, once
    sp = make_splits(
        load_dataset("20newsgroups", split="train", data_dir=DATA),
        load_dataset("20newsgroups", split="test", data_dir=DATA),
    )
    ix = {lbl: j for j, lbl in enumerate(sp.labels)}
    t0 = time.time()
    acc = tfidf_baseline(
        [r.text for r in sp.train + sp.validation],
        [ix[r.label] for r in sp.train + sp.validation],
        [r.text for r in sp.test],
        [ix[r.label] for r in sp.test],
    )
    row = dict(
        i=i, dataset="20newsgroups", tfidf_lr_accuracy=acc, seconds=round(time.time() - t0, 1)
    )
    print(json.dumps(row), flush=True)  # noqa: T201  (the run log)
    with open(OUT / "final.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    sys.exit(0)
dataset, kw = RUNS[i]
smoke = bool(os.environ.get("SMOKE"))
t0 = time.time()
try:
    tr = load_dataset(dataset, split="train", data_dir=DATA)
    te = load_dataset(dataset, split="test", data_dir=DATA)
    sp = make_splits(tr, te)
    if smoke:
        sp = type(sp)(sp.train[:64], sp.validation[:32], sp.test[:40], sp.labels, 0, 0)
    idx = {lbl: j for j, lbl in enumerate(sp.labels)}
    tr_x, tr_y = [r.text for r in sp.train], [idx[r.label] for r in sp.train]
    va_x, va_y = [r.text for r in sp.validation], [idx[r.label] for r in sp.validation]
    te_x = [r.text for r in sp.test]
    te_y = np.array([idx[r.label] for r in sp.test], dtype=np.int64)
    model, tok = load_base(".gpu/minilm", len(sp.labels))
    model.float()
    dev = "cpu" if smoke else "cuda"
    cfg = TrainConfig(device=dev, **kw, **({"max_steps": 2} if smoke else {}))
    res = fine_tune(model, tok, tr_x, tr_y, va_x, va_y, cfg)
    model.to(dev)
    val_logits = predict_logits(model, tok, va_x, max_length=cfg.max_length, device=dev)
    temperature = fit_temperature(val_logits, np.asarray(va_y, dtype=np.int64))
    test_logits = predict_logits(model, tok, te_x, max_length=cfg.max_length, device=dev)
    raw = evaluate_probs(softmax(test_logits), te_y, sp.labels)
    ev = evaluate_probs(softmax(test_logits, temperature), te_y, sp.labels)
    model.to("cpu")
    folder = Path(tempfile.mkdtemp()) / "model"
    write_model_folder(
        model,
        tok,
        sp.labels,
        folder,
        version=f"gpu-{i}",
        max_length=cfg.max_length,
        temperature=temperature,
    )
    t_par = time.time()
    parity = parity_check(model, tok, folder, te_x[:200], max_length=cfg.max_length)
    t_par = time.time() - t_par
    base = 0.0  # computed once by the last process
    row = dict(
        i=i,
        dataset=dataset,
        cfg=kw,
        accuracy=ev.accuracy,
        macro_f1=ev.macro_f1,
        ece=ev.ece,
        ece_uncalibrated=raw.ece,
        temperature=temperature,
        parity=dataclasses.asdict(parity),
        parity_ok=parity.ok,
        best_epoch=res.best_epoch,
        val=[round(h["val_macro_f1"], 4) for h in res.history],
        epoch_seconds=[round(s, 1) for s in res.epoch_seconds],
        splits=sp.summary(),
        seconds=round(time.time() - t0, 1),
        parity_seconds=round(t_par, 1),
    )
except Exception:
    row = dict(i=i, dataset=dataset, cfg=kw, error=traceback.format_exc()[-3000:])
print(json.dumps(row), flush=True)  # noqa: T201  (the run log)
with open(OUT / "final.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
