"""Training-data choices: the union reader, format filter, de-duplication, leakage check
against the test split, row cap, and the dataset card that records each step."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest

from pipeline.core.datasets import DatasetError, LabelledText
from retraining.data import dedupe
from retraining.errors import TrainingError
from retraining.training_data import (
    UNION_FILE,
    DataChoice,
    choose_rows,
    data_card_markdown,
    read_union,
    remove_test_leaks,
    stratified_cap,
)

HEADER = ["label", "label_name", "text", "text_format", "source"]
TEST = [
    LabelledText(
        "t0", "Rockets win", "Houston beat Dallas 101-99 in overtime on Sunday night.", "Sports"
    ),
    LabelledText(
        "t1", "Oil up", "Crude oil prices rose sharply after the pipeline was halted.", "Business"
    ),
    LabelledText("t2", "Short", "AP - Short one.", "World"),
]


def write_union(folder: Path, rows: list[list[str]]) -> Path:
    path = folder / "ag_news" / UNION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER)
    w.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    return path


def union_rows() -> list[list[str]]:
    return [
        ["1", "Sports", "Lakers sign a new coach for the coming season", "title+desc", "a"],
        [
            "1",
            "Sports",
            "LAKERS sign a new coach, for the coming season!",
            "title+desc",
            "b",
        ],  # dup
        [
            "2",
            "Business",
            "Oil up Crude oil prices rose sharply after the pipeline was halted.",
            "title+desc",
            "a",
        ],  # equals test row t1 (title + description)
        [
            "2",
            "Business",
            "Energy shock: Crude oil prices rose sharply after the pipeline was halted.",
            "title+desc",
            "a",
        ],  # another title, test t1's description
        [
            "1",
            "Sports",
            "houston beat dallas 101-99 in overtime on sunday night.",
            "desc-only,lowercased",
            "c",
        ],  # t0's description, lower-cased
        ["0", "World", "Short one.", "title+desc", "a"],  # shares a too-short description
        ["3", "Sci/Tech", "new chip doubles battery life in phones", "desc-only,tokenized", "c"],
        ["0", "World", "Talks resume in Geneva on the treaty", "title+desc", "a"],
        ["3", "Sci/Tech", "Space probe reaches Mars orbit after seven months", "title+desc", "a"],
        ["2", "Business", "Shares fall as bank profits shrink", "title+desc", "a"],
    ]


def test_card_counts_every_step(tmp_path: Path) -> None:
    write_union(tmp_path, union_rows())
    rows, card = choose_rows(tmp_path, "ag_news", DataChoice(source="union"), TEST)
    assert card.rows_read == 10
    assert card.removed_by_format == 2  # the two desc-only rows
    assert card.removed_duplicates == 1
    assert card.removed_leak_exact == 1
    assert card.removed_leak_description == 1
    assert card.rows_kept == len(rows) == 5
    assert "Short one." in [r.text for r in rows]  # a 10-character description is no leak
    assert card.labels_kept == {"Business": 1, "Sci/Tech": 1, "Sports": 1, "World": 2}
    assert card.files[0]["rows"] == 10 and len(card.files[0]["sha256"]) == 64
    md = data_card_markdown(card.as_dict())
    assert "| **kept** | **5** |" in md


def test_all_formats_catch_a_lowercased_description_leak(tmp_path: Path) -> None:
    write_union(tmp_path, union_rows())
    rows, card = choose_rows(
        tmp_path, "ag_news", DataChoice(source="union", formats=("all",)), TEST
    )
    assert card.removed_by_format == 0
    assert card.removed_leak_description == 2  # the title+desc one and the lower-cased one
    assert card.rows_kept == len(rows) == 6
    assert card.notes and "differ from the test split" in card.notes[0]


def test_format_aliases_select_rows(tmp_path: Path) -> None:
    write_union(tmp_path, union_rows())
    rows, card = choose_rows(
        tmp_path, "ag_news", DataChoice(source="union", formats=("desc-tokenized",)), TEST
    )
    assert [r.text for r in rows] == ["new chip doubles battery life in phones"]
    assert card.formats_kept == ["desc-only,tokenized"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["1", "World", "text", "title+desc", "a"], "is not an AG News class"),
        (["7", "Sports", "text", "title+desc", "a"], "is not an AG News class"),
        (["1", "Sports", "text", "title only", "a"], "unknown text_format"),
        (["1", "Sports", "  ", "title+desc", "a"], "empty text"),
    ],
)
def test_bad_union_rows_name_the_line(tmp_path: Path, row: list[str], message: str) -> None:
    path = write_union(tmp_path, [union_rows()[0], row])
    with pytest.raises(DatasetError, match=rf":3: .*{message}"):
        list(read_union(path))


def test_missing_columns_and_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / UNION_FILE
    path.write_bytes(gzip.compress(b"text,label\nhello,1\n"))
    with pytest.raises(DatasetError, match="needs columns"):
        list(read_union(path))
    path.write_bytes(gzip.compress(b"label,label_name,text,text_format\n")[:-6])
    with pytest.raises(DatasetError, match="corrupt"):
        list(read_union(path))
    path.write_bytes(b"\x00\xff random bytes")
    with pytest.raises(DatasetError, match="corrupt"):
        list(read_union(path))
    with pytest.raises(DatasetError, match="does not exist"):
        list(read_union(tmp_path / "nope.csv.gz"))


def test_choice_validation() -> None:
    with pytest.raises(TrainingError, match="training source"):
        DataChoice(source="everything")  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="unknown text format"):
        DataChoice(source="union", formats=("title",))
    with pytest.raises(TrainingError, match="unknown text format"):
        DataChoice(source="union", formats=())
    with pytest.raises(TrainingError, match="max_rows"):
        DataChoice(max_rows=3)


def test_union_and_formats_need_ag_news(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="only for --dataset ag_news"):
        choose_rows(tmp_path, "20newsgroups", DataChoice(source="union"), [])
    with pytest.raises(TrainingError, match="--train-source union only"):
        choose_rows(tmp_path, "ag_news", DataChoice(formats=("all",)), [])


def test_leaks_dedupe_and_cap_helpers() -> None:
    rows = [
        LabelledText(str(i), "", f"story number {i} about {lbl}", lbl)
        for i, lbl in enumerate(["A"] * 60 + ["B"] * 30 + ["C"] * 10)
    ]
    kept, exact, desc = remove_test_leaks(
        rows, [LabelledText("x", "", "Story number 3 about A!", "A")]
    )
    assert (exact, desc, len(kept)) == (1, 0, 99)
    doubled, removed = dedupe([*rows, *rows[:5]])
    assert removed == 5 and len(doubled) == 100
    capped = stratified_cap(rows, 20, seed=1)
    counts = {lbl: sum(r.label == lbl for r in capped) for lbl in "ABC"}
    assert counts == {"A": 12, "B": 6, "C": 2}
    assert stratified_cap(rows, 500, seed=1) == rows


def test_real_union_file(data_dir: Path) -> None:
    """The shipped union: 25,709 title+desc rows, none leaking; all formats: 50 rows whose
    description (lower-cased or tokenised) is a test description are removed."""
    from pipeline.core.datasets import load_dataset

    test = load_dataset("ag_news", split="test", data_dir=data_dir)
    rows, card = choose_rows(data_dir, "ag_news", DataChoice(source="union"), test)
    assert card.rows_read == 50_867 and card.rows_kept == len(rows) == 25_709
    assert card.formats_read["desc-only,lowercased"] == 16_346
    _, card_all = choose_rows(
        data_dir, "ag_news", DataChoice(source="union", formats=("all",)), test
    )
    assert card_all.removed_leak_exact + card_all.removed_leak_description == 50
    assert card_all.rows_kept == 50_817
    _, card_sample = choose_rows(data_dir, "ag_news", DataChoice(), test)
    assert card_sample.rows_read == 5_557 and card_sample.removed_leak_description == 24


def test_text_format_is_refused_for_every_dataset_but_the_union(tmp_path: Path) -> None:
    """--text-format with 20 Newsgroups or a CSV was ignored silently: refused instead."""
    for dataset in ("20newsgroups", str(tmp_path / "rows.csv")):
        with pytest.raises(TrainingError, match="--train-source union only"):
            choose_rows(tmp_path, dataset, DataChoice(formats=("desc-lower",)), [])


def test_row_cap_keeps_exactly_max_rows_or_refuses_too_few() -> None:
    """The cap kept 401 of --train-rows 400 (rounding) and 40 of 8 for 20 labels (at least
    2 per label): it now keeps exactly max_rows, and refuses fewer than 2 per label."""
    rows = [
        LabelledText(str(i), "", f"story {i}", lbl)
        for i, lbl in enumerate(["A"] * 61 + ["B"] * 61 + ["C"] * 41 + ["D"] * 2)
    ]
    for cap in (8, 9, 10, 33, 100, 164):
        capped = stratified_cap(rows, cap, seed=3)
        counts = {lbl: sum(r.label == lbl for r in capped) for lbl in "ABCD"}
        assert len(capped) == cap and min(counts.values()) >= 2, (cap, counts)
    with pytest.raises(TrainingError, match="--train-rows 7 is too few for 4 labels"):
        stratified_cap(rows, 7, seed=3)


def test_dataset_card_leaves_out_unknown_file_row_counts() -> None:
    card = {
        "dataset": "ag_news",
        "source": "sample",
        "files": [{"path": "ag_news/a.csv.gz", "rows": None, "sha256": "ab" * 32}],
        "rows_read": 3,
        "formats_read": {"as given": 3},
        "formats_kept": [],
        "removed_by_format": 0,
        "removed_duplicates": 0,
        "removed_leak_exact": 0,
        "removed_leak_description": 0,
        "removed_by_max_rows": 0,
        "rows_kept": 3,
        "labels_kept": {"A": 3},
        "test_rows": 0,
    }
    text = data_card_markdown(card)
    assert "None rows" not in text and "ag_news/a.csv.gz (sha256 abababababab" in text
