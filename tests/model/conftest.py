"""Fixtures of the model tier: tiny random base encoders saved as Hugging Face folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.synthetic import write_bert_base, write_roberta_base


@pytest.fixture(scope="session")
def bert_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bert_base(tmp_path_factory.mktemp("base") / "tiny-bert")


@pytest.fixture(scope="session")
def roberta_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_roberta_base(tmp_path_factory.mktemp("base") / "tiny-roberta")
