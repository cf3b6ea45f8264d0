"""Fine-tuning loop: AdamW, linear warm-up and decay, gradient clipping, early stopping on
validation macro-F1, dynamic padding with length-grouped batches, optional class weights."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from retraining.errors import TrainingError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of one fine-tuning run; bad values are refused with their name."""

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_share: float = 0.06
    max_grad_norm: float = 1.0
    max_length: int = 128
    patience: int = 1
    class_weights: bool = False
    label_smoothing: float = 0.0
    layer_decay: float = 1.0  # lr of layer i = lr * layer_decay ** (layers - i); 1 = off
    seed: int = 13
    max_steps: int | None = None  # for smoke tests
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": 0 < self.learning_rate < 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_share": 0 <= self.warmup_share < 1,
            "max_grad_norm": self.max_grad_norm > 0,
            "max_length": 8 <= self.max_length <= 8192,
            "patience": self.patience >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "layer_decay": 0 < self.layer_decay <= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "device": self.device in {"auto", "cpu", "cuda"},
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise TrainingError(
                "invalid training options: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )


@dataclasses.dataclass
class TrainOutcome:
    model: Any
    best_epoch: int
    best_val_macro_f1: float
    history: list[dict[str, float]]
    seconds: float
    epoch_seconds: list[float]


Encoded = list[list[int]]


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[Encoded, Encoded]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(i) for i in enc["input_ids"]]
    return enc["input_ids"], types


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, sort within mega-batches by length, cut into batches, shuffle the batches:
    little padding, still random."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(idx), mega):
        chunk = sorted(idx[start : start + mega], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(
    ids: Encoded, types: Encoded, batch: Sequence[int], pad_id: int, with_types: bool
) -> dict[str, Any]:
    import torch

    width = max(len(ids[i]) for i in batch)
    x = torch.full((len(batch), width), pad_id, dtype=torch.long)
    m = torch.zeros((len(batch), width), dtype=torch.long)
    t = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        n = len(ids[i])
        x[row, :n] = torch.tensor(ids[i])
        m[row, :n] = 1
        t[row, :n] = torch.tensor(types[i])
    out = {"input_ids": x, "attention_mask": m}
    if with_types:
        out["token_type_ids"] = t
    return out


def predict_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> npt.NDArray[np.float32]:
    import torch

    ids, types = encode(tokenizer, texts, max_length)
    with_types = getattr(model.config, "type_vocab_size", 0) > 1
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), model.head.out_features), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            b = order[s : s + batch_size]
            feed = {
                k: v.to(device)
                for k, v in collate(ids, types, b, tokenizer.pad_token_id or 0, with_types).items()
            }
            out[b] = model(**feed).float().cpu().numpy()
    return out


_LAYER = re.compile(r"\.layers?\.(\d+)\.")
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i, n_layers + 1 for everything above."""
    if "embeddings" in name:
        return 0
    m = _LAYER.search(name)
    return int(m.group(1)) + 1 if m else n_layers + 1


def param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and norms; with ``layer_decay`` < 1 each
    encoder layer's learning rate shrinks geometrically towards the embeddings."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0))
    groups: dict[tuple[int, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        key = (layer_depth(name, n_layers), not any(k in name for k in _NO_DECAY))
        groups.setdefault(key, []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": cfg.learning_rate * cfg.layer_decay ** (n_layers + 1 - depth),
        }
        for (depth, decay), ps in sorted(groups.items())
    ]


def fine_tune(
    model: Any,
    tokenizer: Any,
    train_texts: Sequence[str],
    train_y: Sequence[int],
    val_texts: Sequence[str],
    val_y: Sequence[int],
    cfg: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainOutcome:
    import torch
    from sklearn.metrics import f1_score

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = (
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    model.to(device)
    ids, types = encode(tokenizer, train_texts, cfg.max_length)
    lengths = [len(i) for i in ids]
    y = torch.tensor(list(train_y), dtype=torch.long)
    n_labels = model.head.out_features
    weight = None
    if cfg.class_weights:
        counts = np.bincount(np.asarray(train_y), minlength=n_labels).astype(np.float64)
        weight = torch.tensor(
            counts.sum() / (n_labels * np.maximum(counts, 1)), dtype=torch.float32, device=device
        )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = int(total * cfg.warmup_share)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    with_types = getattr(model.config, "type_vocab_size", 0) > 1
    pad = tokenizer.pad_token_id or 0
    best_f1, best_epoch, best_state, bad_epochs = -1.0, 0, None, 0
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    step = 0
    start = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.monotonic()
        model.train()
        running = 0.0
        batches = length_grouped_batches(lengths, cfg.batch_size, rng)
        for bi, batch in enumerate(batches):
            if step >= total:
                break
            feed = {k: v.to(device) for k, v in collate(ids, types, batch, pad, with_types).items()}
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(**feed)
            loss = loss_fn(logits.float(), y[batch].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if progress:
                progress(f"epoch {epoch}/{cfg.epochs} loss {running / (bi + 1):.3f}", step, total)
        epoch_seconds.append(time.monotonic() - t0)
        val_logits = predict_logits(
            model, tokenizer, val_texts, max_length=cfg.max_length, device=device
        )
        val_f1 = float(f1_score(list(val_y), val_logits.argmax(1), average="macro"))
        val_acc = float(np.mean(val_logits.argmax(1) == np.asarray(val_y)))
        history.append(
            {
                "epoch": epoch,
                "train_loss": running / max(1, len(batches)),
                "val_macro_f1": val_f1,
                "val_accuracy": val_acc,
                "epoch_seconds": epoch_seconds[-1],
            }
        )
        log.info("epoch %d: val macro-F1 %.4f acc %.4f", epoch, val_f1, val_acc)
        if val_f1 > best_f1:
            best_f1, best_epoch, bad_epochs = val_f1, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs > cfg.patience:
                break
        if step >= total:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    return TrainOutcome(
        model, best_epoch, best_f1, history, time.monotonic() - start, epoch_seconds
    )
