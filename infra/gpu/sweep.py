"""Hyper-parameter sweep of the fine-tuning loop on a GPU (issue 4): 22 AG News / 20 Newsgroups
configurations, 8 processes sharing one GPU. Usage: SHARDS=8 bash infra/gpu/run.sh (results in
$OUT/sweep.jsonl). SMOKE=1 runs 2 CPU steps per configuration to check the script.
The project is imported as a package: installed (`.venv/bin/python infra/gpu/sweep.py`) or
from the checkout through PYTHONPATH, which run.sh sets on the GPU machine."""

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from pipeline.core.datasets import load_dataset
from retraining.data import make_splits
from retraining.modeling import load_base
from retraining.train import TrainConfig, fine_tune, predict_logits

OUT = Path(os.environ["OUT"])
DATA = Path(".gpu/data")
BASE = ".gpu/minilm"

AG = [
    dict(epochs=3),  # the current default recipe (0.9016 on CPU)
    dict(epochs=6, patience=6),
    dict(epochs=6, patience=6, learning_rate=2e-4),
    dict(epochs=8, patience=8, learning_rate=5e-5),
    dict(epochs=6, patience=6, label_smoothing=0.1),
    dict(epochs=6, patience=6, learning_rate=2e-4, layer_decay=0.8),
    dict(epochs=6, patience=6, learning_rate=3e-4, layer_decay=0.7),
    dict(epochs=6, patience=6, batch_size=16),
    dict(epochs=4, patience=4, seed=1),
    dict(epochs=4, patience=4, seed=2),
    dict(epochs=8, patience=8, learning_rate=2e-4, layer_decay=0.85, label_smoothing=0.1),
    dict(epochs=6, patience=6, warmup_share=0.1, weight_decay=0.1),
    dict(epochs=10, patience=10, learning_rate=1e-4, label_smoothing=0.1),
    dict(epochs=6, patience=6, learning_rate=1.5e-4, layer_decay=0.9, batch_size=16),
    dict(epochs=4, patience=4, seed=3),
    dict(epochs=6, patience=6, learning_rate=2e-4, label_smoothing=0.1, seed=2),
]
NG = [
    dict(epochs=2, max_length=128),  # the current 20NG run (0.818 on CPU)
    dict(epochs=5, patience=5, max_length=256),
    dict(epochs=5, patience=5, max_length=512),
    dict(epochs=8, patience=8, max_length=256, learning_rate=2e-4, layer_decay=0.85),
    dict(epochs=8, patience=8, max_length=512, learning_rate=2e-4, label_smoothing=0.1),
    dict(epochs=5, patience=5, max_length=256, batch_size=16),
]
CONFIGS = [("ag_news", c) for c in AG] + [("20newsgroups", c) for c in NG]
# interleave so that both datasets start early
order = []
ag, ng = list(range(len(AG))), list(range(len(AG), len(CONFIGS)))
while ag or ng:
    for src in (ag, ag, ng):
        if src:
            order.append(src.pop(0))

shard, shards = map(int, sys.argv[1].split("/"))
splits = {}
for k in order[shard::shards]:
    dataset, kw = CONFIGS[k]
    t0 = time.time()
    try:
        if dataset not in splits:
            tr = load_dataset(dataset, split="train", data_dir=DATA)
            te = load_dataset(dataset, split="test", data_dir=DATA)
            splits[dataset] = make_splits(tr, te)
        sp = splits[dataset]
        labels = sp.labels
        idx = {lbl: i for i, lbl in enumerate(labels)}
        model, tok = load_base(BASE, len(labels))
        model.float()
        smoke = bool(os.environ.get("SMOKE"))
        cfg = TrainConfig(
            device="cpu" if smoke else "cuda", **kw, **({"max_steps": 2} if smoke else {})
        )
        if smoke:
            sp = type(sp)(sp.train[:64], sp.validation[:32], sp.test[:32], sp.labels, 0, 0)
        res = fine_tune(
            model,
            tok,
            [r.text for r in sp.train],
            [idx[r.label] for r in sp.train],
            [r.text for r in sp.validation],
            [idx[r.label] for r in sp.validation],
            cfg,
        )
        dev = cfg.device
        model.to(dev)
        logits = predict_logits(
            model, tok, [r.text for r in sp.test], max_length=cfg.max_length, device=dev
        )
        y = np.array([idx[r.label] for r in sp.test])
        from sklearn.metrics import f1_score

        row = dict(
            k=k,
            dataset=dataset,
            cfg=kw,
            test_acc=float((logits.argmax(1) == y).mean()),
            test_macro_f1=float(f1_score(y, logits.argmax(1), average="macro")),
            best_epoch=res.best_epoch,
            best_val_f1=res.best_val_macro_f1,
            history=res.history,
            seconds=round(time.time() - t0, 1),
            n_test=len(y),
        )
    except Exception:
        row = dict(k=k, dataset=dataset, cfg=kw, error=traceback.format_exc()[-2000:])
    print(json.dumps(row), flush=True)  # noqa: T201  (the run log)
    with open(OUT / "sweep.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
