"""Post dates and the time-aware validation split (newest rows of each label)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.datasets import LabelledText, load_dataset, parse_date, parse_post_date
from pipeline.core.settings import Settings
from retraining.data import make_splits
from retraining.errors import TrainingError
from retraining.time_split import default_order, describe_validation, time_split

UTC = dt.UTC


def test_parse_date_reads_rfc2822_and_converts_to_utc() -> None:
    assert parse_date("Mon, 5 Apr 1993 14:03:11 -0500") == dt.datetime(
        1993, 4, 5, 19, 3, 11, tzinfo=UTC
    )
    assert parse_date("Mon, 5 Apr 1993 14:03:11 +0200 (MET DST)") == dt.datetime(
        1993, 4, 5, 12, 3, 11, tzinfo=UTC
    )
    assert parse_date("5 Apr 93 10:00:00 PDT") == dt.datetime(1993, 4, 5, 17, tzinfo=UTC)
    assert parse_date("5 Apr 93 10:00:00 GMT") == dt.datetime(1993, 4, 5, 10, tzinfo=UTC)
    # no usable zone (-0000, an unknown name): taken as UTC, still comparable with the rest
    assert parse_date("Tue, 6 Apr 1993 01:02:03 -0000") == dt.datetime(
        1993, 4, 6, 1, 2, 3, tzinfo=UTC
    )
    assert parse_date("Tue, 6 Apr 1993 01:02:03 MET") == dt.datetime(
        1993, 4, 6, 1, 2, 3, tzinfo=UTC
    )
    assert parse_date("Mon, 5 Apr 1993") == dt.datetime(1993, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["", "yesterday", "12", "Mon, 45 Apr 1993 14:03:11 GMT", "1 Jan 1900 00:00:00 GMT"]
)
def test_parse_date_returns_none_for_garbage(value: str) -> None:
    assert parse_date(value) is None


def test_parse_post_date_reads_the_header_only() -> None:
    post = "From: a@b.c\nDate: Mon, 5 Apr 1993 14:03:11 -0500\nSubject: hi\n\nbody text"
    assert parse_post_date(post) == (dt.datetime(1993, 4, 5, 19, 3, 11, tzinfo=UTC), "ok")
    folded = "From: a@b.c\nDate: Mon, 5 Apr 1993\n 14:03:11 -0500\nSubject: hi\n\nbody"
    assert parse_post_date(folded)[1] == "ok"
    assert parse_post_date("From: a@b.c\nSubject: hi\n\nbody") == (None, "missing")
    assert parse_post_date("From: a\nDate: someday soon\n\nbody") == (None, "garbled")
    # a Date: line in the body (a forwarded message) is not the post's date
    forwarded = "From: a\nSubject: fwd\n\nDate: Mon, 5 Apr 1993 14:03:11 -0500\nhello"
    assert parse_post_date(forwarded) == (None, "missing")
    assert parse_post_date("Date: Mon, 5 Apr 1993 14:03:11 GMT and no blank line") == (
        None,
        "missing",
    )


def _dated(label: str, n: int, start: int, undated: int = 0) -> list[LabelledText]:
    day0 = dt.datetime(1993, 3, 1, tzinfo=UTC)
    rows = [
        LabelledText(f"{label}-{i}", "", f"{label} text {i}", label, day0 + dt.timedelta(days=d))
        for i, d in enumerate(range(start + n - 1, start - 1, -1))  # newest first in the file
    ]
    rows += [
        LabelledText(f"{label}-u{i}", "", f"{label} undated {i}", label) for i in range(undated)
    ]
    return rows


def test_time_split_puts_exactly_the_newest_rows_of_each_label_in_validation() -> None:
    rows = _dated("a", 40, 0, undated=5) + _dated("b", 20, 10) + _dated("c", 11, 30, undated=2)
    split = time_split(rows, 0.2, seed=3)
    assert sorted(r.id for r in split.train + split.validation) == sorted(r.id for r in rows)
    val = Counter(r.label for r in split.validation)
    assert val == {"a": 8, "b": 4, "c": 2}  # 20 % of each label's dated rows
    for label in "abc":
        v = [r.published for r in split.validation if r.label == label]
        t = [r.published for r in split.train if r.label == label and r.published]
        assert v and min(v) > max(t)  # type: ignore[type-var]
    assert all(r.published is not None for r in split.validation)  # undated rows stay in train
    assert split.info["unordered_rows_kept_in_train"] == 7
    assert split.info["labels_without_validation_rows"] == []
    assert split.info["newest_from"]["b"] == "1993-03-27T00:00:00+00:00"
    assert time_split(rows, 0.2, seed=3) == split  # deterministic
    assert "newest 20% of each label by publication date" in describe_validation(split.info)


def test_time_split_keeps_thin_labels_in_train_and_refuses_undated_data() -> None:
    rows = _dated("a", 10, 0) + _dated("b", 1, 0, undated=3)
    split = time_split(rows, 0.1)
    assert Counter(r.label for r in split.validation) == {"a": 1}
    assert split.info["labels_without_validation_rows"] == ["b"]
    with pytest.raises(TrainingError, match="none of the 4 rows"):
        time_split(_dated("b", 0, 0, undated=4), 0.1)
    with pytest.raises(TrainingError, match="between 0 and 1"):
        time_split(rows, 1.0)


def test_newsgroup_article_order_and_make_splits_modes() -> None:
    rows = [
        LabelledText(f"20ng-train-{i}", "", f"post number {i} about {g}", g)
        for g, ids in (("x", range(0, 30)), ("y", range(30, 50)))
        for i in ids
    ]
    reviewed = LabelledText("review-1", "", "a reviewed post about x", "x")
    assert default_order(rows) == "newsgroup_article"
    s = make_splits(
        [*rows, reviewed], None, validation="time", time_order="newsgroup_article", seed=1
    )
    for g in "xy":
        v = [int(r.id.rsplit("-", 1)[1]) for r in s.validation if r.label == g]
        t = [int(r.id.rsplit("-", 1)[1]) for r in s.train if r.label == g and r.id != "review-1"]
        assert v and min(v) > max(t)
    assert reviewed in s.train
    assert s.validation_info["order"] == "newsgroup_article"
    plain = make_splits(rows, None, seed=1)
    assert plain.validation_info["mode"] == "random"
    with pytest.raises(TrainingError, match="unknown validation split"):
        make_splits(rows, None, validation="later")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def newsgroups(data_dir: Path) -> dict[str, list[LabelledText]]:
    return {
        split: load_dataset("20newsgroups", split=split, data_dir=data_dir)  # type: ignore[arg-type]
        for split in ("train", "test")
    }


def test_20newsgroups_rows_and_dates(newsgroups: dict[str, list[LabelledText]]) -> None:
    assert len(newsgroups["train"]) == 11_314
    assert len(newsgroups["test"]) == 7_532
    # the "bydate" files drop the Date header: no post is dated, so the flow orders each
    # newsgroup by article number instead
    assert sum(r.published is not None for r in newsgroups["train"]) == 0
    assert default_order(newsgroups["train"]) == "newsgroup_article"
    split = time_split(newsgroups["train"], 0.1, order="newsgroup_article")
    per_label = Counter(r.label for r in split.validation)
    assert len(per_label) == 20 and split.info["unordered_rows_kept_in_train"] == 0
    sizes = Counter(r.label for r in newsgroups["train"])
    assert per_label == {g: round(n * 0.1) for g, n in sizes.items()}
    newest = {
        g: min(int(r.id.rsplit("-", 1)[1]) for r in split.validation if r.label == g) for g in sizes
    }
    assert all(int(r.id.rsplit("-", 1)[1]) < newest[r.label] for r in split.train)


def test_load_training_data_defaults_to_time_for_20newsgroups_only(
    base_settings: Settings, data_dir: Path
) -> None:
    from retraining.flow import load_training_data

    s = base_settings.model_copy(update={"data_dir": data_dir, "eval_limit": 300})
    ng = load_training_data(s, "20newsgroups")
    assert ng.validation_info["mode"] == "time"
    assert ng.validation_info["order"] == "newsgroup_article"
    assert ng.card is not None and ng.card["validation"]["mode"] == "time"
    ag = load_training_data(s, "ag_news")
    assert ag.validation_info["mode"] == "random"
    assert load_training_data(s, "ag_news", validation="random").validation_info["mode"] == "random"


def test_calibration_bench_on_a_tiny_split() -> None:
    from retraining.analysis.bench_calibration import paired_bootstrap, run_variant

    words = {"x": "stocks market bank rates", "y": "match goal team season"}
    rows = [
        LabelledText(f"20ng-train-{i}", "", f"{words[g]} {w} note {i}", g)
        for i, (g, w) in enumerate(
            (g, w) for g in "xy" for k in range(30) for w in [words[g].split()[k % 4]]
        )
    ]
    test = [LabelledText(f"t{i}", "", f"{words[g]} later {i}", g) for i, g in enumerate("xy" * 10)]
    splits = make_splits(rows, test, validation="time", time_order="newsgroup_article")
    variant, probs = run_variant("time", splits)
    assert variant.validation_rows == 6 and variant.test_accuracy == 1.0
    assert variant.temperature > 0 and 0 <= variant.test_ece_scaled <= 1
    y = np.array([0, 1] * 10, dtype=np.int64)
    same = paired_bootstrap(probs, probs, y, rounds=20)
    assert same["lo"] == same["hi"] == 0.0
