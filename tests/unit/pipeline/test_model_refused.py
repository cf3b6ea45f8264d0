"""A champion the worker refuses is counted in newsflow_model_refused_total{reason}: files
that fail their registered hashes (bad_files), a folder that does not load (bad_folder), a tag
that names another version (version_mismatch). Against a local HTTP stand-in of the
tracking server (the one the fetcher's tests use)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from prometheus_client import generate_latest

from pipeline import hotswap
from pipeline.core.errors import ModelError
from pipeline.core.runtime import Classifier
from pipeline.metrics import REFUSAL_REASONS, build_metrics
from tests.unit.pipeline.core.test_model_fetch import FILES, Registry, _manifest, _settings


class _Loaded:
    def __init__(self, version: str) -> None:
        self.version, self.labels = version, ["a", "b"]


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry()
    yield reg
    reg.close()


def _reason(s: Any) -> str:
    with pytest.raises(hotswap.ModelRefused) as caught:
        hotswap.load_champion(s)
    return caught.value.reason


def test_each_refusal_has_its_reason(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.cfg = {"files": _manifest({**FILES, "model.onnx": b"x" * 10})}
    assert _reason(_settings(tmp_path / "a", registry.url)) == "bad_files"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("the graph does not load")

    registry.cfg = {}
    monkeypatch.setattr(Classifier, "load", broken)
    assert _reason(_settings(tmp_path / "b", registry.url)) == "bad_folder"

    monkeypatch.setattr(Classifier, "load", lambda *a, **k: _Loaded("other"))
    assert _reason(_settings(tmp_path / "c", registry.url)) == "version_mismatch"


def test_the_watcher_counts_a_refusal_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Classifier, "load", lambda *a, **k: _Loaded("tag-is-m1-but-not-this"))
    metrics = build_metrics()
    holder = hotswap.ModelHolder(_Loaded("m0"))  # type: ignore[arg-type]
    stop = threading.Event()
    watcher = threading.Thread(
        target=hotswap.watch_champion,
        args=(_settings(tmp_path, registry.url), holder, stop),
        kwargs={"count_refused": lambda r: metrics.model_refused.labels(reason=r).inc()},
    )
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        sample = 'newsflow_model_refused_total{reason="version_mismatch"}'
        while f"{sample} 1.0" not in generate_latest(metrics.registry).decode():
            assert time.monotonic() < deadline, "the refusal was not counted"
            time.sleep(0.05)
    finally:
        stop.set()
        watcher.join(5)
    text = generate_latest(metrics.registry).decode()
    assert f"{sample} 1.0" in text
    assert 'newsflow_model_refused_total{reason="bad_files"} 0.0' in text


def test_the_metric_knows_every_reason() -> None:
    assert get_args(hotswap.RefusalReason) == REFUSAL_REASONS
