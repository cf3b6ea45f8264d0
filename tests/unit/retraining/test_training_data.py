from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.core.datasets import (
    ColumnMap,
    DatasetError,
    LabelledText,
    load_dataset,
    load_table,
    strip_newsgroup_post,
)
from retraining.data import dedupe, make_splits, text_key
from retraining.errors import TrainingError


def _rows(n: int, labels: tuple[str, ...] = ("a", "b", "c")) -> list[LabelledText]:
    return [
        LabelledText(
            str(i), "", f"text number {i} about {labels[i % len(labels)]}", labels[i % len(labels)]
        )
        for i in range(n)
    ]


def test_near_duplicates_collide() -> None:
    assert text_key("Stocks rally, again!") == text_key("  stocks RALLY again ")
    assert text_key("Stocks rally") != text_key("Stocks fall")


def test_splits_are_disjoint_stratified_and_leak_free() -> None:
    rows = _rows(300)
    test = _rows(30)  # these texts also occur in `rows`: they must leave training
    dup = [LabelledText("d", "", "TEXT number 5 about c!", "c")]  # near-duplicate of row 5
    s = make_splits(rows + dup, test, validation_share=0.2, seed=1)
    keys = {
        split: {text_key(r.text) for r in getattr(s, split)}
        for split in ("train", "validation", "test")
    }
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert s.removed_within_train == 1
    assert s.removed_overlap_test == 30
    per_label = {lbl: sum(r.label == lbl for r in s.validation) for lbl in s.labels}
    assert max(per_label.values()) - min(per_label.values()) <= 1
    again = make_splits(rows + dup, test, validation_share=0.2, seed=1)
    assert [r.id for r in again.train] == [r.id for r in s.train]  # fixed seed


def test_bad_training_data_is_refused_before_training() -> None:
    with pytest.raises(TrainingError, match="empty"):
        make_splits([], None)
    with pytest.raises(TrainingError, match="two classes"):
        make_splits(_rows(10, ("only",)), None)
    with pytest.raises(TrainingError, match="not seen in training"):
        make_splits(_rows(30), [LabelledText("x", "", "brand new", "zzz")])


def test_dedupe_keeps_first() -> None:
    rows = [LabelledText("1", "", "Hello", "a"), LabelledText("2", "", "hello!", "b")]
    kept, removed = dedupe(rows)
    assert [r.id for r in kept] == ["1"] and removed == 1


def test_missing_column_and_corrupt_file(tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("body,topic\nhello,a\n")
    with pytest.raises(DatasetError, match="no column 'text'"):
        load_table(csv_path)
    assert load_table(csv_path, ColumnMap(text="body", label="topic"))[0].label == "a"
    bad = tmp_path / "x.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        load_table(bad)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "none.csv"), split="train", data_dir=tmp_path)
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(empty), split="train", data_dir=tmp_path)
    gz = tmp_path / "ok.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "x", "label": "y"}\n'))
    assert len(load_table(gz)) == 1


def test_newsgroup_headers_quotes_and_signature_are_stripped() -> None:
    post = (
        "From: someone@example.com\nSubject: Re: Hockey playoffs\nOrganization: X\n"
        "Lines: 5\n\nIn article <1@x> bob@y writes:\n> old quoted text\n"
        "The Bruins will win.\n\n-- \nBob, sig line\n"
    )
    subject, body = strip_newsgroup_post(post)
    assert subject == "Hockey playoffs"
    assert body == "The Bruins will win."
    assert "Organization" not in body and "rec.sport" not in body


def test_real_datasets_read(data_dir: Path) -> None:
    ag = load_dataset("ag_news", split="train", data_dir=data_dir)
    assert len(ag) == 5557
    assert {r.label for r in ag} == {"World", "Sports", "Business", "Sci/Tech"}
    ng = load_dataset("20newsgroups", split="test", data_dir=data_dir)
    assert len(ng) == 7532 and len({r.label for r in ng}) == 20
    leaked = [r for r in ng if "Newsgroups:" in r.body or "Organization:" in r.body[:200]]
    assert len(leaked) < len(ng) // 100  # forwarded posts quoted inline stay (0.5%)
