"""What defines how a model is trained: one record, so a run can be described, repeated and
compared. Run-time choices (register or not, checkpoints, progress, the rows at hand) are the
flow's options, not part of the recipe (:class:`retraining.flow.FlowOptions`).

A recipe is recorded with every model it trains (``recipe`` in the folder's metadata.json,
``recipe.*`` MLflow params, ``recipe.json``) as :meth:`Recipe.to_dict` writes it, and read
back strictly by :meth:`Recipe.from_dict`: an unknown key or a bad value is an
:class:`InputError` naming the key, so a retraining never runs a recipe it misread. The data
files it read are recorded with their SHA-256 (:class:`DataFile`), so a changed file is found
before a retraining (:func:`check_data_files`).

Example:
    >>> from retraining.train import TrainConfig
    >>> Recipe(base="mpnet-base", training=TrainConfig(epochs=2)).training.epochs
    2
    >>> Recipe.from_dict(Recipe().to_dict()) == Recipe()
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_type_hints

from retraining.data import Validation
from retraining.distill import DistillConfig
from retraining.errors import InputError, TrainingError
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

DEFAULT_DATASET = "ag_news"
DEFAULT_BASE = "minilm"  # retraining.bases.resolve: the offline all-MiniLM-L6-v2
RECIPE_FORMAT = "newsflow-recipe/1"
NAMED_DATASETS = frozenset({"ag_news", "20newsgroups", "20ng"})  # read from the data folder
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class DataFile:
    """A training data file as the recipe read it: ``path`` relative to the data folder for
    a named dataset (``ag_news/train_union50867.csv.gz``), else as given; its SHA-256."""

    path: str
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise InputError(f"invalid recipe: data file path {self.path!r:.80}")
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise InputError(f"invalid recipe: data file sha256 {self.sha256!r:.80}")


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
    data_files: tuple[DataFile, ...] = ()  # recorded by the flow; () = not recorded

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
            "data_files": isinstance(self.data_files, tuple)
            and all(isinstance(f, DataFile) for f in self.data_files),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(
                "invalid recipe: " + ", ".join(f"{k}={getattr(self, k)!r:.80}" for k in bad)
            )

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (``format`` names the layout)."""
        data = dataclasses.asdict(self.data)
        data["formats"] = list(self.data.formats)
        return {
            "format": RECIPE_FORMAT,
            "dataset": self.dataset,
            "base": self.base,
            "data": data,
            "validation": self.validation,
            "training": dataclasses.asdict(self.training),
            "teacher": dataclasses.asdict(self.teacher) if self.teacher else None,
            "warm_start": self.warm_start,
            "quantize": self.quantize,
            "fp16": self.fp16,
            "data_files": [dataclasses.asdict(f) for f in self.data_files],
        }

    @classmethod
    def from_dict(cls, raw: object) -> Recipe:
        """A recipe from :meth:`to_dict`'s layout. Unknown keys, missing required keys
        (``dataset``, ``base``, ``data``, ``training``), values of the wrong type and values
        out of range are an :class:`InputError` naming the key. Keys of ``data`` and
        ``training`` that a record lacks take their defaults (options added later)."""
        top = _mapping("recipe", raw)
        _known_keys("recipe", top, {*_TOP_KEYS, "format"})
        if top.get("format") != RECIPE_FORMAT:
            raise InputError(f"recipe.format: {top.get('format')!r:.80} is not {RECIPE_FORMAT!r}")
        missing = [k for k in ("dataset", "base", "data", "training") if k not in top]
        if missing:
            raise InputError(f"recipe: missing key(s) {', '.join(missing)}")
        fields: dict[str, Any] = {
            "dataset": _typed("recipe.dataset", top["dataset"], str),
            "base": _typed("recipe.base", top["base"], str),
            "data": _record("recipe.data", top["data"], DataChoice, {"formats": tuple}),
            "training": _record("recipe.training", top["training"], TrainConfig, {}),
        }
        if top.get("teacher") is not None:
            fields["teacher"] = _record("recipe.teacher", top["teacher"], DistillConfig, {})
        for key, kind in (("validation", str), ("warm_start", str)):
            fields[key] = _typed(f"recipe.{key}", top.get(key), kind | None)
        for key in ("quantize", "fp16"):
            if key in top:
                fields[key] = _typed(f"recipe.{key}", top[key], bool)
        files = _typed("recipe.data_files", top.get("data_files", []), list)
        fields["data_files"] = tuple(
            _record(f"recipe.data_files[{i}]", f, DataFile, {}) for i, f in enumerate(files)
        )
        recipe: Recipe = _build("recipe", cls, fields)
        return recipe

    def with_data_files(self, card: Mapping[str, Any] | None) -> Recipe:
        """This recipe with the files of a dataset card (:class:`retraining.training_data.
        DataCard`) recorded; unchanged without a card or files."""
        files = (card or {}).get("files") or []
        if not files:
            return self
        return dataclasses.replace(
            self, data_files=tuple(DataFile(str(f["path"]), str(f["sha256"])) for f in files)
        )


_TOP_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))


def mlflow_params(recipe: Mapping[str, Any]) -> dict[str, str]:
    """``recipe.*`` MLflow params of a :meth:`Recipe.to_dict` record: nested keys joined with
    dots, lists with commas, data files as ``path@sha256-prefix``."""
    out: dict[str, str] = {}
    for key, value in recipe.items():
        if key == "data_files":
            out["recipe.data_files"] = (
                ",".join(f"{f['path']}@{f['sha256'][:12]}" for f in value) or "-"
            )
        elif isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"recipe.{key}.{sub}"] = _param(v)
        else:
            out[f"recipe.{key}"] = _param(value)
    return out


def check_data_files(recipe: Recipe, data_dir: Path) -> None:
    """Every data file the recipe recorded still exists with the same SHA-256; else an
    :class:`InputError` naming the file (a retraining on other data is another recipe)."""
    for f in recipe.data_files:
        path = data_dir / f.path if recipe.dataset in NAMED_DATASETS else Path(f.path)
        if not path.is_file():
            raise InputError(f"the recipe's data file {path} no longer exists")
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != f.sha256:
            raise InputError(
                f"the recipe's data file {path} changed since the model was trained "
                f"(sha256 {digest[:12]}…, recorded {f.sha256[:12]}…)"
            )


def _param(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)


def _mapping(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError(f"{key}: expected an object, got {type(value).__name__}")
    return value


def _known_keys(key: str, value: Mapping[str, Any], known: set[str] | Sequence[str]) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InputError(f"{key}: unknown key(s) {', '.join(repr(k) for k in unknown)}")


def _record(key: str, raw: object, cls: type[Any], convert: Mapping[str, type]) -> Any:
    """``cls(**raw)`` with each value checked against the field's type first."""
    value = _mapping(key, raw)
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    _known_keys(key, value, names)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InputError(f"{key}: missing key(s) {', '.join(missing)}")
    fields: dict[str, Any] = {}
    for name, v in value.items():
        hint = list if convert.get(name) is tuple else hints[name]
        checked = _typed(f"{key}.{name}", v, hint)
        if convert.get(name) is tuple:
            checked = tuple(_typed(f"{key}.{name}[{i}]", x, str) for i, x in enumerate(checked))
        fields[name] = checked
    return _build(key, cls, fields)


def _build(key: str, cls: type[Any], fields: dict[str, Any]) -> Any:
    try:
        return cls(**fields)
    except TrainingError as exc:  # the record's own range checks
        raise InputError(f"{key}: {exc}") from None


def _typed(key: str, value: object, hint: Any) -> Any:
    """``value`` when it has type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``list``,
    a ``Literal`` or a union with ``None``); an int is taken for a float. Else InputError."""
    options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in options:
        if kind is type(None) and value is None:
            return None
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue  # a bool is not a number here
        if kind is float and isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        if kind in (int, str, list) and isinstance(value, kind):
            return value
        if get_args(kind) and value in get_args(kind):  # a Literal
            return value
    raise InputError(f"{key}: bad value {value!r:.80}")
