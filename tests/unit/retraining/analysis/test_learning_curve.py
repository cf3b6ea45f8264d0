"""The learning-curve plot reads ``newsflow train --json`` summaries and refuses anything else."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from retraining.analysis.learning_curve import CurveError, main, read_point, read_points


def summary(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dataset": "ag_news",
        "base_model": "minilm",
        "accuracy": 0.9,
        "served_int8_accuracy": 0.899,
        "train_seconds": 120.5,
        "epoch_seconds": [60.0, 60.5],
        "splits": {"train": 1800, "validation": 200, "test": 2000},
    }
    return base | over


def write(folder: Path, name: str, obj: Any) -> Path:
    path = folder / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_a_summary_becomes_a_point_with_its_interval(tmp_path: Path) -> None:
    p = read_point(write(tmp_path, "a.json", summary()))
    assert (p.base, p.train_rows, p.epochs, p.test_rows) == ("minilm", 1800, 2, 2000)
    assert p.accuracy == 0.9 and p.int8_accuracy == 0.899
    low, high = p.bounds  # Wilson: about ±1.3 points at 0.9 on 2,000 rows
    assert low == pytest.approx(0.8861, abs=1e-4) and high == pytest.approx(0.9124, abs=1e-4)
    no_int8 = read_point(write(tmp_path, "b.json", summary(served_int8_accuracy=None)))
    assert no_int8.int8_accuracy is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read a JSON summary"),
        ([1, 2], "no object"),
        (summary(splits=None), "no splits/epochs"),
        (summary(epoch_seconds=[]), "no splits/epochs"),
        (summary(base_model=3), "must be strings"),
        (summary(accuracy="0.9"), "'accuracy' must be a finite number"),
        (summary(accuracy=True), "'accuracy' must be a finite number"),
        ('{"accuracy": NaN}', "no splits/epochs"),
        (summary(accuracy=1.5), "not in \\[0, 1\\]"),
        (summary(splits={"train": 0, "test": 10}), "positive whole"),
        (summary(splits={"train": 10.5, "test": 10}), "positive whole"),
    ],
)
def test_anything_else_is_refused_with_the_file_named(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(CurveError, match=message) as info:
        read_point(path)
    assert str(path) in str(info.value)


def test_nan_accuracy_is_refused(tmp_path: Path) -> None:
    text = json.dumps(summary()).replace('"accuracy": 0.9,', '"accuracy": NaN,')
    with pytest.raises(CurveError, match="finite"):
        read_point(write(tmp_path, "nan.json", text))


def test_one_dataset_per_plot_and_sorted_points(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", summary(splits={"train": 9000, "test": 2000}))
    b = write(tmp_path, "b.json", summary())
    c = write(tmp_path, "c.json", summary(dataset="20newsgroups"))
    assert [p.train_rows for p in read_points([a, b])] == [1800, 9000]
    with pytest.raises(CurveError, match="several datasets"):
        read_points([a, c])
    with pytest.raises(CurveError, match="no summaries"):
        read_points([])


def test_main_draws_a_png_and_writes_the_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [
        write(
            tmp_path,
            f"{base}-{rows}.json",
            summary(base_model=base, splits={"train": rows, "test": 500}),
        )
        for base in ("minilm", "mpnet-base")
        for rows in (1000, 4000)
    ]
    out, points = tmp_path / "plots" / "curve.png", tmp_path / "curve.json"
    assert (
        main([*map(str, runs), "--out", str(out), "--json", str(points), "--target", "0.94"]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    rows = json.loads(points.read_text())
    assert [(r["base"], r["train_rows"]) for r in rows] == [
        ("minilm", 1000),
        ("minilm", 4000),
        ("mpnet-base", 1000),
        ("mpnet-base", 4000),
    ]
    assert rows[3]["interval_95"] == pytest.approx([0.8706, 0.9233], abs=1e-4)
    assert "| mpnet-base | 2 | 4,000 | 500 | 0.9000 [0.8706, 0.9233] |" in capsys.readouterr().out
    bad = write(tmp_path, "bad.json", "[]")
    assert main([str(runs[0]), str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "bad.json" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"accuracy": 1' + "0" * 400 + "}", "no splits/epochs"),
        (json.dumps(summary()).replace("0.9,", "1" + "0" * 400 + ",", 1), "finite number"),
        ('{"a": ' + "1" * 5000 + "}", "cannot read"),  # past Python's digit limit
        ("[" * 200_000 + "]" * 200_000, "cannot read"),  # deeper than the recursion limit
        (summary(accuracy="x" * 2_000_000), "\\.\\.\\."),  # cut in the message
        (summary(epoch_seconds=["x", None]), "epoch 1"),
        (summary(train_seconds=-3), "negative"),
        (summary(base_model="mini|lm\n"), "plain names"),
    ],
)
def test_hostile_summaries_are_refused_in_one_short_line(
    tmp_path: Path, content: Any, message: str
) -> None:
    with pytest.raises(CurveError, match=message) as info:
        read_point(write(tmp_path, "bad.json", content))
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_bom_is_read_and_a_file_named_twice_is_one_point(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(summary()).encode())
    assert len(read_points([path, tmp_path / "." / "bom.json"])) == 1


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(CurveError, match="not a regular file"):
        read_point(fifo)


def test_outputs_never_overwrite_an_input_and_bad_outputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write(tmp_path, "run.json", summary())
    before = run.read_text()
    afile = write(tmp_path, "afile", "x")
    cases = [
        ["--out", str(tmp_path / "c.png"), "--json", str(run)],
        ["--out", str(run)],
        ["--out", str(tmp_path / "c.svg")],
        ["--out", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.png")],
        ["--out", str(afile / "c.png")],  # a folder that is a file
        ["--out", str(tmp_path / "c.png"), "--json", str(tmp_path)],
    ]
    for extra in cases:
        assert main([str(run), *extra]) == 2, extra
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.out == "", extra
    assert run.read_text() == before and not (tmp_path / "c.png").exists()
    for target in ("nan", "5", "0"):
        with pytest.raises(SystemExit) as exited:
            main([str(run), "--out", str(tmp_path / "c.png"), "--target", target])
        assert exited.value.code == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_interval_stays_inside_zero_and_one(tmp_path: Path) -> None:
    p = read_point(
        write(tmp_path, "one.json", summary(accuracy=1.0, splits={"train": 9, "test": 1}))
    )
    # one right answer out of one proves little: the bar reaches far down, not to nothing
    assert p.interval[1] == 0.0 and 0.7 < p.interval[0] < 0.8, p.interval
    q = read_point(write(tmp_path, "q.json", summary(accuracy=0.5, splits={"train": 9, "test": 2})))
    assert q.interval[0] == pytest.approx(q.interval[1]) and q.interval[0] < 0.5
