"""The quick base ``minilm-l3``: built once into the cache from the offline MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import ModelError
from pipeline.core.settings import Settings
from retraining.bases.cut import cut_folder
from retraining.bases.resolve import minilm_folder, resolve_base_model


def test_minilm_l3_keeps_the_first_three_layers_and_is_built_once(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    folder = Path(resolve_base_model("minilm-l3", settings))
    assert folder == tmp_path / "cache" / "bases" / "minilm-l3"
    config = json.loads((folder / "config.json").read_text())
    full = json.loads((minilm_folder() / "config.json").read_text())
    assert config["num_hidden_layers"] == 3 and full["num_hidden_layers"] == 6
    assert config["hidden_size"] == full["hidden_size"]
    assert (folder / "tokenizer.json").is_file()
    assert not (folder.parent / "minilm-l3.partial").exists()
    built = (folder / "model.safetensors").stat().st_mtime_ns
    assert cut_folder("minilm-l3", tmp_path / "cache") == folder  # reused, not rebuilt
    assert (folder / "model.safetensors").stat().st_mtime_ns == built


def test_an_unknown_cut_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown cut base 'minilm-l9'; known: minilm-l3"):
        cut_folder("minilm-l9", tmp_path)
