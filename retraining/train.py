"""Fine-tuning loop: AdamW, linear warm-up and decay, gradient clipping, early stopping on
validation macro-F1, dynamic padding with length-grouped batches, optional class weights,
optional distillation from a teacher's soft labels, checkpoints to resume an interrupted run
(:mod:`retraining.checkpoint`)."""

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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from retraining.errors import TrainingError

if TYPE_CHECKING:
    from retraining.checkpoint import Checkpointing

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
    seconds: float  # training time, including the interrupted run's when resumed
    epoch_seconds: list[float]
    steps: int = 0  # optimizer steps, all runs together
    resumed_from: str | None = None  # the checkpoint file this run continued


def check_distill_options(alpha: float, temperature: float) -> None:
    bad = []
    if not 0 <= alpha <= 1:
        bad.append(f"distill alpha={alpha!r} (0..1)")
    if not 0 < temperature <= 100:
        bad.append(f"distill temperature={temperature!r} (above 0, at most 100)")
    if bad:
        raise TrainingError("invalid distillation options: " + ", ".join(bad))


@dataclasses.dataclass(frozen=True)
class SoftTargets:
    """A teacher's soft labels for distillation: ``probs[i]`` is its calibrated distribution
    over the student's labels (same order) for training row ``i``, at ``temperature``."""

    probs: npt.NDArray[np.float32]
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha goes to the gold labels
    temperature: float = 2.0

    def __post_init__(self) -> None:
        check_distill_options(self.alpha, self.temperature)

    def tensor(self, rows: int, n_labels: int) -> Any:
        import torch

        if self.probs.shape != (rows, n_labels):
            raise TrainingError(
                f"soft labels have shape {self.probs.shape}, the training set needs "
                f"{(rows, n_labels)}"
            )
        return torch.as_tensor(np.asarray(self.probs, dtype=np.float32))


def distill_loss(
    student_logits: Any,
    teacher_probs: Any,
    gold: Any,
    ce: Callable[[Any, Any], Any],
    alpha: float,
    temperature: float,
) -> Any:
    """``alpha * T² * KL(teacher ‖ student at T) + (1 - alpha) * CE(student, gold)``
    (Hinton et al.; T² keeps the soft term's gradients on the scale of the hard one)."""
    import torch.nn.functional as F

    log_p = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(log_p, teacher_probs, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce(student_logits, gold)


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
# "bias" also matches MPNet's relative_attention_bias table: no weight decay on it either
# (as in the Hugging Face Trainer's default grouping).
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
# Position tables shared by every layer and applied before the first one go with the
# embeddings: MPNet's relative position bias (``encoder.relative_attention_bias``).
_EMBEDDING_LIKE = ("embeddings", "relative_attention_bias")


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings (and MPNet's shared relative position bias), i + 1 for encoder
    layer i, n_layers + 1 for everything above (pooler, head)."""
    if any(k in name for k in _EMBEDDING_LIKE):
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


@dataclasses.dataclass
class _Run:
    """The fixed parts of one fine-tuning run: device, encoded rows, loss, optimiser and
    schedule."""

    model: Any
    tokenizer: Any
    cfg: TrainConfig
    rng: random.Random
    device: str
    use_bf16: bool
    ids: Encoded
    types: Encoded
    y: Any  # torch.LongTensor of the gold labels
    loss_fn: Any
    soft: Any  # the teacher's soft labels as a tensor, or None
    alpha: float
    temperature: float
    opt: Any
    sched: Any
    total: int  # optimizer steps of the whole run
    with_types: bool
    pad: int
    checkpoint: Checkpointing | None = None  # set by fine_tune
    progress: Callable[[str, int, int], None] | None = None


@dataclasses.dataclass
class _LoopState:
    """Where the loop stands: what a checkpoint holds and a resumed run starts from."""

    step: int = 0
    first_epoch: int = 1
    finished: bool = False
    partial: dict[str, Any] | None = None  # resumed inside an epoch: its batches and place
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    seconds_before: float = 0.0  # training time of the interrupted run(s)
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, Any] | None = None
    started: float = 0.0  # time.monotonic() when this run's loop began


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
    checkpoint: Checkpointing | None = None,
    resume: dict[str, Any] | None = None,
    soft_targets: SoftTargets | None = None,
) -> TrainOutcome:
    """Fine-tune ``model`` in place and return it with the best epoch's weights.

    ``checkpoint``: write a checkpoint at every epoch end (and inside epochs when it says so).
    ``resume``: a checkpoint read and checked by :func:`retraining.checkpoint.load`; the run
    continues at its step with the same schedule, batch order and RNG states, so it ends
    where an uninterrupted run would. ``soft_targets``: distil from a teacher's soft labels
    (loss :func:`distill_loss`)."""
    run = _set_up(model, tokenizer, train_texts, train_y, cfg, soft_targets)
    run.checkpoint, run.progress = checkpoint, progress
    state = _LoopState() if resume is None else _resumed(run, resume)
    state.started = time.monotonic()
    lengths = [len(i) for i in run.ids]
    for epoch in range(state.first_epoch, cfg.epochs + 1):
        if state.finished:  # resumed from the checkpoint of a run that had ended
            break
        running, n_batches, t0 = _train_epoch(run, state, epoch, lengths)
        state.epoch_seconds.append(time.monotonic() - t0)
        _validate(run, state, epoch, running / max(1, n_batches), val_texts, val_y)
        state.finished = state.bad_epochs > cfg.patience or state.step >= run.total
        _snapshot(run, state, epoch)
        if state.finished:
            break
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.to("cpu").eval()
    return TrainOutcome(
        model,
        state.best_epoch,
        state.best_f1,
        state.history,
        state.seconds_before + time.monotonic() - state.started,
        state.epoch_seconds,
        steps=state.step,
        resumed_from=None if resume is None else str(resume.get("path", "")),
    )


def _set_up(
    model: Any,
    tokenizer: Any,
    train_texts: Sequence[str],
    train_y: Sequence[int],
    cfg: TrainConfig,
    soft_targets: SoftTargets | None,
) -> _Run:
    """Seed, pick the device, encode the training rows, build loss, optimiser and schedule."""
    import torch

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
    y = torch.tensor(list(train_y), dtype=torch.long)
    n_labels = model.head.out_features
    weight = None
    if cfg.class_weights:
        counts = np.bincount(np.asarray(train_y), minlength=n_labels).astype(np.float64)
        weight = torch.tensor(
            counts.sum() / (n_labels * np.maximum(counts, 1)), dtype=torch.float32, device=device
        )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    soft = None if soft_targets is None else soft_targets.tensor(len(ids), n_labels)
    alpha, temperature = (
        (soft_targets.alpha, soft_targets.temperature) if soft_targets else (0.0, 1.0)
    )
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

    return _Run(
        model=model,
        tokenizer=tokenizer,
        cfg=cfg,
        rng=rng,
        device=device,
        use_bf16=use_bf16,
        ids=ids,
        types=types,
        y=y,
        loss_fn=loss_fn,
        soft=soft,
        alpha=alpha,
        temperature=temperature,
        opt=opt,
        sched=torch.optim.lr_scheduler.LambdaLR(opt, lr_at),
        total=total,
        with_types=getattr(model.config, "type_vocab_size", 0) > 1,
        pad=tokenizer.pad_token_id or 0,
    )


def _resumed(run: _Run, resume: dict[str, Any]) -> _LoopState:
    """The loop state of a checkpoint, its model, optimiser, schedule and RNGs restored."""
    from retraining.checkpoint import restore

    point = restore(resume, run.model, run.opt, run.sched, run.rng, total=run.total)
    state = _LoopState(
        step=point.step,
        first_epoch=point.next_epoch,
        finished=point.finished,
        partial=point.partial,
        history=point.history,
        epoch_seconds=point.epoch_seconds,
        seconds_before=point.seconds,
        best_f1=point.best_f1,
        best_epoch=point.best_epoch,
        bad_epochs=point.bad_epochs,
        best_state=point.best_state,
    )
    log.info(
        "resuming %s at step %d of %d (epoch %d)",
        point.path,
        state.step,
        run.total,
        state.first_epoch,
    )
    if run.progress:
        run.progress(
            f"resumed at step {state.step} (epoch {state.first_epoch}/{run.cfg.epochs})",
            state.step,
            run.total,
        )
    return state


def _snapshot(run: _Run, state: _LoopState, epoch: int, part: dict[str, Any] | None = None) -> None:
    """Checkpoint the loop: after epoch ``epoch`` ends, or inside it (``part``)."""
    if run.checkpoint is None:
        return
    from retraining.checkpoint import cpu_state, rng_states

    run.checkpoint.write(
        {
            "step": state.step,
            "epoch": epoch,
            "epoch_done": part is None,
            "finished": state.finished,
            "partial": part,
            "total_steps": run.total,
            "model": cpu_state(run.model.state_dict()),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "rng": rng_states(run.rng, run.device),
            "history": state.history,
            "epoch_seconds": state.epoch_seconds,
            "best": {
                "f1": state.best_f1,
                "epoch": state.best_epoch,
                "bad_epochs": state.bad_epochs,
                "state": None if state.best_state is None else cpu_state(state.best_state),
            },
            "seconds": state.seconds_before + time.monotonic() - state.started,
        }
    )


def _train_epoch(
    run: _Run, state: _LoopState, epoch: int, lengths: Sequence[int]
) -> tuple[float, int, float]:
    """One epoch's optimizer steps (from a resumed checkpoint's place inside it, if any):
    ``(summed loss, batches in the epoch, time.monotonic() at its start)``."""
    import torch

    cfg, model, device = run.cfg, run.model, run.device
    model.train()
    if state.partial is not None:  # resumed inside this epoch: its batches, from the next one
        batches, first_batch = state.partial["batches"], int(state.partial["next_batch"])
        running = float(state.partial["running"])
        t0 = time.monotonic() - state.partial["elapsed"]
        state.partial = None
    else:
        batches, first_batch = length_grouped_batches(lengths, cfg.batch_size, run.rng), 0
        running, t0 = 0.0, time.monotonic()
    for bi in range(first_batch, len(batches)):
        if state.step >= run.total:
            break
        batch = batches[bi]
        feed = {
            k: v.to(device)
            for k, v in collate(run.ids, run.types, batch, run.pad, run.with_types).items()
        }
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=run.use_bf16):
            logits = model(**feed)
        gold = run.y[batch].to(device)
        if run.soft is None:
            loss = run.loss_fn(logits.float(), gold)
        else:
            teacher = run.soft[batch].to(device)
            loss = distill_loss(
                logits.float(), teacher, gold, run.loss_fn, run.alpha, run.temperature
            )
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        run.opt.step()
        run.sched.step()
        state.step += 1
        running += loss.item()
        inside = bi + 1 < len(batches) and state.step < run.total  # an epoch end checkpoints
        if run.checkpoint is not None and inside and run.checkpoint.due():
            part = {"batches": batches, "next_batch": bi + 1, "running": running}
            _snapshot(run, state, epoch, {**part, "elapsed": time.monotonic() - t0})
        if run.progress:
            run.progress(
                f"epoch {epoch}/{cfg.epochs} loss {running / (bi + 1):.3f}", state.step, run.total
            )
    return running, len(batches), t0


def _validate(
    run: _Run,
    state: _LoopState,
    epoch: int,
    train_loss: float,
    val_texts: Sequence[str],
    val_y: Sequence[int],
) -> None:
    """Score the validation rows after ``epoch``; keep the best weights (early stopping)."""
    from sklearn.metrics import f1_score

    val_logits = predict_logits(
        run.model, run.tokenizer, val_texts, max_length=run.cfg.max_length, device=run.device
    )
    val_f1 = float(f1_score(list(val_y), val_logits.argmax(1), average="macro"))
    val_acc = float(np.mean(val_logits.argmax(1) == np.asarray(val_y)))
    state.history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_macro_f1": val_f1,
            "val_accuracy": val_acc,
            "epoch_seconds": state.epoch_seconds[-1],
        }
    )
    log.info("epoch %d: val macro-F1 %.4f acc %.4f", epoch, val_f1, val_acc)
    if val_f1 > state.best_f1:
        state.best_f1, state.best_epoch, state.bad_epochs = val_f1, epoch, 0
        state.best_state = copy.deepcopy(run.model.state_dict())
    else:
        state.bad_epochs += 1
