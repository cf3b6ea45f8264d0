"""Synthetic articles (the demo's source without a data directory) and source selection."""

from __future__ import annotations

import csv
from pathlib import Path

from monitoring.demo import NEWSGROUP_TOPIC, DemoOptions, pick_sources
from pipeline.core.settings import Settings
from pipeline.proof.synthetic import TOPICS, shifted_news, synthetic_news


def test_synthetic_news_is_deterministic_and_balanced() -> None:
    a, b = synthetic_news(400, seed=3), synthetic_news(400, seed=3)
    assert a == b and a != synthetic_news(400, seed=4)
    counts = {t: sum(r.label == t for r in a) for t in TOPICS}
    assert set(counts.values()) == {100}
    assert all(r.title and len(r.body.split()) >= 10 for r in a)
    assert len({r.id for r in a}) == 400


def test_shifted_news_has_new_topics_without_a_known_label() -> None:
    pairs = shifted_news(500, seed=2)
    unknown = [r for r, known in pairs if known is None]
    assert 0.45 < len(unknown) / 500 < 0.75
    assert all(r.label in {"Health", "Entertainment"} for r in unknown)
    assert all(known in TOPICS for _, known in pairs if known is not None)


def test_sources_fall_back_to_synthetic_without_data(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "missing")
    sources = pick_sources(settings, DemoOptions.for_quick(), tmp_path)
    assert sources.kind == "synthetic"
    with open(sources.train_dataset, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4000 and {r["label"] for r in rows} == set(TOPICS)
    assert len(sources.stable) >= 1500 and len(sources.shifted) >= 1500
    assert all(r.id in sources.truth for r in sources.shifted)


def test_sources_use_the_data_directory(data_dir: Path, tmp_path: Path) -> None:
    sources = pick_sources(Settings(data_dir=data_dir), DemoOptions(), tmp_path)
    assert sources.kind == "datasets" and sources.train_dataset == "ag_news"
    assert {sources.truth[r.id] for r in sources.stable[:200]} <= set(TOPICS)
    mapped = {sources.truth[r.id] for r in sources.shifted}
    assert None in mapped and "Sports" in mapped  # unmapped groups → "none of these"
    assert set(NEWSGROUP_TOPIC.values()) <= set(TOPICS)
