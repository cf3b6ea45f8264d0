"""Leakage-free splits: exact and near duplicates (normalised-text hash) are removed across
train / validation / test before a stratified split with a fixed seed."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from pipeline.core.datasets import LabelledText
from retraining.errors import TrainingError
from retraining.time_split import TimeOrder, time_split

Validation = Literal["random", "time"]  # how the validation split is drawn

_NON_WORD = re.compile(r"[^0-9a-z]+")


def words(text: str) -> list[str]:
    """The text's lower-cased runs of letters and digits (punctuation and spacing dropped)."""
    return _NON_WORD.sub(" ", text.lower()).split()


def text_key(text: str) -> str:
    """Hash of the text lower-cased with punctuation and whitespace removed, so copies that
    differ only in case, spacing or punctuation collide."""
    return hashlib.blake2b(" ".join(words(text)).encode(), digest_size=12).hexdigest()


@dataclasses.dataclass(frozen=True)
class Splits:
    train: list[LabelledText]
    validation: list[LabelledText]
    test: list[LabelledText]
    labels: list[str]
    removed_within_train: int
    removed_overlap_test: int
    card: dict[str, Any] | None = None  # retraining.training_data.DataCard, when built
    validation_info: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"mode": "random"}
    )  # how the validation rows were chosen (retraining.time_split.time_split's info)

    def summary(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
            "duplicates_removed_within": self.removed_within_train,
            "duplicates_removed_overlapping_test": self.removed_overlap_test,
        }


def dedupe(rows: Sequence[LabelledText]) -> tuple[list[LabelledText], int]:
    seen: set[str] = set()
    out = []
    for r in rows:
        k = text_key(r.text)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out, len(rows) - len(out)


def stratified_split(
    rows: Sequence[LabelledText], share: float, seed: int
) -> tuple[list[LabelledText], list[LabelledText]]:
    """Split off ``share`` of each label (at least one row per label when it has two)."""
    by_label: dict[str, list[LabelledText]] = defaultdict(list)
    for r in rows:
        by_label[r.label].append(r)
    rng = random.Random(seed)
    keep, held = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n = max(1, round(len(group) * share)) if len(group) > 1 else 0
        held += group[:n]
        keep += group[n:]
    rng.shuffle(keep)
    rng.shuffle(held)
    return keep, held


def make_splits(
    train: Sequence[LabelledText],
    test: Sequence[LabelledText] | None,
    *,
    validation_share: float = 0.1,
    test_share: float = 0.15,
    seed: int = 13,
    validation: Validation = "random",
    time_order: TimeOrder = "published",
) -> Splits:
    """Validate, dedupe and split. Without a separate ``test`` set, one is split off.
    ``validation="time"``: the newest ``validation_share`` of each label, ordered by
    ``time_order``, is the validation set (:mod:`retraining.time_split`)."""
    if validation not in ("random", "time"):
        raise TrainingError(f"unknown validation split {validation!r}: use time or random")
    if not train:
        raise TrainingError("the training set is empty")
    rows, within = dedupe(train)
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        raise TrainingError(f"need at least two classes to train, found {labels}")
    if test is None:
        rows, test_rows = stratified_split(rows, test_share, seed)
    else:
        test_rows, _ = dedupe(test)
        unknown = sorted({r.label for r in test_rows} - set(labels))
        if unknown:
            raise TrainingError(f"the test split has labels not seen in training: {unknown}")
    test_keys = {text_key(r.text) for r in test_rows}
    before = len(rows)
    rows = [r for r in rows if text_key(r.text) not in test_keys]
    overlap = before - len(rows)
    counts = Counter(r.label for r in rows)
    thin = [lbl for lbl, n in counts.items() if n < 2]
    if thin:
        raise TrainingError(f"labels with fewer than two training rows: {thin}")
    if validation == "time":
        timed = time_split(rows, validation_share, order=time_order, seed=seed)
        train_rows, val_rows, info = timed.train, timed.validation, timed.info
    else:
        train_rows, val_rows = stratified_split(rows, validation_share, seed)
        info = {"mode": "random", "share": validation_share, "seed": seed}
    return Splits(train_rows, val_rows, list(test_rows), labels, within, overlap, None, info)
