"""Training checkpoints, so a long CPU run survives a crash, a reboot or Ctrl-C.

:func:`retraining.train.fine_tune` writes one at the end of every epoch (and, when asked,
every few minutes inside an epoch) under ``<home>/checkpoints/<run key>/``: the model,
optimizer and LR-scheduler state, step and epoch, RNG states, history, best state, and the
run's *identity*: base model name and fingerprint, labels, TrainConfig, a fingerprint of the
training data and the distillation teacher. A file is written to a temporary name and renamed
into place, then described by a JSON sidecar (size, SHA-256, step, identity); only the newest
one is kept.

``newsflow train --resume`` continues the newest checkpoint of the same identity,
``--resume-from PATH`` a given one. Anything that would not continue the very same run (another
base, labels, data, schedule or teacher; a corrupt or truncated file; a missing path) is a
:class:`TrainingError` before any training step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from retraining.errors import TrainingError

log = logging.getLogger(__name__)
FORMAT = "newsflow-checkpoint/1"
SUFFIX, SIDECAR = ".pt", ".json"
# TrainConfig fields that may change between the interrupted run and its resumption: they
# change neither the data order nor the schedule.
FREE_OPTIONS = frozenset({"device"})
_STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")
Resume = Path | Literal["auto"]


def _sha256_json(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def base_fingerprint(model: Any, tokenizer: Any) -> dict[str, str]:
    """The encoder's architecture and a hash of its config (paths and library versions left
    out) and of the tokenizer's vocabulary: equal for the same base wherever it is loaded."""
    encoder = getattr(model, "encoder", model)
    config = {
        k: v
        for k, v in encoder.config.to_dict().items()
        if not k.startswith("_") and k not in {"transformers_version", "dtype", "torch_dtype"}
    }
    vocab = sorted(tokenizer.get_vocab().items())
    return {
        "architecture": type(encoder).__name__,
        "sha256": _sha256_json({"config": config, "vocab": vocab})[:16],
    }


def data_fingerprint(
    labels: Sequence[str],
    train_texts: Sequence[str],
    train_y: Sequence[int],
    val_texts: Sequence[str],
    val_y: Sequence[int],
) -> dict[str, Any]:
    """Row counts and a SHA-256 of every (label, text) pair in order, training then
    validation rows: the batch order depends on the row order, so it counts too."""
    h = hashlib.sha256()
    for part, (texts, ys) in enumerate(((train_texts, train_y), (val_texts, val_y))):
        h.update(f"\x00part{part}\x00".encode())
        for text, y in zip(texts, ys, strict=True):
            h.update(f"{labels[y]}\x1f{text}\x1e".encode())
    return {
        "train_rows": len(train_texts),
        "validation_rows": len(val_texts),
        "sha256": h.hexdigest()[:16],
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def training_identity(
    *,
    base_model: str,
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    cfg: Any,
    train_texts: Sequence[str],
    train_y: Sequence[int],
    val_texts: Sequence[str],
    val_y: Sequence[int],
    teacher: dict[str, Any] | None = None,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue a run (JSON-serialisable)."""
    options = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in FREE_OPTIONS}
    return {
        "format": FORMAT,
        "base_model": base_name(base_model),
        "base": base_fingerprint(model, tokenizer),
        "labels": list(labels),
        "train_config": options,
        "data": data_fingerprint(labels, train_texts, train_y, val_texts, val_y),
        "teacher": teacher,
        "init_from": None if init_from is None else file_sha256(init_from)[:16],
    }


def run_key(identity: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(identity.get("base_model", "")).split("/")[-1])
    return f"{name[:24] or 'run'}-{_sha256_json(identity)[:16]}"


def run_dir(home: Path, identity: dict[str, Any]) -> Path:
    return home / "checkpoints" / run_key(identity)


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why a checkpoint with identity ``saved`` cannot continue a run with ``current``."""
    out: list[str] = []
    if saved.get("format") != current.get("format"):
        return [f"checkpoint format {saved.get('format')!r}, this newsflow writes {FORMAT!r}"]
    if saved["base_model"] != current["base_model"] or saved["base"] != current["base"]:
        out.append(
            f"base model: the checkpoint was trained from {saved['base_model']!r} "
            f"({saved['base']['architecture']} {saved['base']['sha256']}), this run uses "
            f"{current['base_model']!r} ({current['base']['architecture']} "
            f"{current['base']['sha256']})"
        )
    if saved["labels"] != current["labels"]:
        out.append(f"labels: checkpoint {saved['labels']}, this run {current['labels']}")
    if saved["data"] != current["data"]:
        s, c = saved["data"], current["data"]
        out.append(
            f"training data: checkpoint {s['train_rows']} train + {s['validation_rows']} "
            f"validation rows (hash {s['sha256']}), this run {c['train_rows']} + "
            f"{c['validation_rows']} rows (hash {c['sha256']})"
        )
    so, co = saved["train_config"], current["train_config"]
    changed = [
        f"{k} {so.get(k)!r} -> {co.get(k)!r}" for k in sorted({*so, *co}) if so.get(k) != co.get(k)
    ]
    if changed:
        out.append("training options: " + ", ".join(changed))
    if saved.get("teacher") != current.get("teacher"):
        out.append(
            f"distillation: checkpoint {saved.get('teacher')}, this run {current.get('teacher')}"
        )
    if saved.get("init_from") != current.get("init_from"):
        out.append("warm start: the checkpoint started from other initial weights")
    return out


class _HashingWriter:
    """A file object that hashes what torch.save writes through it."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return int(self.fh.write(data))

    def flush(self) -> None:
        self.fh.flush()


def _atomic_write(path: Path, write: Any) -> Any:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def save(directory: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``step-<N>.pt`` plus its sidecar, atomically; remove older ones."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    step = int(payload["step"])
    path = directory / f"step-{step:08d}{SUFFIX}"

    def write(fh: Any) -> _HashingWriter:
        w = _HashingWriter(fh)
        torch.save(payload, w)
        return w

    w = _atomic_write(path, write)
    sidecar = {
        "format": FORMAT,
        "file": path.name,
        "bytes": w.size,
        "sha256": w.sha.hexdigest(),
        "step": step,
        "epoch": payload["epoch"],
        "epoch_done": payload["epoch_done"],
        "finished": payload["finished"],
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "identity": payload["identity"],
    }
    blob = (json.dumps(sidecar, indent=2) + "\n").encode()
    _atomic_write(path.with_suffix(SIDECAR), lambda fh: fh.write(blob))
    for old in directory.glob(f"step-*{SUFFIX}"):
        m = _STEP_FILE.match(old.name)
        if m and int(m.group(1)) < step:
            old.with_suffix(SIDECAR).unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    log.info("checkpoint written: %s (%.1f MB)", path, w.size / 1e6)
    return path


def newest(directory: Path) -> Path | None:
    """The checkpoint with the highest step in ``directory`` (complete ones: with sidecar)."""
    if not directory.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in directory.glob(f"step-*{SUFFIX}")
        if (m := _STEP_FILE.match(p.name)) and p.with_suffix(SIDECAR).is_file()
    ]
    return max(found)[1] if found else None


def find(home: Path, identity: dict[str, Any], resume: Resume) -> Path:
    """The file to resume from: ``auto`` is the newest checkpoint of this run's identity; a
    folder means its newest checkpoint; a file is itself."""
    if resume == "auto":
        here = run_dir(home, identity)
        got = newest(here)
        if got is None:
            raise TrainingError(f"no checkpoint to resume in {here}{_near_misses(home, identity)}")
        return got
    path = Path(resume).expanduser()
    if not path.exists():
        raise TrainingError(f"checkpoint {path} does not exist")
    if path.is_dir():
        got = newest(path)
        if got is None:
            raise TrainingError(f"{path} holds no complete checkpoint (step-*.pt with its .json)")
        return got
    return path


def _near_misses(home: Path, identity: dict[str, Any]) -> str:
    """Why the other runs' checkpoints do not fit, for the message of a failed --resume."""
    root = home / "checkpoints"
    notes = []
    for sidecar in sorted(root.glob(f"*/step-*{SIDECAR}")) if root.is_dir() else []:
        try:
            saved = json.loads(sidecar.read_text())["identity"]
            why = differences(saved, identity)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        notes.append(f"{sidecar.with_suffix(SUFFIX)} differs in {'; '.join(why)}")
    if not notes:
        return (
            " (nothing was checkpointed for this base, labels, data and options; "
            "start without --resume)"
        )
    return "; other checkpoints: " + " | ".join(notes[:3])


_KEYS = (
    "format",
    "identity",
    "step",
    "epoch",
    "epoch_done",
    "finished",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "history",
    "best",
)


def load(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Read and check a checkpoint; TrainingError when it is missing, corrupt, truncated or
    belongs to another run (every difference named)."""
    import torch

    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    sidecar = path.with_suffix(SIDECAR)
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            size, digest = int(meta["bytes"]), str(meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"checkpoint sidecar {sidecar} is unreadable: {exc}") from None
        actual = path.stat().st_size
        if actual != size:
            raise TrainingError(
                f"checkpoint {path} is truncated or corrupt: {actual} bytes, written {size}"
            )
        if file_sha256(path) != digest:
            raise TrainingError(f"checkpoint {path} is corrupt: its SHA-256 differs from {sidecar}")
        if "identity" in meta:  # refuse another run before reading a large file
            _check_identity(path, meta["identity"], identity)
    else:  # no SHA-256 to compare with: at least the zip's own CRC-32 of every record
        _check_crc(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"checkpoint {path} is corrupt or truncated: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TrainingError(f"{path} is not a newsflow training checkpoint ({FORMAT})")
    missing = [k for k in _KEYS if k not in payload]
    if missing:
        raise TrainingError(f"checkpoint {path} is incomplete: no {', '.join(missing)}")
    _check_identity(path, payload["identity"], identity)
    payload["path"] = str(path)
    return payload


def _check_crc(path: Path) -> None:
    """torch.load does not check the CRC-32s of its zip archive: a flipped byte in a tensor
    would load silently, so a checkpoint without its sidecar is tested here."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise TrainingError(
            f"checkpoint {path} is corrupt or truncated: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if bad is not None:
        raise TrainingError(
            f"checkpoint {path} is corrupt: its record {bad} fails its CRC-32 check (and there "
            f"is no {path.with_suffix(SIDECAR).name} to compare its SHA-256 with)"
        )


def _check_identity(path: Path, saved: Any, identity: dict[str, Any]) -> None:
    try:
        why = differences(saved, identity)
    except (KeyError, TypeError, AttributeError):
        why = ["its identity record is unreadable"]
    if why:
        raise TrainingError(f"checkpoint {path} is from another run: " + "; ".join(why))


@dataclasses.dataclass
class Checkpointing:
    """Where and how often :func:`retraining.train.fine_tune` checkpoints: at every epoch end,
    and inside an epoch when ``every_s`` seconds passed since the last one (None: never)."""

    directory: Path
    identity: dict[str, Any]
    every_s: float | None = None
    last: float = dataclasses.field(default_factory=time.monotonic)
    written: list[Path] = dataclasses.field(default_factory=list)

    def due(self) -> bool:
        return self.every_s is not None and time.monotonic() - self.last >= self.every_s

    def write(self, payload: dict[str, Any]) -> Path:
        path = save(self.directory, {"format": FORMAT, "identity": self.identity, **payload})
        self.last = time.monotonic()
        self.written.append(path)
        return path


def rng_states(rng: Any, device: str) -> dict[str, Any]:
    """The training loop's RNGs: its own ``random.Random`` (batch order) and torch's
    (dropout; CUDA's too on a GPU)."""
    import torch

    return {
        "python": rng.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device == "cuda" else None,
    }


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """Tensors on the CPU (copies only of those on a GPU): torch.save writes them at once."""
    return {k: v.detach().cpu() for k, v in state.items()}


@dataclasses.dataclass
class ResumePoint:
    """Where :func:`restore` left the loop: the next epoch, and for a checkpoint written
    inside an epoch that epoch's batches and the next batch (``partial``)."""

    step: int
    next_epoch: int
    finished: bool
    partial: dict[str, Any] | None
    history: list[dict[str, float]]
    epoch_seconds: list[float]
    best_f1: float
    best_epoch: int
    best_state: dict[str, Any] | None
    bad_epochs: int
    seconds: float
    path: str


def restore(
    payload: dict[str, Any], model: Any, opt: Any, sched: Any, rng: Any, *, total: int
) -> ResumePoint:
    """Put a checkpoint (from :func:`load`) back into the loop's model, optimizer, scheduler
    and RNGs."""
    import torch

    path = str(payload.get("path", "checkpoint"))
    saved_total = int(payload.get("total_steps", total))
    if saved_total != total:
        raise TrainingError(f"{path} was written for {saved_total} steps, this run has {total}")
    try:
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(dict(payload["scheduler"]))
        states = payload["rng"]
        rng.setstate(states["python"])
        torch.set_rng_state(states["torch"])
        if states.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"cannot restore {path}: {str(exc)[:300]}") from exc
    best = payload["best"]
    epoch = int(payload["epoch"])
    partial = None if payload["epoch_done"] else payload.get("partial")
    if not payload["epoch_done"] and partial is None:
        raise TrainingError(f"{path} was written inside epoch {epoch} but lacks its batches")
    return ResumePoint(
        step=int(payload["step"]),
        next_epoch=epoch + 1 if payload["epoch_done"] else epoch,
        finished=bool(payload["finished"]),
        partial=partial,
        history=list(payload["history"]),
        epoch_seconds=[float(s) for s in payload.get("epoch_seconds", [])],
        best_f1=float(best["f1"]),
        best_epoch=int(best["epoch"]),
        best_state=best.get("state"),
        bad_epochs=int(best["bad_epochs"]),
        seconds=float(payload.get("seconds", 0.0)),
        path=path,
    )


def base_name(base_model: str) -> str:
    """A local folder by its resolved path (``/x/``, ``/x`` and ``./x`` are one base); a
    short name (``minilm``, ``mpnet-base``) or hub name as given."""
    path = Path(base_model).expanduser()
    return str(path.resolve()) if path.is_dir() else base_model
