"""The recipe record: its JSON form round-trips, a misread record is refused with its key,
and a recorded data file that changed is found before any training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from retraining.distill import DistillConfig
from retraining.errors import InputError
from retraining.recipe import (
    RECIPE_FORMAT,
    DataFile,
    Recipe,
    check_data_files,
    mlflow_params,
)
from retraining.train import TrainConfig
from retraining.training_data import DataChoice

SHA = "ab" * 32
UNUSUAL = Recipe(
    dataset="ag_news",
    base="mpnet-base",
    data=DataChoice(source="union", formats=("title+desc", "desc-lower"), max_rows=900, seed=7),
    validation="time",
    training=TrainConfig(epochs=2, learning_rate=5e-5, max_length=64, max_steps=5, seed=3),
    teacher=DistillConfig("4", alpha=0.7, temperature=3.0),
    warm_start="2",
    quantize=False,
    fp16=True,
    data_files=(DataFile("ag_news/train_union50867.csv.gz", SHA),),
)


@pytest.mark.parametrize("recipe", [Recipe(), UNUSUAL], ids=["default", "every-field-set"])
def test_a_recipe_survives_its_json_form(recipe: Recipe) -> None:
    record = json.loads(json.dumps(recipe.to_dict()))  # as metadata.json stores it
    assert record["format"] == RECIPE_FORMAT
    assert Recipe.from_dict(record) == recipe


def test_mlflow_params_flatten_every_field() -> None:
    params = mlflow_params(UNUSUAL.to_dict())
    assert params["recipe.base"] == "mpnet-base"
    assert params["recipe.data.formats"] == "title+desc,desc-lower"
    assert params["recipe.training.max_length"] == "64"
    assert params["recipe.training.max_steps"] == "5"
    assert params["recipe.teacher.teacher"] == "4"
    assert params["recipe.data_files"] == f"ag_news/train_union50867.csv.gz@{SHA[:12]}"
    assert params["recipe.validation"] == "time"
    assert all(isinstance(v, str) and len(v) < 500 for v in params.values())


def _with(path: str, value: object) -> dict[str, Any]:
    record = UNUSUAL.to_dict()
    *parents, last = path.split(".")
    node = record
    for p in parents:
        node = node[p]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return record


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("colour", "blue", r"recipe: unknown key\(s\) 'colour'"),
        ("training.dropout", 0.1, r"recipe.training: unknown key\(s\) 'dropout'"),
        ("data.shuffle", True, r"recipe.data: unknown key\(s\) 'shuffle'"),
        ("format", "newsflow-recipe/9", "recipe.format"),
        ("base", _DROP, r"missing key\(s\) base"),
        ("base", 3, "recipe.base: bad value 3"),
        ("training.epochs", "2", "recipe.training.epochs: bad value '2'"),
        ("training.epochs", True, "recipe.training.epochs: bad value True"),
        ("training.epochs", 0, "recipe.training: .*epochs=0"),
        ("training.learning_rate", float("nan"), "recipe.training.learning_rate"),
        ("training.max_length", 4, "recipe.training: .*max_length=4"),
        ("data.source", "everything", "recipe.data.source: bad value 'everything'"),
        ("data.formats", "title+desc", "recipe.data.formats: bad value"),
        ("data.formats", ["nonsense"], "recipe.data: unknown text format"),
        ("teacher.teacher", "latest", "recipe.teacher: .*registry version number"),
        ("validation", "sideways", "validation='sideways'"),
        ("quantize", "yes", "recipe.quantize: bad value 'yes'"),
        ("data_files", [{"path": "x.csv", "sha256": "short"}], "data file sha256"),
        ("data_files", [{"path": "x.csv"}], r"recipe.data_files\[0\]: missing key\(s\) sha256"),
    ],
)
def test_a_misread_recipe_is_refused_with_its_key(path: str, value: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Recipe.from_dict(_with(path, value))


def test_a_record_that_is_not_an_object_is_refused() -> None:
    bad: object
    for bad in (None, [], "recipe", {1: "x"}):
        with pytest.raises(InputError, match="expected an object"):
            Recipe.from_dict(bad)


def test_options_added_later_take_their_defaults() -> None:
    record = Recipe().to_dict()
    del record["training"]["layer_decay"], record["data"]["seed"], record["fp16"]
    assert Recipe.from_dict(record) == Recipe()


def test_a_changed_or_missing_data_file_is_found(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("text,label\na,x\nb,y\n")
    digest = hashlib.sha256(rows.read_bytes()).hexdigest()
    recipe = Recipe(dataset=str(rows), data_files=(DataFile(str(rows), digest),))
    check_data_files(recipe, tmp_path / "unused")  # unchanged: nothing to say
    rows.write_text("text,label\na,x\nb,z\n")
    with pytest.raises(InputError, match=r"rows.csv changed since the model was trained"):
        check_data_files(recipe, tmp_path)
    rows.unlink()
    with pytest.raises(InputError, match="no longer exists"):
        check_data_files(recipe, tmp_path)
    named = Recipe(data_files=(DataFile("ag_news/train.csv.gz", digest),))  # under data_dir
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "train.csv.gz").write_text("text,label\na,x\nb,y\n")
    check_data_files(named, tmp_path)


def test_a_dataset_card_records_its_files() -> None:
    card = {"files": [{"path": "ag_news/a.csv.gz", "rows": None, "sha256": SHA}]}
    assert Recipe().with_data_files(card).data_files == (DataFile("ag_news/a.csv.gz", SHA),)
    assert Recipe().with_data_files(None) == Recipe()
    assert Recipe().with_data_files({"files": []}) == Recipe()
