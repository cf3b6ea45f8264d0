"""What defines how a model is trained: one record, so a run can be described, repeated and
compared. Run-time choices (register or not, checkpoints, progress, the rows at hand) are the
flow's options, not part of the recipe (:class:`retraining.flow.FlowOptions`).

Example:
    >>> from retraining.train import TrainConfig
    >>> Recipe(base="mpnet-base", training=TrainConfig(epochs=2)).training.epochs
    2
"""

from __future__ import annotations

import dataclasses
from typing import get_args

from retraining.data import Validation
from retraining.distill import DistillConfig
from retraining.errors import InputError
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

DEFAULT_DATASET = "ag_news"
DEFAULT_BASE = "minilm"  # retraining.bases.resolve: the offline all-MiniLM-L6-v2


@dataclasses.dataclass(frozen=True)
class Recipe:
    """``dataset``: a dataset name or labelled CSV (:func:`retraining.flow.load_training_data`);
    ``base``: a base encoder (:mod:`retraining.bases.resolve`); ``data``: which training rows
    (source, text formats, row cap, the split's seed); ``validation``: how validation rows are
    drawn (``None``: the dataset's default); ``training``: epochs, batch size, learning rate,
    maximum length, seed, step cap and the other optimiser options; ``teacher``: distil a
    registered version's soft labels; ``warm_start``: continue a registered version's
    weights; ``quantize``: also serve a dynamic int8 graph; ``fp16``: also export an fp16
    graph for GPU workers. Bad values are refused with their name."""

    dataset: str = DEFAULT_DATASET
    base: str = DEFAULT_BASE
    data: DataChoice = dataclasses.field(default_factory=DataChoice)
    validation: Validation | None = None
    training: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    teacher: DistillConfig | None = None
    warm_start: str | None = None  # a registry version number, checked when it is fetched
    quantize: bool = True
    fp16: bool = False

    def __post_init__(self) -> None:
        checks = {
            "dataset": isinstance(self.dataset, str) and bool(self.dataset.strip()),
            "base": isinstance(self.base, str) and bool(self.base.strip()),
            "data": isinstance(self.data, DataChoice),
            "validation": self.validation is None or self.validation in get_args(Validation),
            "training": isinstance(self.training, TrainConfig),
            "teacher": self.teacher is None or isinstance(self.teacher, DistillConfig),
            "warm_start": self.warm_start is None or isinstance(self.warm_start, str),
            "quantize": isinstance(self.quantize, bool),
            "fp16": isinstance(self.fp16, bool),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(
                "invalid recipe: " + ", ".join(f"{k}={getattr(self, k)!r:.80}" for k in bad)
            )
